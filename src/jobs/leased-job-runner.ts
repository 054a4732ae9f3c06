import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Logger } from '@nestjs/common';
import { EncryptedSessionError } from '../errors/index.js';
import { runAsBackgroundWork, type JobLease, type LeaseStorage } from '../storage/index.js';

// Job names, counts and codes only.
const logger = new Logger('EncryptedSessionJobs');

/**
 * A lease while its job works: renewed in the background; `lost` (and `signal` aborted) once a
 * renewal finds another holder or the storage unreachable past the lease, so the work stops
 * before its next write.
 *
 * @publicApi
 */
export interface HeldLease {
  /** The lease as last taken or renewed: its token fences the job's writes. */
  readonly current: JobLease;
  readonly lost: boolean;
  readonly signal: AbortSignal;
}

/**
 * How one run of a job ended:
 * - `done`: it held the lease throughout and its work finished;
 * - `failed`: its work threw (`errorCode` names the module's error, else `UNEXPECTED`);
 * - `lease_lost`: the lease passed to another holder while it worked;
 * - `skipped`: another replica holds the lease (`heldBy`), so this one did nothing.
 *
 * @publicApi
 */
export interface JobRunReport<T = unknown> {
  readonly job: string;
  readonly outcome: 'done' | 'failed' | 'lease_lost' | 'skipped';
  /** When the run took the lease; for a `skipped` run, when it asked for it. */
  readonly startedAt: Date;
  /** When its work ended, before it released the lease. */
  readonly finishedAt: Date;
  readonly result?: T;
  readonly errorCode?: string;
  readonly heldBy?: string;
}

/** This process's lease owner id: host, pid and a random part (a restarted pid differs). */
export function leaseOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/**
 * Runs jobs under their lease: one replica at a time acts for a job. The lease is taken (or
 * found held elsewhere, and the run skipped), renewed at a third of its time to live while the
 * work runs, and released when it ends; a renewal that fails marks it lost.
 */
export class LeasedJobRunner {
  constructor(
    private readonly leases: LeaseStorage,
    /** Who this process is to the other replicas. */
    readonly owner: string,
    private readonly ttlMs: number,
  ) {}

  /** Whether the lease is still this run's (renewed once more); a storage failure says no. */
  private async stillHeld(held: { current: JobLease }): Promise<boolean> {
    const renewed = await this.leases.renew(held.current, this.ttlMs).catch(() => undefined);
    if (renewed) held.current = renewed;
    return renewed !== undefined;
  }

  /** Runs `work` if this process gets `job`'s lease; the report says what happened. */
  async run<T>(job: string, work: (lease: HeldLease) => Promise<T>): Promise<JobRunReport<T>> {
    const askedAt = new Date();
    const taken = await this.leases.acquire(job, this.owner, this.ttlMs);
    if (!taken) {
      const holder = await this.leases.current(job);
      return {
        job,
        outcome: 'skipped',
        startedAt: askedAt,
        finishedAt: new Date(),
        heldBy: holder?.owner,
      };
    }
    // An acting run starts once it holds the lease: the acquire may have waited for the last
    // holder's release, and runs of one job must not seem to overlap in their reports.
    const startedAt = new Date();
    const abort = new AbortController();
    const held = { current: taken, lost: false, signal: abort.signal };
    const loseLease = () => {
      held.lost = true;
      abort.abort();
    };
    let renewing: Promise<void> | undefined;
    const timer = setInterval(
      () => {
        if (renewing || held.lost) return;
        renewing = this.leases
          .renew(held.current, this.ttlMs)
          .then(
            (renewed) => {
              if (renewed) held.current = renewed;
              else loseLease();
            },
            () => {
              // Unreachable storage: the lease may lapse meanwhile; a fenced write will tell.
              if (Date.now() >= held.current.expiresAt) loseLease();
            },
          )
          .finally(() => (renewing = undefined));
      },
      Math.max(1, Math.floor(this.ttlMs / 3)),
    );
    timer.unref();
    // A run that lost its lease says so, whatever its work returned or threw.
    const ended = (outcome: 'done' | 'failed', details: Partial<JobRunReport<T>>) => ({
      job,
      outcome: held.lost ? ('lease_lost' as const) : outcome,
      startedAt,
      finishedAt: new Date(),
      ...details,
    });
    try {
      // Background work: on a single-connection store its units yield to the app's calls.
      // The lease's own reads and writes stay in the foreground, so it is renewed on time.
      const result = await runAsBackgroundWork(() => work(held));
      await renewing;
      // A run paused past its lease may find nothing left to write once it resumes: it ends
      // `lease_lost`, not `done`, when the lease moved on meanwhile.
      if (!held.lost && !(await this.stillHeld(held))) loseLease();
      return ended('done', { result });
    } catch (error) {
      const errorCode = error instanceof EncryptedSessionError ? error.code : 'UNEXPECTED';
      logger.error(`Job ${job} failed (${errorCode}); the next run resumes from the data`);
      return ended('failed', { errorCode });
    } finally {
      clearInterval(timer);
      await renewing;
      if (!held.lost) {
        await this.leases.release(held.current).catch(() => {
          logger.warn(`Job ${job} could not release its lease; it lapses on its own`);
        });
      }
    }
  }
}
