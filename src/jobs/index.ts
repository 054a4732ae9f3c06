export {
  EncryptedSessionJobs,
  type JobLeaseStatus,
  type JobStatus,
} from './encrypted-session-jobs.service.js';
export { JobScheduler, resolveSchedulePackage } from './job-scheduler.js';
export {
  KeyRotationService,
  type KeyRotationProgress,
  type KeyRotationReport,
  type KeyRotationStatus,
} from './key-rotation.service.js';
export {
  RetentionService,
  type PurgeOptions,
  type PurgeProgress,
  type PurgeReport,
} from './retention.service.js';
export { JOB_NAMES, JOBS_CONFIG, type JobKey, type JobsConfig } from './jobs-config.js';
export {
  LeasedJobRunner,
  leaseOwnerId,
  type HeldLease,
  type JobRunReport,
} from './leased-job-runner.js';
