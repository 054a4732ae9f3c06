import { Inject, Injectable } from '@nestjs/common';
import { ConfigurationError } from '../errors/index.js';
import { KekRotationService, type RewrapOptions, type RewrapReport } from '../keys/index.js';
import { SESSION_STORAGE, type LeaseStorage, type SessionStorage } from '../storage/index.js';
import { JOB_NAMES, JOBS_CONFIG, type JobKey, type JobsConfig } from './jobs-config.js';
import {
  LeasedJobRunner,
  leaseOwnerId,
  type HeldLease,
  type JobRunReport,
} from './leased-job-runner.js';

/**
 * A job, its schedule, and how its last run in this process ended.
 *
 * @publicApi
 */
export interface JobStatus {
  readonly key: JobKey;
  /** Its name in `SchedulerRegistry` and in its lease. */
  readonly name: string;
  readonly enabled: boolean;
  readonly cron: string;
  readonly lastRun?: JobRunReport;
}

/** A session no host writes (its tenant is a name of this package), read to probe storage. */
const STORAGE_PROBE_REF = { tenantId: 'nest-encrypted-sessions:health', sessionId: 'probe' };

/**
 * A job and its lease as the storage holds it now, across every replica (what
 * {@link EncryptedSessionJobs.leases} reports).
 *
 * @publicApi
 */
export interface JobLeaseStatus {
  readonly key: JobKey;
  /** Its name in `SchedulerRegistry` and in its lease. */
  readonly name: string;
  /** The lease as last taken; absent when no replica ever took it. */
  readonly lease?: {
    /** The holder: `host:pid:random` of the process that took it. */
    readonly owner: string;
    /** Rises by one each time the lease is taken afresh; fences the holder's writes. */
    readonly token: number;
    /** When it lapses unless renewed, by the storage's clock (the database's, or Redis's). */
    readonly expiresAt: Date;
    /**
     * Whether it was unexpired when read, `expiresAt` against this process's clock: a clock
     * skewed from the storage's can misjudge a lease within the skew of its expiry.
     */
    readonly held: boolean;
  };
}

/**
 * The module's jobs, each a public method: the scheduler calls them on their cron
 * (`options.jobs`), and a host, the CLI or a test may call them at any time. Each runs under
 * its lease, so of all replicas one acts at a time; the others' runs are `skipped`.
 *
 * @publicApi
 */
@Injectable()
export class EncryptedSessionJobs {
  private readonly lastRuns = new Map<JobKey, JobRunReport>();
  private runner: LeasedJobRunner | undefined;

  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly kekRotation: KekRotationService,
    @Inject(JOBS_CONFIG) private readonly config: JobsConfig,
  ) {}

  /**
   * Moves data keys still wrapped by an older root key to the active one (KEK rotation by
   * rewrap), at most `jobs.kekRewrap.maxBatchesPerRun` pages per run. Does nothing when every
   * data key is already on the active root key. Each page is audited (`key.rewrap.batch`).
   */
  rewrapRootKeys(
    options: Pick<RewrapOptions, 'onProgress'> = {},
  ): Promise<JobRunReport<RewrapReport | undefined>> {
    const { batchSize, maxBatchesPerRun } = this.config.kekRewrap;
    return this.run('kekRewrap', async () => {
      if ((await this.kekRotation.status()).remaining === 0) return undefined;
      return this.kekRotation.rewrapAll({
        batchSize,
        maxBatches: maxBatchesPerRun,
        onProgress: options.onProgress,
      });
    });
  }

  /** Every job, whether it is scheduled, and its last run in this process. */
  status(): JobStatus[] {
    return (Object.keys(JOB_NAMES) as JobKey[]).map((key) => ({
      key,
      name: JOB_NAMES[key],
      enabled: this.config[key].enabled,
      cron: this.config[key].cron,
      ...(this.lastRuns.has(key) && { lastRun: this.lastRuns.get(key) }),
    }));
  }

  /**
   * One cheap round trip to the storage the sessions and jobs use, for health checks: reads a
   * job's lease (a single row or hash), or, on a host's adapter that keeps no leases, a session
   * row that does not exist. Writes nothing, audits nothing.
   *
   * @returns the storage's backend name (`sqlite`, `postgres`, `redis`, ...).
   * @throws the storage's error when it cannot be read (`StorageUnavailableError`,
   *   `ShuttingDownError`, ...).
   */
  async probeStorage(): Promise<{ backend: string }> {
    const leases = this.storage.leases;
    if (leases) await leases.current(JOB_NAMES.kekRewrap);
    else await this.storage.read(STORAGE_PROBE_REF, (scope) => scope.session.find());
    return { backend: this.storage.backend };
  }

  /**
   * Who holds each job's lease now, read from the storage: unlike {@link status}'s `lastRun`,
   * which only knows this process, it shows a run on any replica (an operator's
   * `jobs status`). Reads only; takes no lease.
   *
   * @throws ConfigurationError when the storage keeps no leases.
   */
  async leases(): Promise<JobLeaseStatus[]> {
    const leases = this.leaseStorage();
    const statuses: JobLeaseStatus[] = [];
    for (const key of Object.keys(JOB_NAMES) as JobKey[]) {
      const name = JOB_NAMES[key];
      const lease = await leases.current(name);
      statuses.push({
        key,
        name,
        ...(lease && {
          lease: {
            owner: lease.owner,
            token: lease.token,
            expiresAt: new Date(lease.expiresAt),
            held: lease.expiresAt > Date.now(),
          },
        }),
      });
    }
    return statuses;
  }

  /**
   * Refuses, before anything is scheduled, a storage that keeps no leases.
   *
   * @internal
   */
  assertRunnable(): void {
    this.leasedRunner();
  }

  /**
   * Runs `work` as job `key` under its lease and keeps the report as the job's last run.
   *
   * @internal
   */
  async run<T>(key: JobKey, work: (lease: HeldLease) => Promise<T>): Promise<JobRunReport<T>> {
    const report = await this.leasedRunner().run(JOB_NAMES[key], work);
    this.lastRuns.set(key, report);
    return report;
  }

  private leasedRunner(): LeasedJobRunner {
    this.runner ??= new LeasedJobRunner(
      this.leaseStorage(),
      leaseOwnerId(),
      this.config.leaseTtlMs,
    );
    return this.runner;
  }

  private leaseStorage(): LeaseStorage {
    const leases = this.storage.leases;
    if (!leases) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' keeps no job leases, so its jobs cannot run safely on several replicas; use one of the module's stores (SQLite, Postgres, MySQL/MariaDB, Redis, memory)`,
      );
    }
    return leases;
  }
}
