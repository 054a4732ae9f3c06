import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import {
  AUDIT_KEYS_TENANT,
  AUDIT_TRAIL,
  currentAuditContext,
  type AuditTrail,
  runAs,
} from '../audit/index.js';
import { ConfigurationError, LeaseLostError, SessionNotFoundError } from '../errors/index.js';
import { KeyRing } from '../keys/index.js';
import { BatchBudget, DataKeyReEncryption } from '../sessions/index.js';
import {
  SESSION_STORAGE,
  supportsMaintenance,
  type DataKeyPage,
  type SessionRef,
  type SessionStorage,
} from '../storage/index.js';
import { EncryptedSessionJobs } from './encrypted-session-jobs.service.js';
import { JOB_NAMES, JOBS_CONFIG, type JobsConfig } from './jobs-config.js';
import type { HeldLease, JobRunReport } from './leased-job-runner.js';
import { jobConcurrencyOf, runSideBySide } from './side-by-side.js';

const logger = new Logger('KeyRotation');

/**
 * What one re-encryption run did, over every retiring data key it reached.
 *
 * @publicApi
 */
export interface KeyRotationReport {
  /** Retiring data keys the run looked at. */
  readonly retiringKeys: number;
  /** Items sealed again under their session's active key. */
  readonly reencrypted: number;
  /** Retiring keys destroyed: no item referenced them any more. */
  readonly destroyed: number;
  /** Items left under a retiring key because they do not open (never deleted; audited). */
  readonly unreadable: number;
  /** Retiring keys left as they are because a legal hold covers their session. */
  readonly skippedForHold: number;
  /** Units of work that changed something (one audit event each). */
  readonly batches: number;
  /** False when the run stopped at `jobs.keyRotation.maxBatchesPerRun`: the next run goes on. */
  readonly complete: boolean;
  readonly elapsedMs: number;
}

/**
 * How far a run has come (the CLI's progress bar).
 *
 * @publicApi
 */
export type KeyRotationProgress = Omit<KeyRotationReport, 'complete' | 'elapsedMs'>;

/**
 * Where data key rotation stands over every session ({@link KeyRotationService.status}): the
 * oldest active key against the policy, and how far re-encryption lags behind. Ages are in
 * milliseconds at the time of the call.
 *
 * @publicApi
 */
export interface KeyRotationStatus {
  /** The policy in force (`keys.rotation`). */
  readonly policy: { readonly maxAgeDays: number | null; readonly maxItems: number | null };
  readonly activeKeys: number;
  /** Age of the oldest active data key; null when there is none. */
  readonly oldestActiveKeyAgeMs: number | null;
  /**
   * Active keys older than `policy.maxAgeDays`. None of them seals again: each is replaced at
   * its session's next write, so an idle session's key may stay here without breaking the policy.
   */
  readonly activeKeysPastMaxAge: number;
  /** Retiring keys: replaced, their items still to re-encrypt (or kept for a legal hold). */
  readonly retiringKeys: number;
  /** Rotation lag: how long the longest-waiting retiring key has been retiring; null when none is. */
  readonly rotationLagMs: number | null;
}

const DAY_MS = 86_400_000;

/** The actor of the job's events: the module's own rotation, in the key's tenant. */
const rotationActor = (tenantId: string) =>
  ({ type: 'system', id: JOB_NAMES.keyRotation, tenantId }) as const;

/**
 * Staged data key rotation: a session's data key turns `retiring` when the rotation policy
 * (or its item limit) starts a new generation; this job re-encrypts the items of every retiring
 * key into the session's active key, in batches, and destroys the retiring key once no item
 * references it (NIST SP 800-57: active, then deactivated for processing only, then destroyed,
 * its record kept). Runs under the job's lease, one replica at a time, each batch fenced by
 * it; a run that stops (a crash, a lost lease, the batch limit) resumes from what the data
 * says.
 *
 * @publicApi
 */
@Injectable()
export class KeyRotationService {
  private readonly reencryption: DataKeyReEncryption;

  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    private readonly jobs: EncryptedSessionJobs,
    @Inject(JOBS_CONFIG) private readonly config: JobsConfig,
    @Optional() @Inject(AUDIT_TRAIL) audit?: AuditTrail | null,
  ) {
    this.reencryption = new DataKeyReEncryption(storage, keyRing, audit ?? undefined);
  }

  /**
   * Re-encrypts the items of retiring data keys and destroys the keys nothing references, under
   * the job's lease (one replica at a time; the others' calls come back `skipped`), at most
   * `jobs.keyRotation.maxBatchesPerRun` batches per run. The scheduler calls it on
   * `jobs.keyRotation.cron`; a host, the CLI or a test may call it at any time.
   *
   * @throws ConfigurationError when the storage cannot re-encrypt (a host's own adapter, or
   *   one that cannot yet) or keeps no leases.
   */
  reencryptRetiring(
    options: { readonly onProgress?: (progress: KeyRotationProgress) => void } = {},
  ): Promise<JobRunReport<KeyRotationReport>> {
    const listRetiring = this.retiringKeyScan();
    return this.jobs.run('keyRotation', (held) => this.run(listRetiring, held, options));
  }

  /**
   * Rotates one session's data key now (a new generation seals its next writes: for a key
   * suspected exposed, or on an operator's request), then re-encrypts the items of the
   * session's retiring keys and destroys those keys, under the job's lease. Run it as the
   * operator (`runAs`) so the trail names them. A key that has sealed nothing is not rotated.
   *
   * @throws SessionNotFoundError (in the report) when the session does not exist.
   */
  rotateSession(
    ref: SessionRef,
    options: { readonly onProgress?: (progress: KeyRotationProgress) => void } = {},
  ): Promise<JobRunReport<KeyRotationReport>> {
    this.retiringKeyScan();
    return this.jobs.run('keyRotation', async (held) => {
      const row = await this.storage.read(ref, (scope) => scope.session.find());
      if (!row) {
        throw new SessionNotFoundError(
          `Session '${ref.sessionId}' of tenant '${ref.tenantId}' does not exist; nothing was rotated`,
        );
      }
      await this.keyRing.rotate(ref, row.subjectId, row.nextSeq);
      // The session's own retiring keys, as one page.
      const listSessionKeys = async (): Promise<DataKeyPage> => ({
        records: (
          await this.storage.read(ref, async (scope) => (await scope.dataKeys.listAll?.()) ?? [])
        ).filter((key) => key.state === 'retiring'),
        cursor: undefined,
      });
      return this.run(listSessionKeys, held, options);
    });
  }

  /**
   * Where rotation stands over every session: the oldest active data key against the policy
   * and the rotation lag. One full scan of the data keys; the health check caches it.
   *
   * @throws ConfigurationError when the storage cannot tell (a host's own adapter).
   */
  async status(): Promise<KeyRotationStatus> {
    const maintenance = supportsMaintenance(this.storage) ? this.storage.maintenance : undefined;
    if (!maintenance?.dataKeyAges) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' cannot report its data keys' ages; use a store of the module's`,
      );
    }
    const policy = this.keyRing.rotationPolicy;
    const now = Date.now();
    // With no age limit no key is past it: every creation time is after 0.
    // The audit trail's MAC keys rotate on a period of their own and stay retiring (verify-only).
    const ages = await maintenance.dataKeyAges(
      policy.maxAgeDays === null ? 0 : now - policy.maxAgeDays * DAY_MS,
      AUDIT_KEYS_TENANT,
    );
    const since = (time: number | null) => (time === null ? null : Math.max(0, now - time));
    return {
      policy,
      activeKeys: ages.activeKeys,
      oldestActiveKeyAgeMs: since(ages.oldestActiveCreatedAt),
      activeKeysPastMaxAge: ages.activeKeysCreatedBefore,
      retiringKeys: ages.retiringKeys,
      rotationLagMs: since(ages.oldestRetiredAt),
    };
  }

  private retiringKeyScan(): (cursor: string | undefined, limit: number) => Promise<DataKeyPage> {
    const maintenance = supportsMaintenance(this.storage) ? this.storage.maintenance : undefined;
    if (!maintenance?.listRetiringDataKeys) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' cannot list retiring data keys, so their items cannot be re-encrypted on it (they stay readable under their own keys); use a store of the module's (memory, SQLite, Postgres, MySQL/MariaDB, Redis)`,
      );
    }
    return maintenance.listRetiringDataKeys.bind(maintenance);
  }

  private async run(
    listRetiring: (cursor: string | undefined, limit: number) => Promise<DataKeyPage>,
    held: HeldLease,
    options: { readonly onProgress?: (progress: KeyRotationProgress) => void },
  ): Promise<KeyRotationReport> {
    const started = Date.now();
    const { batchSize, maxBatchesPerRun } = this.config.keyRotation;
    const lease = () => {
      if (held.lost) {
        throw new LeaseLostError(
          `Job '${JOB_NAMES.keyRotation}' lost its lease mid-run; it stops, and the lease holder carries on`,
        );
      }
      return held.current;
    };
    const totals = {
      retiringKeys: 0,
      reencrypted: 0,
      destroyed: 0,
      unreadable: 0,
      skippedForHold: 0,
      batches: 0,
    };
    // Units running side by side set it when the budget stops them.
    const run = { complete: true };
    // Batches are taken from the run's budget as they start, so keys re-encrypted side by side
    // never commit more than maxBatchesPerRun together.
    const budget = new BatchBudget(maxBatchesPerRun);
    const concurrency = jobConcurrencyOf(this.storage);
    let cursor: string | undefined;
    do {
      const page = await listRetiring(cursor, batchSize);
      cursor = page.cursor;
      // The audit trail's earlier MAC keys stay retiring: they verify the records they sealed,
      // which no re-encryption rewrites, so they are never destroyed here.
      const records = page.records.filter((record) => record.tenantId !== AUDIT_KEYS_TENANT);
      await runSideBySide(records, concurrency, async (record) => {
        if (budget.exhausted) {
          run.complete = false;
          return false;
        }
        totals.retiringKeys++;
        // The operator who asked (rotateSession, in runAs), else the job itself.
        const actor = currentAuditContext()?.actor ?? rotationActor(record.tenantId);
        const result = await runAs(actor, () =>
          this.reencryption.reencryptKey(record, { batchSize, budget, lease }),
        );
        totals.reencrypted += result.reencrypted;
        totals.unreadable += result.unreadable;
        totals.batches += result.batches;
        if (result.outcome === 'destroyed') totals.destroyed++;
        if (result.outcome === 'held') totals.skippedForHold++;
        options.onProgress?.({ ...totals });
        // The batch limit ended this key part-way: the run is not complete, even if it was the
        // last, and no other key starts.
        if (result.outcome !== 'stopped') return true;
        run.complete = false;
        return false;
      });
    } while (run.complete && cursor !== undefined);
    const report: KeyRotationReport = {
      ...totals,
      complete: run.complete,
      elapsedMs: Date.now() - started,
    };
    logger.log(
      `Data key rotation: ${report.retiringKeys} retiring key(s), ${report.reencrypted} item(s) re-encrypted, ${report.destroyed} key(s) destroyed, ${report.unreadable} item(s) kept unreadable, ${report.skippedForHold} key(s) kept for legal hold, in ${report.batches} batch(es), ${report.elapsedMs} ms${run.complete ? '' : '; the next run goes on'}`,
    );
    return report;
  }
}
