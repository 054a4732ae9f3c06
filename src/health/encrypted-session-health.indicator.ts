import { Inject, Injectable, Optional } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { EncryptedSessionError } from '../errors/index.js';
import { LRUCache } from 'lru-cache';
import {
  EncryptedSessionJobs,
  KeyRotationService,
  type JobRunReport,
  type JobStatus,
  type KeyRotationStatus,
} from '../jobs/index.js';
import { KeyRing } from '../keys/index.js';
import {
  ENCRYPTED_SESSION_HEALTH_OPTIONS,
  resolveHealthOptions,
  type EncryptedSessionHealthOptions,
  type ResolvedHealthOptions,
} from './health-options.js';
import { scheduleLag } from './job-schedule.js';

/** The rotation figures and when they were read. */
interface RotationFigures {
  readonly status: KeyRotationStatus;
  readonly checkedAt: Date;
}

/** `up` or `down`, as terminus reports each indicator. */
type Status = 'up' | 'down';

/**
 * The storage check's details: the backend, and how long the round trip took, or the error
 * code it failed with (`TIMEOUT` past `timeoutMs`).
 *
 * @publicApi
 */
export interface StorageHealth {
  readonly status: Status;
  readonly backend?: string;
  readonly responseTimeMs?: number;
  readonly error?: string;
  readonly timeoutMs?: number;
}

/**
 * The key provider check's details, from the key ring's last calls (`KeyRing.providerStatus()`).
 *
 * @publicApi
 */
export interface KeyProviderHealth {
  readonly status: Status;
  readonly provider: string;
  readonly outage: boolean;
  readonly fastFailForMs?: number;
}

/**
 * One job in the jobs check: its schedule, its last run in this process, and how late it is.
 *
 * @publicApi
 */
export interface JobHealth {
  readonly status: Status;
  /** Why it is down: its last run failed, it is late past `maxLagPeriods`, or its lag could not be computed. */
  readonly reason?: 'LAST_RUN_FAILED' | 'LATE' | 'SCHEDULE_UNREADABLE';
  readonly enabled: boolean;
  readonly cron: string;
  readonly lastOutcome?: JobRunReport['outcome'];
  readonly lastStartedAt?: string;
  readonly lastFinishedAt?: string;
  /** The error code the last run failed with. */
  readonly lastErrorCode?: string;
  /** Enabled jobs: time since the first fire time no run has covered (0 when none is due). */
  readonly lagMs?: number;
  readonly periodMs?: number;
  /** Enabled jobs: the lag past which the job is down (`maxLagPeriods` periods). */
  readonly maxLagMs?: number;
  /** The error code that kept the lag from being computed. */
  readonly error?: string;
}

/**
 * The jobs check's details: one entry per job (`kekRewrap`, ...), by its option key.
 *
 * @publicApi
 */
export interface JobsHealth {
  readonly status: Status;
  readonly [job: string]: JobHealth | Status;
}

/**
 * The key rotation check's details: the oldest active data key against the policy, and the
 * rotation lag (`KeyRotationService.status()`), as of `checkedAt` (figures are reused for
 * `keyRotationCacheMs`). Down with `reason: 'ROTATION_LAG'` past `maxRotationLagMs` (only when
 * `maxRotationLagDays` is set), or with the error code when the figures could not be read.
 *
 * @publicApi
 */
export interface KeyRotationHealth {
  readonly status: Status;
  readonly reason?: 'ROTATION_LAG';
  readonly maxAgeDays?: number | null;
  readonly maxItems?: number | null;
  readonly activeKeys?: number;
  readonly oldestActiveKeyAgeMs?: number | null;
  /** Active keys past `maxAgeDays`: each is replaced at its session's next write. */
  readonly activeKeysPastMaxAge?: number;
  readonly retiringKeys?: number;
  readonly rotationLagMs?: number | null;
  readonly maxRotationLagMs?: number;
  readonly checkedAt?: string;
  readonly error?: string;
  readonly timeoutMs?: number;
}

/** Marks a probe that did not answer within the timeout. */
const TIMED_OUT = Symbol('timed out');

/** The stable code of an error; never its message (it may name a session, tenant or key). */
const codeOf = (error: unknown): string =>
  error instanceof EncryptedSessionError ? error.code : 'UNEXPECTED';

/**
 * Health indicators of the encrypted sessions for `@nestjs/terminus`'s `HealthCheckService`:
 *
 * - {@link storage}: one real read of the storage (a job lease row), down on an error or past
 *   `timeoutMs`;
 * - {@link keyProvider}: whether the key provider is in an outage, as the key ring last found
 *   it, without calling the provider (a KMS request per probe would cost money and quota);
 * - {@link jobs}: each job's last run in this process, and how late each enabled job is
 *   against its cron; down when a last run failed or an enabled job is late by more than
 *   `maxLagPeriods` periods;
 * - {@link isHealthy}: the three under one key, down when any is.
 *
 * Details hold backend and provider names, job keys, times and error codes: never an error
 * message, a session, tenant or key id.
 *
 * ```ts
 * // in a health route of a host's controller (docs/health.md):
 * return this.health.check([() => this.sessions.isHealthy()]);
 * ```
 *
 * @publicApi
 */
@Injectable()
export class EncryptedSessionHealthIndicator {
  private readonly options: ResolvedHealthOptions;
  /** A job that never ran in this process is due from its first fire time after this. */
  private readonly watchingSince = Date.now();

  /** The last rotation figures, for `keyRotationCacheMs`; concurrent probes share one scan. */
  private readonly rotationFigures: LRUCache<'figures', RotationFigures>;

  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly sessionJobs: EncryptedSessionJobs,
    private readonly keyRing: KeyRing,
    private readonly rotation: KeyRotationService,
    @Optional() @Inject(ENCRYPTED_SESSION_HEALTH_OPTIONS) options?: EncryptedSessionHealthOptions,
  ) {
    this.options = resolveHealthOptions(options);
    this.rotationFigures = new LRUCache<'figures', RotationFigures>({
      max: 1,
      // A ttl of 0 would mean "forever" to lru-cache; keyRotationCacheMs 0 skips the cache.
      ttl: Math.max(1, this.options.keyRotationCacheMs),
      fetchMethod: () => this.readRotationFigures(),
    });
  }

  /**
   * Storage, key provider and jobs under one key (`{ storage, keyProvider, jobs }` in its
   * details), down when any of them is.
   */
  async isHealthy<const Key extends string = 'encrypted-sessions'>(
    key: Key = 'encrypted-sessions' as Key,
  ): Promise<HealthIndicatorResult<Key>> {
    const storage = await this.storageHealth();
    const keyProvider = this.keyProviderHealth();
    const jobs = this.jobsHealth();
    const details = { storage, keyProvider, jobs };
    const indicator = this.indicators.check(key);
    return [storage, keyProvider, jobs].every((part) => part.status === 'up')
      ? indicator.up(details)
      : indicator.down(details);
  }

  /**
   * Whether the storage answers: one read of a job's lease (a single row or hash; a session row
   * on a host's adapter without leases). Down with the error's code, or `TIMEOUT` when it takes
   * longer than `timeoutMs`.
   */
  async storage<const Key extends string = 'encrypted-sessions-storage'>(
    key: Key = 'encrypted-sessions-storage' as Key,
  ): Promise<HealthIndicatorResult<Key>> {
    return this.result(key, await this.storageHealth());
  }

  /**
   * Whether the key provider is usable as far as the key ring knows: down from a provider call
   * that ran out of retries until the next one that succeeds (`outage`). Makes no provider call:
   * sessions' own traffic (a first write, an uncached read) finds the provider back.
   */
  keyProvider<const Key extends string = 'encrypted-sessions-key-provider'>(
    key: Key = 'encrypted-sessions-key-provider' as Key,
  ): Promise<HealthIndicatorResult<Key>> {
    return Promise.resolve(this.result(key, this.keyProviderHealth()));
  }

  /**
   * Every job of `EncryptedSessionJobs.status()`: its last run in this process and, for an
   * enabled one, its lag against its cron. Down when a job's last run failed, or an enabled job
   * is late by more than `maxLagPeriods` periods of its cron.
   */
  jobs<const Key extends string = 'encrypted-sessions-jobs'>(
    key: Key = 'encrypted-sessions-jobs' as Key,
  ): Promise<HealthIndicatorResult<Key>> {
    return Promise.resolve(this.result(key, this.jobsHealth()));
  }

  /**
   * Data key rotation: the oldest active key's age against `keys.rotation.maxAgeDays`, how many
   * active keys are past it (each is replaced at its session's next write), and the rotation
   * lag: how long the longest-waiting retiring key has waited for its items to be re-encrypted.
   * Down past `maxRotationLagDays` when that is set, or when the figures cannot be read within
   * `timeoutMs`. Each refresh scans every data key, so figures are reused for
   * `keyRotationCacheMs`, and {@link isHealthy} leaves this check out: add it where wanted.
   */
  async keyRotation<const Key extends string = 'encrypted-sessions-key-rotation'>(
    key: Key = 'encrypted-sessions-key-rotation' as Key,
  ): Promise<HealthIndicatorResult<Key>> {
    return this.result(key, await this.keyRotationHealth());
  }

  /** The details as terminus takes them: `status` decides up or down, the rest goes along. */
  private result<Key extends string>(
    key: Key,
    { status, ...details }: { readonly status: Status },
  ): HealthIndicatorResult<Key> {
    const indicator = this.indicators.check(key);
    return status === 'up' ? indicator.up(details) : indicator.down(details);
  }

  private async storageHealth(): Promise<StorageHealth> {
    const started = performance.now();
    try {
      const probed = await this.withinTimeout(this.sessionJobs.probeStorage());
      if (probed === TIMED_OUT) {
        return { status: 'down', error: 'TIMEOUT', timeoutMs: this.options.timeoutMs };
      }
      return {
        status: 'up',
        backend: probed.backend,
        responseTimeMs: Math.round(performance.now() - started),
      };
    } catch (error) {
      return { status: 'down', error: codeOf(error) };
    }
  }

  private async keyRotationHealth(): Promise<KeyRotationHealth> {
    let figures;
    try {
      figures = await this.withinTimeout(
        this.options.keyRotationCacheMs === 0
          ? this.readRotationFigures()
          : this.rotationFigures.fetch('figures'),
      );
    } catch (error) {
      return { status: 'down', error: codeOf(error) };
    }
    if (figures === TIMED_OUT || figures === undefined) {
      return { status: 'down', error: 'TIMEOUT', timeoutMs: this.options.timeoutMs };
    }
    const { policy, ...counts } = figures.status;
    const { maxRotationLagDays } = this.options;
    const maxRotationLagMs =
      maxRotationLagDays === null ? undefined : Math.round(maxRotationLagDays * 86_400_000);
    const details = {
      ...policy,
      ...counts,
      ...(maxRotationLagMs !== undefined && { maxRotationLagMs }),
      checkedAt: figures.checkedAt.toISOString(),
    };
    const lagging =
      maxRotationLagMs !== undefined &&
      counts.rotationLagMs !== null &&
      counts.rotationLagMs > maxRotationLagMs;
    return lagging
      ? { status: 'down', reason: 'ROTATION_LAG', ...details }
      : { status: 'up', ...details };
  }

  private async readRotationFigures(): Promise<RotationFigures> {
    return { status: await this.rotation.status(), checkedAt: new Date() };
  }

  /** `work`, or {@link TIMED_OUT} once `timeoutMs` passed first. */
  private async withinTimeout<T>(work: Promise<T>): Promise<T | typeof TIMED_OUT> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), this.options.timeoutMs);
      // A health probe never holds the process open.
      timer.unref();
    });
    try {
      // race() also handles work that rejects after the timeout won.
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private keyProviderHealth(): KeyProviderHealth {
    const state = this.keyRing.providerStatus();
    return { status: state.outage ? 'down' : 'up', ...state };
  }

  private jobsHealth(): JobsHealth {
    const now = Date.now();
    const jobs: Record<string, JobHealth> = {};
    for (const job of this.sessionJobs.status()) jobs[job.key] = this.jobHealth(job, now);
    const status = Object.values(jobs).every((job) => job.status === 'up') ? 'up' : 'down';
    return { status, ...jobs };
  }

  private jobHealth(job: JobStatus, now: number): JobHealth {
    const run = job.lastRun;
    const base = {
      enabled: job.enabled,
      cron: job.cron,
      ...(run && {
        lastOutcome: run.outcome,
        lastStartedAt: run.startedAt.toISOString(),
        lastFinishedAt: run.finishedAt.toISOString(),
        ...(run.errorCode !== undefined && { lastErrorCode: run.errorCode }),
      }),
    };
    // A failed run is news whether the cron or a caller ran it.
    const failed = run?.outcome === 'failed';
    if (!job.enabled) {
      return failed
        ? { status: 'down', reason: 'LAST_RUN_FAILED', ...base }
        : { status: 'up', ...base };
    }
    // A run covers every fire time up to its start, whatever its outcome (a skipped one ran on
    // another replica); a job that never ran here is due from when watching began.
    let lag;
    try {
      lag = scheduleLag(job.cron, run?.startedAt.getTime() ?? this.watchingSince, now);
    } catch (error) {
      return { status: 'down', reason: 'SCHEDULE_UNREADABLE', ...base, error: codeOf(error) };
    }
    const maxLagMs = Math.round(lag.periodMs * this.options.maxLagPeriods);
    const timing = { lagMs: lag.lagMs, periodMs: lag.periodMs, maxLagMs };
    if (failed) return { status: 'down', reason: 'LAST_RUN_FAILED', ...base, ...timing };
    if (lag.lagMs > maxLagMs) return { status: 'down', reason: 'LATE', ...base, ...timing };
    return { status: 'up', ...base, ...timing };
  }
}
