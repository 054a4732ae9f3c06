import { Logger } from '@nestjs/common';
import type { AuditTrail, PendingAuditEvent } from '../audit/index.js';
import {
  ConfigurationError,
  IntegrityError,
  KeyDestroyedError,
  LeaseLostError,
  StorageUnavailableError,
} from '../errors/index.js';
import type { KeyRing, UsableDataKey } from '../keys/index.js';
import {
  LOCK_WITHOUT_ACTIVITY,
  chargeBackgroundWork,
  compareIdBytes,
  type JobLease,
  type SessionRef,
  type SessionStorage,
  type SessionWriteScope,
  type StoredItem,
} from '../storage/index.js';
import { isHeld } from './held-sessions.js';
import { envelopeItemCipher, itemBinding } from './item-cipher.js';

// Session ids, counts and codes only: never item content.
const logger = new Logger('RetentionService');

/** A row's data key as the purge sees it: usable, destroyed (shredded) or not to be trusted. */
type ItemKey = UsableDataKey | 'destroyed' | 'unusable';

/** Whether the row's expiry column says it expired by `now` (its envelope must confirm it). */
const isPastExpiry = (row: StoredItem, now: number): row is StoredItem & { expiresAt: number } =>
  row.expiresAt !== null && row.expiresAt <= now;

/** Times a session's keys are loaded before the purge gives up on a cache too small. */
const MAX_KEY_LOADS = 3;

const hasRevokedKey = (keys: ReadonlyMap<string, ItemKey>): boolean =>
  [...keys.values()].some((key) => typeof key === 'object' && key.revoked);

/** What the deleting unit returns when a hold covers the session: it deleted nothing. */
const HELD = Symbol('held');

/** The counts of a held session's `rowCount` rows: every one kept. */
const heldCounts = (rowCount: number): SessionPurgeCounts => ({
  purged: 0,
  shredded: 0,
  unverified: 0,
  skippedForHold: rowCount,
});

/** One session's expired rows as their envelopes sorted them. */
interface SortedRows {
  /** Seqs of the rows that may go: expired or shredded. */
  readonly purgeable: readonly number[];
  /** The data keys of those rows (for the batch's event). */
  readonly dekIds: ReadonlySet<string>;
  readonly shredded: number;
  readonly unverified: number;
}

/**
 * One session's share of a page of the purge's scan, checked against the envelopes and ready
 * for {@link ExpiredItemPurge.commit}.
 */
export interface CheckedBatch extends SortedRows {
  readonly ref: SessionRef;
  /** The rows the scan found for the session. */
  readonly rowCount: number;
}

/** The counts of a checked batch whose unit deleted `deleted` rows (or found it held). */
function countsOf(batch: CheckedBatch, deleted: number | typeof HELD): SessionPurgeCounts {
  if (deleted === HELD) return heldCounts(batch.rowCount);
  // Another writer (a pop, a clear) may have removed some first: count what went.
  const shredded = Math.min(batch.shredded, deleted);
  return {
    purged: deleted - shredded,
    shredded,
    unverified: batch.unverified,
    skippedForHold: 0,
  };
}

/** The counts of a checked batch with nothing to purge: no unit runs for it. */
export const unpurgedCounts = (batch: CheckedBatch): SessionPurgeCounts => countsOf(batch, 0);

/** The scope's fence; ConfigurationError on a storage that cannot fence a job's writes. */
function fenceOf(scope: SessionWriteScope, backend: string): (lease: JobLease) => Promise<void> {
  if (!scope.fence) {
    throw new ConfigurationError(
      `The session storage '${backend}' cannot fence a job's writes with its lease, so the retention purge cannot run on it safely`,
    );
  }
  return scope.fence;
}

/**
 * Deletes the batch's rows inside its session's unit and seals its event there: HELD (nothing
 * deleted) when a hold covers the session.
 */
async function deleteIn(
  scope: SessionWriteScope,
  batch: CheckedBatch,
  event: PendingAuditEvent | undefined,
): Promise<number | typeof HELD> {
  // The session's write lock first (its activity time stays), then its row and the holds: a
  // hold placed meanwhile waited on this lock (or this unit re-runs), so it is seen here.
  await scope.session.lockForWrite(LOCK_WITHOUT_ACTIVITY);
  const row = await scope.session.find();
  // The subject as the row names it under the lock: no read of it before the unit.
  event?.setSubject(row?.subjectId);
  if (await isHeld(scope, row)) return HELD;
  const count = await scope.items.deleteBySeq(batch.purgeable);
  if (count > 0) {
    await event?.appendIn(scope.audit, { count, keys: { dekIds: [...batch.dekIds] } });
  }
  return count;
}

/**
 * What purging one session's expired items did.
 *
 * @publicApi
 */
export interface SessionPurgeCounts {
  /** Items deleted: their sealed expiry had passed. */
  readonly purged: number;
  /** Items deleted whose data key was already destroyed: unreadable for good, nothing lost. */
  readonly shredded: number;
  /**
   * Items kept because their sealed expiry could not be confirmed: the row does not open
   * (its expiry column or bytes were altered, or its key record is gone). Audited as an
   * integrity failure; never deleted.
   */
  readonly unverified: number;
  /** Items kept because a legal hold covers their session. */
  readonly skippedForHold: number;
}

/**
 * Deletes a session's expired items once their envelope confirms it: each one is opened with
 * its data key under the expiry its row claims, so an expiry column set back by hand (or any
 * other altered row) fails to open and is kept, never deleted. A session's deletion and its
 * `retention.purge.batch` event commit in one unit of work, fenced by the job's lease, with
 * those of other sessions of its tenant where the storage spans sessions. The jobs layer's
 * `RetentionService` drives it; the package root does not export it.
 */
export class ExpiredItemPurge {
  constructor(
    private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    private readonly audit: AuditTrail | undefined,
  ) {}

  /**
   * Purges `rows` (items of `ref` found expired at `now`), in one unit of work fenced by
   * `lease`. Run it as the job's actor (`runAs`).
   *
   * @throws LeaseLostError when the job no longer holds `lease`; nothing was deleted.
   * @throws KeyProviderUnavailableError when a data key cannot be unwrapped; nothing was deleted.
   */
  async purgeSession(
    ref: SessionRef,
    rows: readonly StoredItem[],
    now: number,
    lease: JobLease,
  ): Promise<SessionPurgeCounts> {
    const checked = await this.check(ref, rows, now);
    if (checked.purgeable.length === 0) return unpurgedCounts(checked);
    const [counts] = await this.commit(ref.tenantId, [checked], lease);
    return counts;
  }

  /**
   * Opens each of `rows` (items of `ref` found expired at `now`) to confirm its sealed expiry,
   * deleting nothing yet: what {@link commit} deletes. Items that do not open are logged and
   * audited as an integrity failure here, in a unit of their own. Run it as the job's actor.
   *
   * @throws KeyProviderUnavailableError when a data key cannot be unwrapped.
   */
  async check(ref: SessionRef, rows: readonly StoredItem[], now: number): Promise<CheckedBatch> {
    // Holds are checked inside the deleting unit only: one check per batch, where it counts.
    const sorted = await this.sort(ref, rows, now);
    if (sorted.unverified > 0) {
      logger.warn(
        `Kept ${sorted.unverified} expired-looking item(s) of session '${ref.sessionId}' of tenant '${ref.tenantId}' whose sealed expiry could not be confirmed; verify the rows (IntegrityError)`,
      );
      await this.audit?.recordEvent('session.integrity_failure', ref, 'failure', {
        reason: 'INTEGRITY',
        count: sorted.unverified,
      });
    }
    return { ref, rowCount: rows.length, ...sorted };
  }

  /**
   * Deletes the checked batches (sessions of `tenantId`, each with items to purge) and records
   * each one's `retention.purge.batch` event on its session's chain, fenced by `lease`: all in
   * one unit of work where the storage spans sessions (SQL, memory), else one unit per
   * session. A session a hold covers keeps its items (counted `skippedForHold`). Returns each
   * batch's counts, in the order given. Run it as the job's actor.
   *
   * @throws LeaseLostError when the job no longer holds `lease`; nothing of the unit was deleted.
   */
  async commit(
    tenantId: string,
    batches: readonly CheckedBatch[],
    lease: JobLease,
  ): Promise<SessionPurgeCounts[]> {
    const across = this.storage.transactionAcross?.bind(this.storage);
    if (batches.length > 1 && across) return this.commitAcross(across, tenantId, batches, lease);
    const counts: SessionPurgeCounts[] = [];
    for (const batch of batches) {
      const [event] = await this.prepareEvents([batch]);
      const deleted = await this.recordingFailure([batch], [event], () =>
        this.storage.transaction(batch.ref, async (scope) => {
          await fenceOf(scope, this.storage.backend)(lease);
          return deleteIn(scope, batch, event);
        }),
      );
      event?.committed();
      counts.push(countsOf(batch, deleted));
    }
    return counts;
  }

  /** The batches in one multi-session unit, their sessions locked in id-byte order. */
  private async commitAcross(
    across: NonNullable<SessionStorage['transactionAcross']>,
    tenantId: string,
    batches: readonly CheckedBatch[],
    lease: JobLease,
  ): Promise<SessionPurgeCounts[]> {
    // A stable lock order (as the erasure's), so two multi-session units cannot deadlock.
    const ordered = batches.toSorted((a, b) => compareIdBytes(a.ref.sessionId, b.ref.sessionId));
    const events = await this.prepareEvents(ordered);
    const deleted = await this.recordingFailure(ordered, events, () =>
      across(
        tenantId,
        ordered.map((batch) => batch.ref),
        async (unit) => {
          await fenceOf(unit.scopes[0], this.storage.backend)(lease);
          const results: Array<number | typeof HELD> = [];
          for (const [index, scope] of unit.scopes.entries()) {
            results.push(await deleteIn(scope, ordered[index], events[index]));
          }
          return results;
        },
      ),
    );
    for (const event of events) event?.committed();
    const countsByBatch = new Map(
      ordered.map((batch, index) => [batch, countsOf(batch, deleted[index])]),
    );
    return batches.map((batch) => countsByBatch.get(batch)!);
  }

  /**
   * Each batch's `retention.purge.batch` event, prepared before its unit (no await inside); its
   * subject is the one the unit reads from the session's row.
   */
  private async prepareEvents(
    batches: readonly CheckedBatch[],
  ): Promise<Array<PendingAuditEvent | undefined>> {
    const audit = this.audit;
    if (!audit) return batches.map(() => undefined);
    const events: PendingAuditEvent[] = [];
    for (const { ref } of batches) {
      events.push(await audit.prepare('retention.purge.batch', ref, { subjectFromUnit: true }));
    }
    return events;
  }

  /**
   * Runs the deleting unit; when it fails (not for a lost lease), records each batch's failure,
   * its subject read again (the unit's read rolled back with it).
   */
  private async recordingFailure<T>(
    batches: readonly CheckedBatch[],
    events: ReadonlyArray<PendingAuditEvent | undefined>,
    unit: () => Promise<T>,
  ): Promise<T> {
    try {
      return await unit();
    } catch (error) {
      // A lost lease is the new holder's run to record, not this one's.
      if (!(error instanceof LeaseLostError)) {
        for (const [index, event] of events.entries()) {
          if (!event) continue;
          event.setSubject(await this.subjectOf(batches[index].ref));
          await event.failed(error);
        }
      }
      throw error;
    }
  }

  /** The session's subject for a failure's event; none when the store cannot say now. */
  private async subjectOf(ref: SessionRef): Promise<string | null | undefined> {
    try {
      return (await this.storage.read(ref, (scope) => scope.session.find()))?.subjectId;
    } catch {
      // The store failing is likely why the unit failed: the event still goes on record.
      return undefined;
    }
  }

  /**
   * What purging `rows` would do, without deleting or recording anything (a dry run): the
   * same checks as {@link purgeSession}.
   */
  async dryRun(
    ref: SessionRef,
    rows: readonly StoredItem[],
    now: number,
  ): Promise<SessionPurgeCounts> {
    if (await this.isHeld(ref)) return heldCounts(rows.length);
    const sorted = await this.sort(ref, rows, now);
    return {
      purged: sorted.purgeable.length - sorted.shredded,
      shredded: sorted.shredded,
      unverified: sorted.unverified,
      skippedForHold: 0,
    };
  }

  /** Whether a legal hold covers the session now (checked again inside the deleting unit). */
  private async isHeld(ref: SessionRef): Promise<boolean> {
    return this.storage.read(ref, isHeld);
  }

  /** The rows that may go (and their keys), and how many of them are shredded or unverified. */
  private async sort(
    ref: SessionRef,
    rows: readonly StoredItem[],
    now: number,
  ): Promise<SortedRows> {
    let keys = await this.keysOf(ref, rows, now);
    // A key the ring evicted (zeroed) while the next one loaded would open nothing, and sound
    // items would be kept as unverified: load them again. Nothing awaits after this check.
    for (let loads = 1; hasRevokedKey(keys); loads++) {
      if (loads === MAX_KEY_LOADS) {
        throw new StorageUnavailableError(
          `Data keys of session '${ref.sessionId}' were evicted while the purge loaded them; raise the key cache size or run the purge again`,
        );
      }
      keys = await this.keysOf(ref, rows, now);
    }
    // Opening the rows is the job's work as much as its unit's: on a single connection the
    // pause after the unit covers it too.
    return chargeBackgroundWork(() => {
      const purgeable: number[] = [];
      const dekIds = new Set<string>();
      let shredded = 0;
      let unverified = 0;
      for (const row of rows) {
        const verdict = this.verdictOf(ref, row, now, keys);
        if (verdict === 'unverified') {
          unverified++;
          continue;
        }
        if (verdict === 'shredded') shredded++;
        purgeable.push(row.seq);
        dekIds.add(row.dekId);
      }
      return { purgeable, dekIds, shredded, unverified };
    });
  }

  /** The data key of each row past its claimed expiry: usable, destroyed or unusable. */
  private async keysOf(
    ref: SessionRef,
    rows: readonly StoredItem[],
    now: number,
  ): Promise<Map<string, ItemKey>> {
    const keys = new Map<string, ItemKey>();
    for (const row of rows) {
      if (!isPastExpiry(row, now) || keys.has(row.dekId)) continue;
      let key: ItemKey;
      try {
        key = await this.keyRing.keyForRead(ref, row.dekId);
      } catch (error) {
        if (error instanceof KeyDestroyedError) key = 'destroyed';
        else if (error instanceof IntegrityError) key = 'unusable';
        else throw error;
      }
      keys.set(row.dekId, key);
    }
    return keys;
  }

  /** Whether `row` may go: its sealed expiry passed, its key is gone, or neither is certain. */
  private verdictOf(
    ref: SessionRef,
    row: StoredItem,
    now: number,
    keys: ReadonlyMap<string, ItemKey>,
  ): 'expired' | 'shredded' | 'unverified' {
    const key = isPastExpiry(row, now) ? keys.get(row.dekId) : undefined;
    if (key === undefined || key === 'unusable') return 'unverified';
    if (key === 'destroyed') return 'shredded';
    try {
      // The expiry is in the AAD: the row opens only under the expiry it was sealed with.
      envelopeItemCipher
        .open(key, itemBinding(ref, row.seq, row.expiresAt), row.ciphertext)
        .fill(0);
      return 'expired';
    } catch (error) {
      if (error instanceof IntegrityError) return 'unverified';
      throw error;
    }
  }
}
