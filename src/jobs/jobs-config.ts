/**
 * The jobs as the module resolved them from `options.jobs`: every job listed, with its
 * defaults filled in.
 */
export interface JobsConfig {
  /** How long a job's lease lasts unless renewed (renewed at a third of it while it works). */
  readonly leaseTtlMs: number;
  readonly kekRewrap: {
    readonly enabled: boolean;
    readonly cron: string;
    /** Data keys per page. */
    readonly batchSize: number;
    /** Pages one run moves at most; the next run goes on. */
    readonly maxBatchesPerRun: number;
  };
  readonly keyRotation: {
    readonly enabled: boolean;
    readonly cron: string;
    /** Items per unit of work (and retiring keys per page of the scan). */
    readonly batchSize: number;
    /** Units of work one run commits at most; the next run goes on. */
    readonly maxBatchesPerRun: number;
  };
  readonly retentionPurge: {
    readonly enabled: boolean;
    readonly cron: string;
    /** Expired items per page of the scan; one session's share of a page is one batch. */
    readonly batchSize: number;
    /** Batches one run purges at most; the next run goes on. */
    readonly maxBatchesPerRun: number;
    /** Sessions idle this many days are shredded and deleted; null keeps them (`retention`). */
    readonly sessionIdleDays: number | null;
  };
}

/** Injection token of the module's {@link JobsConfig}. */
export const JOBS_CONFIG = Symbol('JOBS_CONFIG');

/** The names jobs have in `SchedulerRegistry` and in leases, by option key. */
export const JOB_NAMES = {
  kekRewrap: 'nest-encrypted-sessions:kek-rewrap',
  keyRotation: 'nest-encrypted-sessions:key-rotation',
  retentionPurge: 'nest-encrypted-sessions:retention-purge',
} as const satisfies Record<Exclude<keyof JobsConfig, 'leaseTtlMs'>, string>;

/** A job's option key. */
export type JobKey = keyof typeof JOB_NAMES;
