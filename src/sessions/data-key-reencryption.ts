import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import type { AuditTrail } from '../audit/index.js';
import { backoffDelay, type BackoffPolicy } from '../errors/backoff.js';
import {
  ConfigurationError,
  IntegrityError,
  KeyDestroyedError,
  LeaseLostError,
  StorageUnavailableError,
} from '../errors/index.js';
import type { KeyRing } from '../keys/index.js';
import {
  LOCK_WITHOUT_ACTIVITY,
  type DataKeyRecord,
  type JobLease,
  type ResealedItem,
  type SessionStorage,
  type SessionWriteScope,
} from '../storage/index.js';
import type { BatchBudget } from './batch-budget.js';
import { isHeld } from './held-sessions.js';
import { envelopeItemCipher, itemBinding } from './item-cipher.js';

// Session and key ids, counts and codes only: never item content or key material.
const logger = new Logger('KeyRotation');

/**
 * What re-encrypting one retiring data key did.
 *
 * @publicApi
 */
export interface RetiringKeyOutcome {
  /**
   * `destroyed`: no item is sealed under the key any more and it was destroyed (wrapped bytes
   * wiped, its record kept as a tombstone); `kept`: items that do not open are still under it
   * (never deleted); `stopped`: the run reached its batch limit with items left under the key
   * (the next run goes on); `held`: a legal hold covers the
   * session, so nothing of it was changed; `gone`: the key was destroyed or the session erased
   * meanwhile.
   */
  readonly outcome: 'destroyed' | 'kept' | 'stopped' | 'held' | 'gone';
  /** Items sealed again under the session's active key. */
  readonly reencrypted: number;
  /** Items left under the key because they did not open (audited as an integrity failure). */
  readonly unreadable: number;
  /** Units of work that re-encrypted items (one audit event each). */
  readonly batches: number;
}

/**
 * How a batch starts over after a key change got in between (another process's new generation,
 * say): at most 5 tries in a row before the run gives up, spread out with jitter so that the
 * next try does not meet the same writer again.
 */
const BATCH_RESTARTS: BackoffPolicy = { firstDelayMs: 5, growth: 2, maxAttempts: 5 };

/** What a unit of work returns when a hold covers the session: it changed nothing. */
const HELD = Symbol('held');

/**
 * Re-encrypts the items of a `retiring` data key into the session's active key, a batch per
 * unit of work, then destroys the key once no item references it (checked in the unit that
 * destroys it). Each item is opened with the old key under the binding its row claims and
 * sealed again under the active key with the same binding; the row is replaced only while it
 * is still sealed under the old key (a pop or history rewrite that got there first wins). An
 * item that does not open stays as it is, and so does its key. A session under legal hold is
 * left byte for byte as it is. Readers and writers go on meanwhile: every item opens under the
 * key its row names at each instant. The jobs layer's `KeyRotationService` drives it.
 */
export class DataKeyReEncryption {
  constructor(
    private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    private readonly audit: AuditTrail | undefined,
  ) {}

  /**
   * Re-encrypts every item sealed under the retiring key `record`, in units of at most
   * `batchSize` items each fenced by `lease()`, each taken from the run's `budget` (shared with
   * the keys re-encrypted beside it). Run it as the job's
   * actor (`runAs`).
   *
   * @throws LeaseLostError when the job no longer holds its lease; what committed stays.
   * @throws KeyProviderUnavailableError when a data key cannot be unwrapped; nothing of the
   *   current batch was changed.
   */
  async reencryptKey(
    record: DataKeyRecord,
    options: {
      readonly batchSize: number;
      readonly budget: BatchBudget;
      readonly lease: () => JobLease;
    },
  ): Promise<RetiringKeyOutcome> {
    const ref = { tenantId: record.tenantId, sessionId: record.sessionId };
    const totals = { reencrypted: 0, unreadable: 0, batches: 0 };
    const outcome = (kind: RetiringKeyOutcome['outcome']): RetiringKeyOutcome => ({
      outcome: kind,
      ...totals,
    });
    /** Where the scan goes on: items that did not open stay behind it, under the old key. */
    let afterSeq = 0;
    let restarts = 0;
    for (;;) {
      if (!options.budget.take()) return outcome('stopped');
      let unit: BatchResult | typeof HELD | undefined;
      try {
        unit = await this.batch(record, afterSeq, options.batchSize, options.lease);
      } catch (error) {
        options.budget.giveBack();
        if (error instanceof KeyDestroyedError) return outcome('gone');
        if (!(error instanceof RekeyLater)) throw error;
        // A rotation, clear or cache eviction got in between: start the batch again, a
        // bounded number of times in a row (the next run goes on from the data).
        const delay = backoffDelay(BATCH_RESTARTS, ++restarts, 0);
        if (delay === undefined) {
          throw new StorageUnavailableError(
            `Re-encrypting data key ${record.dekId} of session '${ref.sessionId}' kept losing races with key changes; the next run goes on`,
          );
        }
        this.keyRing.forgetActiveKey(ref);
        await sleep(delay);
        continue;
      }
      restarts = 0;
      const committed = unit !== HELD && unit !== undefined && (unit.sealed > 0 || unit.destroyed);
      // A unit that committed nothing gives its batch back to the run.
      if (committed) totals.batches++;
      else options.budget.giveBack();
      if (unit === HELD) return outcome('held');
      if (unit === undefined) return outcome('gone');
      totals.reencrypted += unit.sealed;
      if (unit.unreadable > 0) {
        totals.unreadable += unit.unreadable;
        afterSeq = unit.lastSeq;
        logger.warn(
          `Kept ${unit.unreadable} item(s) of session '${ref.sessionId}' of tenant '${ref.tenantId}' under retiring data key ${record.dekId}: they do not open (IntegrityError); verify the rows`,
        );
        await this.audit?.recordEvent('session.integrity_failure', ref, 'failure', {
          reason: 'INTEGRITY',
          count: unit.unreadable,
        });
      }
      if (unit.destroyed) {
        this.keyRing.forgetKey(record.dekId);
        return outcome('destroyed');
      }
      // Nothing left past the scan: only items that do not open (kept), or none at all and the
      // key destroyed by another run meanwhile.
      if (unit.listed === 0) return outcome(afterSeq > 0 ? 'kept' : 'gone');
      // Items listed but none replaced nor unreadable: the rows changed under the unit in a way
      // this run cannot follow. Stop rather than list them again; the next run goes on.
      if (unit.sealed === 0 && unit.unreadable === 0) return outcome('kept');
    }
  }

  /** One unit of work: up to `limit` items after `afterSeq` moved to the active key. */
  private async batch(
    record: DataKeyRecord,
    afterSeq: number,
    limit: number,
    lease: () => JobLease,
  ): Promise<BatchResult | typeof HELD | undefined> {
    const ref = { tenantId: record.tenantId, sessionId: record.sessionId };
    const oldKey = await this.keyRing.keyForRead(ref, record.dekId);
    const newKey = await this.keyRing.keyForWrite(ref, record.subjectId);
    const event = await this.audit?.prepare('key.reencrypt.batch', {
      ...ref,
      subjectId: record.subjectId,
    });
    let result: BatchResult | typeof HELD | undefined;
    try {
      result = await this.storage.transaction(ref, async (scope) => {
        const { listSealedUnder, reseal, destroyByIds } = await this.fenced(scope, lease());
        const current = await scope.dataKeys.findById(record.dekId);
        if (current?.state !== 'retiring') return undefined;
        // Its activity time stays: re-encryption is not use of the session.
        await scope.session.lockForWrite(LOCK_WITHOUT_ACTIVITY);
        const row = await scope.session.find();
        if (await isHeld(scope, row)) return HELD;
        // Items are sealed with the session's active key at this instant. A writer may have
        // started a newer generation since keyForWrite: its key is usually in the ring already
        // (this process made it), else the batch starts again with fresh keys.
        const active = await scope.dataKeys.findActive();
        const sealKey =
          active?.dekId === newKey.dekId
            ? newKey
            : active && this.keyRing.cachedKey(ref, active.dekId);
        if (sealKey === undefined) throw new RekeyLater();
        const rows = await listSealedUnder(record.dekId, afterSeq, limit);
        // Checked after the last await before the keys are used: a cached key the ring evicted
        // meanwhile is zeroed (revoked), and sealing with it would store items nothing opens.
        // From here to the reseal nothing awaits.
        if (sealKey.revoked || oldKey.revoked) throw new RekeyLater();
        const resealed: ResealedItem[] = [];
        let unreadable = 0;
        for (const item of rows) {
          const binding = itemBinding(ref, item.seq, item.expiresAt);
          let plaintext: Buffer;
          try {
            plaintext = envelopeItemCipher.open(oldKey, binding, item.ciphertext);
          } catch (error) {
            if (!(error instanceof IntegrityError)) throw error;
            unreadable++;
            continue;
          }
          try {
            const ciphertext = envelopeItemCipher.seal(sealKey, binding, plaintext);
            resealed.push({ seq: item.seq, dekId: sealKey.dekId, ciphertext });
          } finally {
            plaintext.fill(0);
          }
        }
        const sealed = resealed.length > 0 ? await reseal(record.dekId, resealed) : 0;
        // Destroyed only when nothing references it, checked in this same unit.
        const destroyed =
          afterSeq === 0 &&
          unreadable === 0 &&
          rows.length < limit &&
          (await listSealedUnder(record.dekId, 0, 1)).length === 0 &&
          (await destroyByIds([record.dekId], Date.now())) > 0;
        if (sealed > 0 || destroyed) {
          await event?.appendIn(
            scope.audit,
            {
              count: sealed,
              keys: { dekIds: [record.dekId, sealKey.dekId], kekIds: [record.kekId] },
            },
            destroyed ? [{ action: 'key.destroy', keys: { dekIds: [record.dekId] } }] : [],
          );
        }
        return {
          listed: rows.length,
          sealed,
          unreadable,
          lastSeq: rows.at(-1)?.seq ?? afterSeq,
          destroyed,
        };
      });
    } catch (error) {
      // A lost lease is the new holder's run to record; a restarted batch recorded nothing.
      if (!(error instanceof LeaseLostError) && !(error instanceof RekeyLater)) {
        await event?.failed(error);
      }
      throw error;
    }
    if (result !== HELD && result !== undefined && (result.sealed > 0 || result.destroyed)) {
      event?.committed();
    }
    return result;
  }

  /** Fences the unit with the job's lease; the storage's re-encryption methods. */
  private async fenced(scope: SessionWriteScope, lease: JobLease) {
    const { items, dataKeys } = scope;
    if (!scope.fence || !items.listSealedUnder || !items.reseal || !dataKeys.destroyByIds) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' cannot re-encrypt items under a job's lease, so data key rotation cannot run on it`,
      );
    }
    await scope.fence(lease);
    return {
      listSealedUnder: (dekId: string, afterSeq: number, limit: number) =>
        items.listSealedUnder!(dekId, afterSeq, limit),
      reseal: (fromDekId: string, resealed: readonly ResealedItem[]) =>
        items.reseal!(fromDekId, resealed),
      destroyByIds: (dekIds: readonly string[], now: number) => dataKeys.destroyByIds!(dekIds, now),
    };
  }
}

/** What one unit of work did. */
interface BatchResult {
  /** Items under the key it found after the scan's position. */
  readonly listed: number;
  readonly sealed: number;
  readonly unreadable: number;
  readonly lastSeq: number;
  readonly destroyed: boolean;
}

/** Thrown inside a unit to roll it back and start the batch again with fresh keys. */
class RekeyLater extends Error {}
