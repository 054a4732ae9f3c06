import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { AUDIT_TRAIL, runAs, type AuditActor, type AuditTrail } from '../audit/index.js';
import { ConfigurationError, LeaseLostError } from '../errors/index.js';
import { KeyRing } from '../keys/index.js';
import {
  BatchBudget,
  ExpiredItemPurge,
  IdleSessionPurge,
  type IdleSessionOutcome,
  type SessionPurgeCounts,
} from '../sessions/index.js';
import {
  SESSION_STORAGE,
  runAsBackgroundWork,
  supportsMaintenance,
  type ExpiredItemRecord,
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
 * once; this job removes them for good, a session's share of each scanned page in one audited
 * unit of work, fenced by the job's lease.
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
    // Background work like the purge it previews: on a single connection it yields to the app.
    const result = await runAsBackgroundWork(() =>
      this.scan(
        maintenance,
        options,
        (ref, rows, now) => this.purge.dryRun(ref, rows, now),
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
      (ref, rows, now) => this.purge.purgeSession(ref, rows, now, stillHeld()),
      (ref, idleBefore) => this.idle.purgeSession(ref, idleBefore, stillHeld()),
    );
  }

  /** Scans expired items page by page and hands each session's share of a page to `batch`. */
  private async scan(
    maintenance: Scans,
    options: PurgeOptions,
    batch: (ref: SessionRef, rows: StoredItem[], now: number) => Promise<SessionPurgeCounts>,
    idleBatch: (ref: SessionRef, idleBefore: number) => Promise<IdleSessionOutcome>,
  ): Promise<PurgeReport> {
    const dryRun = options.dryRun === true;
    const started = Date.now();
    // One `now` for the whole run, so the scan ends.
    const now = started;
    const { batchSize, maxBatchesPerRun } = this.config.retentionPurge;
    const totals = {
      scanned: 0,
      purged: 0,
      shredded: 0,
      unverified: 0,
      skippedForHold: 0,
      idleSessionsPurged: 0,
      idleSessionsHeld: 0,
      batches: 0,
    };
    // Batches are taken from the run's budget as they start, so units running side by side
    // never commit more than maxBatchesPerRun together.
    const budget = new BatchBudget(maxBatchesPerRun);
    const concurrency = jobConcurrencyOf(this.storage);
    // Units running side by side set it when the budget stops them.
    const run = { complete: true };
    /** Runs one unit under its budget: false when the budget ran out before it (the run ends). */
    const underBudget = async (unit: () => Promise<boolean>): Promise<boolean> => {
      if (!budget.take()) {
        run.complete = false;
        return false;
      }
      const committed = await unit();
      if (committed) totals.batches++;
      else budget.giveBack();
      options.onProgress?.({ ...totals });
      return true;
    };
    let cursor: string | undefined;
    do {
      const page = await maintenance.listExpiredItems(now, cursor, batchSize);
      cursor = page.cursor;
      totals.scanned += page.items.length;
      await runSideBySide(bySession(page.items), concurrency, (records) =>
        underBudget(async () => {
          const { tenantId, sessionId } = records[0];
          const counts = await runAs(purgeActor(tenantId), () =>
            batch(
              { tenantId, sessionId },
              records.map((record) => record.item),
              now,
            ),
          );
          totals.purged += counts.purged;
          totals.shredded += counts.shredded;
          totals.unverified += counts.unverified;
          totals.skippedForHold += counts.skippedForHold;
          return counts.purged + counts.shredded > 0;
        }),
      );
    } while (run.complete && cursor !== undefined);
    const idleDays = this.config.retentionPurge.sessionIdleDays;
    if (run.complete && idleDays !== null && maintenance.listIdleSessions) {
      const idleBefore = now - idleDays * DAY_MS;
      cursor = undefined;
      do {
        const page = await maintenance.listIdleSessions(idleBefore, cursor, batchSize);
        cursor = page.cursor;
        await runSideBySide(page.sessions, concurrency, (session) =>
          underBudget(async () => {
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

/** A page's items grouped by session, in the order each session first appears. */
function bySession(items: readonly ExpiredItemRecord[]): ExpiredItemRecord[][] {
  const groups = new Map<string, ExpiredItemRecord[]>();
  for (const record of items) {
    // JSON of the pair: no separator an id could contain collides.
    const key = JSON.stringify([record.tenantId, record.sessionId]);
    const group = groups.get(key);
    if (group) group.push(record);
    else groups.set(key, [record]);
  }
  return [...groups.values()];
}
