import { createRequire } from 'node:module';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { ConfigurationError, EncryptedSessionError } from '../errors/index.js';
import { EncryptedSessionJobs } from './encrypted-session-jobs.service.js';
import { JOB_NAMES, JOBS_CONFIG, type JobKey, type JobsConfig } from './jobs-config.js';
import { KeyRotationService } from './key-rotation.service.js';
import { RetentionService } from './retention.service.js';

const logger = new Logger('EncryptedSessionJobs');

/** The parts of `cron`'s CronJob the scheduler uses. */
interface CronJobLike {
  start(): void;
  stop(): unknown;
}

/** The parts of `@nestjs/schedule`'s SchedulerRegistry the scheduler uses. */
interface SchedulerRegistryLike {
  addCronJob(name: string, job: CronJobLike): void;
  doesExist(type: 'cron', name: string): boolean;
  deleteCronJob(name: string): void;
}

/** What the scheduler needs of `@nestjs/schedule` and the `cron` package it brings. */
interface SchedulePackages {
  readonly SchedulerRegistry: new (...args: never[]) => SchedulerRegistryLike;
  readonly CronJob: new (cronTime: string, onTick: () => void) => CronJobLike;
  readonly validateCronExpression: (expression: string) => { valid: boolean };
}

/**
 * Where `@nestjs/schedule` (an optional peer) is installed; `cron`, the package its jobs are
 * made of, resolves from there. A ConfigurationError with `missingMessage` when it is not.
 */
export function resolveSchedulePackage(missingMessage: string): string {
  try {
    return createRequire(import.meta.url).resolve('@nestjs/schedule');
  } catch {
    throw new ConfigurationError(missingMessage);
  }
}

/**
 * Loads `@nestjs/schedule` (an optional peer: only a host with a job enabled needs it) and the
 * `cron` package that comes with it, the one its registry's jobs are made of.
 */
function loadSchedulePackages(): SchedulePackages {
  const schedulePath = resolveSchedulePackage(
    "options.jobs enables a job, which needs the '@nestjs/schedule' package: npm install @nestjs/schedule, and import ScheduleModule.forRoot() in your AppModule (or disable the job)",
  );
  const schedule = createRequire(import.meta.url)(schedulePath) as Pick<
    SchedulePackages,
    'SchedulerRegistry'
  >;
  const cron = createRequire(schedulePath)('cron') as Omit<SchedulePackages, 'SchedulerRegistry'>;
  return {
    SchedulerRegistry: schedule.SchedulerRegistry,
    CronJob: cron.CronJob,
    validateCronExpression: cron.validateCronExpression,
  };
}

/**
 * Puts the enabled jobs of `options.jobs` on their cron through the host's `SchedulerRegistry`
 * (the module never calls `ScheduleModule.forRoot()`; the host does, once), and takes them off
 * at shutdown after the runs in progress. The module's lifecycle calls {@link start} and
 * {@link stop}.
 */
@Injectable()
export class JobScheduler {
  private readonly scheduled: Array<{ readonly name: string; readonly job: CronJobLike }> = [];
  private readonly running = new Set<Promise<unknown>>();
  /** Jobs with a run in progress: a tick meanwhile is skipped. */
  private readonly busy = new Set<JobKey>();
  private registry: SchedulerRegistryLike | undefined;

  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly jobs: EncryptedSessionJobs,
    private readonly retention: RetentionService,
    private readonly keyRotation: KeyRotationService,
    @Inject(JOBS_CONFIG) private readonly config: JobsConfig,
  ) {}

  /**
   * Schedules every enabled job. With none enabled it needs nothing from `@nestjs/schedule`.
   *
   * @throws ConfigurationError when a job is enabled but `@nestjs/schedule` is missing or the
   *   host did not import `ScheduleModule.forRoot()`, or a cron expression does not parse.
   */
  start(): void {
    const enabled = (Object.keys(JOB_NAMES) as JobKey[]).filter((key) => this.config[key].enabled);
    if (enabled.length === 0) return;
    this.jobs.assertRunnable();
    const packages = loadSchedulePackages();
    for (const key of enabled) {
      if (!packages.validateCronExpression(this.config[key].cron).valid) {
        throw new ConfigurationError(
          `options.jobs.${key}.cron '${this.config[key].cron}' is not a cron expression; give five or six fields, e.g. '0 * * * *' for hourly`,
        );
      }
    }
    let registry: SchedulerRegistryLike;
    try {
      registry = this.moduleRef.get(packages.SchedulerRegistry, { strict: false });
    } catch {
      throw new ConfigurationError(
        `options.jobs enables ${enabled.map((key) => `'${key}'`).join(', ')}, but the app has no scheduler: import ScheduleModule.forRoot() from '@nestjs/schedule' in your AppModule (the module never does it for you), or disable the job`,
      );
    }
    this.registry = registry;
    for (const key of enabled) {
      const name = JOB_NAMES[key];
      const job = new packages.CronJob(this.config[key].cron, () => this.tick(key));
      registry.addCronJob(name, job);
      this.scheduled.push({ name, job });
      job.start();
      logger.log(`Scheduled job ${name} on '${this.config[key].cron}'`);
    }
  }

  /** Takes the jobs off their cron and waits for the runs in progress. Idempotent. */
  async stop(): Promise<void> {
    for (const { name, job } of this.scheduled.splice(0)) {
      job.stop();
      if (this.registry?.doesExist('cron', name)) this.registry.deleteCronJob(name);
    }
    await Promise.allSettled(this.running);
  }

  /** One cron tick: a run unless the previous one of this job is still going. */
  private tick(key: JobKey): void {
    if (this.busy.has(key)) return;
    this.busy.add(key);
    const run = this.runJob(key)
      .catch((error: unknown) => {
        // Taking the lease failed (storage down): the next tick tries again.
        logger.error(
          `Job ${JOB_NAMES[key]} could not start (${error instanceof EncryptedSessionError ? error.code : 'UNEXPECTED'}); the next tick tries again`,
        );
      })
      .finally(() => {
        this.busy.delete(key);
        this.running.delete(run);
      });
    this.running.add(run);
  }

  private runJob(key: JobKey): Promise<unknown> {
    const runs: Record<JobKey, () => Promise<unknown>> = {
      kekRewrap: () => this.jobs.rewrapRootKeys(),
      keyRotation: () => this.keyRotation.reencryptRetiring(),
      retentionPurge: () => this.retention.purgeExpired(),
    };
    return runs[key]();
  }
}
