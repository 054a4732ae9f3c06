import { Logger } from '@nestjs/common';
import type { AuditTrail } from '../audit/index.js';
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
  type JobLease,
  type SessionRef,
  type SessionStorage,
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

/** The counts of a held session's rows: every one kept. */
const heldCounts = (rows: readonly StoredItem[]): SessionPurgeCounts => ({
  purged: 0,
  shredded: 0,
  unverified: 0,
  skippedForHold: rows.length,
});

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
 * other altered row) fails to open and is kept, never deleted. The deletion and its
 * `retention.purge.batch` event commit in one unit of work, fenced by the job's lease. The jobs
 * layer's `RetentionService` drives it; the package root does not export it.
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
    // Holds are checked inside the deleting unit only: one check per batch, where it counts.
    const { purgeable, dekIds, shredded, unverified } = await this.sort(ref, rows, now);
    if (unverified > 0) {
      logger.warn(
        `Kept ${unverified} expired-looking item(s) of session '${ref.sessionId}' of tenant '${ref.tenantId}' whose sealed expiry could not be confirmed; verify the rows (IntegrityError)`,
      );
      await this.audit?.recordEvent('session.integrity_failure', ref, 'failure', {
        reason: 'INTEGRITY',
        count: unverified,
      });
    }
    if (purgeable.length === 0) return { purged: 0, shredded: 0, unverified, skippedForHold: 0 };

    const subjectId = (await this.storage.read(ref, (scope) => scope.session.find()))?.subjectId;
    const event = await this.audit?.prepare('retention.purge.batch', { ...ref, subjectId });
    let deleted: number | typeof HELD;
    try {
      deleted = await this.storage.transaction(ref, async (scope) => {
        if (!scope.fence) {
          throw new ConfigurationError(
            `The session storage '${this.storage.backend}' cannot fence a job's writes with its lease, so the retention purge cannot run on it safely`,
          );
        }
        await scope.fence(lease);
        // The session's write lock first (its activity time stays), then its row and the
        // holds: a hold placed meanwhile waited on this lock (or this unit re-runs), so it is
        // seen here.
        await scope.session.lockForWrite(LOCK_WITHOUT_ACTIVITY);
        const row = await scope.session.find();
        if (await isHeld(scope, row)) return HELD;
        const count = await scope.items.deleteBySeq(purgeable);
        if (count > 0) {
          await event?.appendIn(scope.audit, { count, keys: { dekIds: [...dekIds] } });
        }
        return count;
      });
    } catch (error) {
      // A lost lease is the new holder's run to record, not this one's.
      if (!(error instanceof LeaseLostError)) await event?.failed(error);
      throw error;
    }
    if (deleted === HELD) return heldCounts(rows);
    event?.committed();
    // Another writer (a pop, a clear) may have removed some first: count what went.
    const shreddedDeleted = Math.min(shredded, deleted);
    return {
      purged: deleted - shreddedDeleted,
      shredded: shreddedDeleted,
      unverified,
      skippedForHold: 0,
    };
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
    if (await this.isHeld(ref)) return heldCounts(rows);
    const { purgeable, shredded, unverified } = await this.sort(ref, rows, now);
    return { purged: purgeable.length - shredded, shredded, unverified, skippedForHold: 0 };
  }

  /** Whether a legal hold covers the session now (checked again inside the deleting unit). */
  private async isHeld(ref: SessionRef): Promise<boolean> {
    return this.storage.read(ref, isHeld);
  }

  /** The rows that may go (and their keys), and how many of them are shredded or unverified. */
  private async sort(ref: SessionRef, rows: readonly StoredItem[], now: number) {
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
