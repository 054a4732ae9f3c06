import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { AUDIT_TRAIL, runAs, type AuditActor, type AuditTrail } from '../audit/index.js';
import { ConfigurationError, LeaseLostError } from '../errors/index.js';
import { KeyRing } from '../keys/index.js';
import {
  BatchBudget,
  type CheckedBatch,
  ExpiredItemPurge,
  IdleSessionPurge,
  type IdleSessionOutcome,
  type SessionPurgeCounts,
  unpurgedCounts,
} from '../sessions/index.js';
import {
  SESSION_STORAGE,
  runAsBackgroundWork,
  supportsMaintenance,
  type ExpiredItemRecord,
  type JobLease,
  type SessionRef,
  type SessionStorage,
  type StorageMaintenance,
  type StoredItem,
} from '../storage/index.js';
import { EncryptedSessionJobs } from './encrypted-session-jobs.service.js';
import { JOB_NAMES, JOBS_CONFIG, type JobsConfig } from './jobs-config.js';
import type { HeldLease, JobRunReport } from './leased-job-runner.js';
import { jobConcurrencyOf, runSideBySide } from './side-by-side.js';

// Counts and codes only.
const logger = new Logger('RetentionService');

/**
 * What one run of the retention purge did.
 *
 * @publicApi
 */
export interface PurgeReport {
  /** Expired items the scan found. */
  readonly scanned: number;
  /** Items deleted because their sealed expiry had passed. */
  readonly purged: number;
  /** Items deleted whose data key was already destroyed (unreadable for good). */
  readonly shredded: number;
  /** Items kept: their sealed expiry could not be confirmed (audited as integrity failures). */
  readonly unverified: number;
  /** Items kept because a legal hold covers them. */
  readonly skippedForHold: number;
  /**
   * Sessions idle past `retention.sessionIdleDays` deleted (keys destroyed first); 0 when the
   * option is null.
   */
  readonly idleSessionsPurged: number;
  /** Idle sessions kept because a legal hold covers them. */
  readonly idleSessionsHeld: number;
  /** Audited batches committed (one session's share of a page each, one per idle session). */
  readonly batches: number;
  /** False when the run stopped at `maxBatchesPerRun`: the next run goes on. */
  readonly complete: boolean;
  readonly elapsedMs: number;
  /** True for a dry run: the counts say what a run would have done; nothing changed. */
  readonly dryRun: boolean;
}

/**
 * Options of {@link RetentionService.purgeExpired}.
 *
 * @publicApi
 */
export interface PurgeOptions {
  /**
   * Count what a run would purge, deleting and recording nothing. A dry run reads only, so it
   * takes no lease and always runs.
   */
  readonly dryRun?: boolean;
  /** Called after each batch with the counts so far (a CLI's progress bar). */
  readonly onProgress?: (progress: PurgeProgress) => void;
}

/**
 * The counts of a run so far, for {@link PurgeOptions.onProgress}.
 *
 * @publicApi
 */
export interface PurgeProgress {
  readonly scanned: number;
  readonly purged: number;
  readonly shredded: number;
  readonly unverified: number;
  readonly skippedForHold: number;
  readonly batches: number;
}

/** What the purge scans with: expired items, and sessions by activity where configured. */
type Scans = Required<Pick<StorageMaintenance, 'listExpiredItems'>> &
  Pick<StorageMaintenance, 'listIdleSessions'>;

const DAY_MS = 86_400_000;

/** The actor of the purge's events in a tenant: the module's retention job. */
const purgeActor = (tenantId: string): AuditActor => ({
  type: 'system',
  id: JOB_NAMES.retentionPurge,
  tenantId,
});

/**
 * Retention: deletes items whose expiry has passed. Expired items are invisible to reads at
 * once; this job removes them for good: a session's share of each scanned page is one audited
 * batch, and the batches of a page's sessions of one tenant commit in one unit of work where
 * the storage spans sessions (else one unit each), fenced by the job's lease.
 *
 * @publicApi
 */
@Injectable()
export class RetentionService {
  private readonly purge: ExpiredItemPurge;
  private readonly idle: IdleSessionPurge;

  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    keyRing: KeyRing,
    private readonly jobs: EncryptedSessionJobs,
    @Inject(JOBS_CONFIG) private readonly config: JobsConfig,
    @Optional() @Inject(AUDIT_TRAIL) audit?: AuditTrail | null,
  ) {
    this.purge = new ExpiredItemPurge(storage, keyRing, audit ?? undefined);
    this.idle = new IdleSessionPurge(storage, keyRing, audit ?? undefined);
  }

  /**
   * Purges expired items, under the job's lease (one replica at a time; the others' calls come
   * back `skipped`), at most `jobs.retentionPurge.maxBatchesPerRun` batches per run. Every
   * item's expiry is confirmed against its envelope first; one that does not open is kept.
   * The scheduler calls it on `jobs.retentionPurge.cron`; a host or a test may call it at any
   * time.
   *
   * @throws ConfigurationError when the storage cannot scan by expiry (a host's own adapter) or
   *   keeps no leases.
   */
  purgeExpired(options: PurgeOptions = {}): Promise<JobRunReport<PurgeReport>> {
    const maintenance = this.expiryScan();
    if (options.dryRun) return this.dryRun(maintenance, options);
    return this.jobs.run('retentionPurge', (held) =>
      this.purgeUnderLease(maintenance, held, options),
    );
  }

  private async dryRun(
    maintenance: Scans,
    options: PurgeOptions,
  ): Promise<JobRunReport<PurgeReport>> {
    const startedAt = new Date();
    const concurrency = jobConcurrencyOf(this.storage);
    // Background work like the purge it previews: on a single connection it yields to the app.
    const result = await runAsBackgroundWork(() =>
      this.scan(
        maintenance,
        options,
        // One session at a time, each under the budget as a real run's batch would be.
        (sessions, now, run) =>
          runSideBySide(sessions, concurrency, (batch) =>
            run.underBudget(async () => {
              const counts = await runAs(purgeActor(batch.ref.tenantId), () =>
                this.purge.dryRun(batch.ref, batch.rows, now),
              );
              run.add(counts);
              return counts.purged + counts.shredded > 0;
            }),
          ),
        (ref, idleBefore) => this.idle.dryRun(ref, idleBefore),
      ),
    );
    return {
      job: JOB_NAMES.retentionPurge,
      outcome: 'done',
      startedAt,
      finishedAt: new Date(),
      result,
    };
  }

  private expiryScan(): Scans {
    const maintenance = supportsMaintenance(this.storage) ? this.storage.maintenance : undefined;
    if (!maintenance?.listExpiredItems) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' cannot scan items by expiry, so the retention purge cannot run on it (expired items stay invisible to reads but are not deleted); use one of the module's stores, or give the adapter StorageMaintenance.listExpiredItems`,
      );
    }
    if (this.config.retentionPurge.sessionIdleDays !== null && !maintenance.listIdleSessions) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' cannot scan sessions by activity, so idle sessions cannot be purged on it; set retention.sessionIdleDays to null`,
      );
    }
    return {
      listExpiredItems: maintenance.listExpiredItems.bind(maintenance),
      listIdleSessions: maintenance.listIdleSessions?.bind(maintenance),
    };
  }

  private purgeUnderLease(
    maintenance: Scans,
    held: HeldLease,
    options: PurgeOptions,
  ): Promise<PurgeReport> {
    const stillHeld = () => {
      if (held.lost) {
        throw new LeaseLostError(
          `Job '${JOB_NAMES.retentionPurge}' lost its lease mid-run; it stops, and the lease holder carries on`,
        );
      }
      return held.current;
    };
    return this.scan(
      maintenance,
      options,
      (sessions, now, run) => this.purgePage(sessions, now, run, stillHeld),
      (ref, idleBefore) => this.idle.purgeSession(ref, idleBefore, stillHeld()),
    );
  }

  /**
   * Purges a page's sessions: checks their rows session by session (until as many have items
   * to purge as the budget has batches left), then deletes the checked batches in units of
   * several sessions of one tenant each, as many units side by side as the storage runs to
   * advantage. Fewer units mean fewer commits, and a commit is most of a batch's cost.
   */
  private async purgePage(
    sessions: readonly SessionRows[],
    now: number,
    run: PurgeRun,
    lease: () => JobLease,
  ): Promise<void> {
    const checked: CheckedBatch[] = [];
    for (const { ref, rows } of sessions) {
      if (checked.length === run.budget.left) {
        run.complete = false;
        break;
      }
      const batch = await runAs(purgeActor(ref.tenantId), () => this.purge.check(ref, rows, now));
      if (batch.purgeable.length > 0) checked.push(batch);
      else run.add(unpurgedCounts(batch));
    }
    // Taken before the units start, so units side by side never commit more than it together.
    run.budget.takeUpTo(checked.length);
    const concurrency = jobConcurrencyOf(this.storage);
    await runSideBySide(unitsOf(checked, concurrency), concurrency, async (unit) => {
      const { tenantId } = unit[0].ref;
      const counts = await runAs(purgeActor(tenantId), () =>
        this.purge.commit(tenantId, unit, lease()),
      );
      for (const batchCounts of counts) {
        run.add(batchCounts);
        run.settle(batchCounts.purged + batchCounts.shredded > 0);
      }
      run.progress();
      return true;
    });
  }

  /** Scans expired items page by page and hands each page's sessions to `purgePage`. */
  private async scan(
    maintenance: Scans,
    options: PurgeOptions,
    purgePage: (sessions: SessionRows[], now: number, run: PurgeRun) => Promise<void>,
    idleBatch: (ref: SessionRef, idleBefore: number) => Promise<IdleSessionOutcome>,
  ): Promise<PurgeReport> {
    const dryRun = options.dryRun === true;
    const started = Date.now();
    // One `now` for the whole run, so the scan ends.
    const now = started;
    const { batchSize, maxBatchesPerRun } = this.config.retentionPurge;
    const run = new PurgeRun(maxBatchesPerRun, options.onProgress);
    const { totals } = run;
    const concurrency = jobConcurrencyOf(this.storage);
    let cursor: string | undefined;
    do {
      const page = await maintenance.listExpiredItems(now, cursor, batchSize);
      cursor = page.cursor;
      totals.scanned += page.items.length;
      await purgePage(bySession(page.items), now, run);
    } while (run.complete && cursor !== undefined);
    const idleDays = this.config.retentionPurge.sessionIdleDays;
    if (run.complete && idleDays !== null && maintenance.listIdleSessions) {
      const idleBefore = now - idleDays * DAY_MS;
      cursor = undefined;
      do {
        const page = await maintenance.listIdleSessions(idleBefore, cursor, batchSize);
        cursor = page.cursor;
        await runSideBySide(page.sessions, concurrency, (session) =>
          run.underBudget(async () => {
            const ref = { tenantId: session.tenantId, sessionId: session.sessionId };
            const result = await runAs(purgeActor(ref.tenantId), () => idleBatch(ref, idleBefore));
            if (result.outcome === 'purged') totals.idleSessionsPurged++;
            else if (result.outcome === 'held') totals.idleSessionsHeld++;
            return result.outcome === 'purged';
          }),
        );
      } while (run.complete && cursor !== undefined);
    }
    const report: PurgeReport = {
      ...totals,
      complete: run.complete,
      elapsedMs: Date.now() - started,
      dryRun,
    };
    logger.log(
      `Retention purge${dryRun ? ' (dry run: nothing deleted)' : ''}: scanned ${report.scanned}, purged ${report.purged}, shredded ${report.shredded}, kept unverified ${report.unverified}, kept for legal hold ${report.skippedForHold}, idle sessions purged ${report.idleSessionsPurged} (held ${report.idleSessionsHeld}), in ${report.batches} batch(es), ${report.elapsedMs} ms${run.complete ? '' : '; the next run goes on'}`,
    );
    return report;
  }
}

/** One session's share of a page of the scan. */
interface SessionRows {
  readonly ref: SessionRef;
  readonly rows: StoredItem[];
}

/**
 * A run's counts, its batch budget (`maxBatchesPerRun`, taken as units start so units side by
 * side never commit more than it together) and whether it went through every page.
 */
class PurgeRun {
  readonly totals = {
    scanned: 0,
    purged: 0,
    shredded: 0,
    unverified: 0,
    skippedForHold: 0,
    idleSessionsPurged: 0,
    idleSessionsHeld: 0,
    batches: 0,
  };
  readonly budget: BatchBudget;
  /** False once the budget stopped the run (units side by side set it). */
  complete = true;

  constructor(
    maxBatchesPerRun: number,
    private readonly onProgress: PurgeOptions['onProgress'],
  ) {
    this.budget = new BatchBudget(maxBatchesPerRun);
  }

  /** Adds a batch's counts to the run's. */
  add(counts: SessionPurgeCounts): void {
    this.totals.purged += counts.purged;
    this.totals.shredded += counts.shredded;
    this.totals.unverified += counts.unverified;
    this.totals.skippedForHold += counts.skippedForHold;
  }

  /** Reports the counts so far to the caller's progress callback. */
  progress(): void {
    this.onProgress?.({ ...this.totals });
  }

  /**
   * Runs a one-batch unit under the budget: false when the budget ran out before it (the run
   * ends). `unit` resolves true when it committed its batch.
   */
  async underBudget(unit: () => Promise<boolean>): Promise<boolean> {
    if (!this.budget.take()) {
      this.complete = false;
      return false;
    }
    this.settle(await unit());
    this.progress();
    return true;
  }

  /** Counts a batch taken from the budget: committed, or given back when it committed nothing. */
  settle(committed: boolean): void {
    if (committed) this.totals.batches++;
    else this.budget.giveBack();
  }
}

/**
 * The checked batches in units of one tenant's sessions each, as many units as `concurrency`
 * where there are sessions enough (one unit per tenant on SQLite).
 */
function unitsOf(batches: readonly CheckedBatch[], concurrency: number): CheckedBatch[][] {
  const perUnit = Math.max(1, Math.ceil(batches.length / concurrency));
  const byTenant = new Map<string, CheckedBatch[]>();
  for (const batch of batches) {
    const tenant = byTenant.get(batch.ref.tenantId);
    if (tenant) tenant.push(batch);
    else byTenant.set(batch.ref.tenantId, [batch]);
  }
  const units: CheckedBatch[][] = [];
  for (const tenant of byTenant.values()) {
    for (let start = 0; start < tenant.length; start += perUnit) {
      units.push(tenant.slice(start, start + perUnit));
    }
  }
  return units;
}

/** A page's items grouped by session, in the order each session first appears. */
function bySession(items: readonly ExpiredItemRecord[]): SessionRows[] {
  const groups = new Map<string, SessionRows>();
  for (const record of items) {
    // JSON of the pair: no separator an id could contain collides.
    const key = JSON.stringify([record.tenantId, record.sessionId]);
    const group = groups.get(key);
    if (group) group.rows.push(record.item);
    else {
      groups.set(key, {
        ref: { tenantId: record.tenantId, sessionId: record.sessionId },
        rows: [record.item],
      });
    }
  }
  return [...groups.values()];
}
