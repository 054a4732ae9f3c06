import type { AgentInputItem } from '@openai/agents-core';
import { Logger } from '@nestjs/common';
import {
  EncryptedSessionError,
  HistoryConflictError,
  IntegrityError,
  InvalidArgumentError,
  SessionNotFoundError,
  StorageUnavailableError,
} from '../errors/index.js';
import type { PendingAuditEvent } from '../audit/index.js';
import type { UsableDataKey } from '../keys/index.js';
import type { SessionRef, SessionWriteScope, StoredItem } from '../storage/index.js';
import {
  canonicalItemJson,
  canonicalPayload,
  digestHistoryTransaction,
  digestsEqual,
  type HistoryTransactionSnapshot,
} from './history-transaction.js';
import { itemBinding } from './item-cipher.js';
import { auditedOperation } from './session-audit.js';
import type { SessionReader, SessionReaderContext } from './session-reader.js';
import {
  checkOperationRecord,
  counterBehindItems,
  sessionRowMissing,
  STORED_AT_ALL,
} from './stored-row-checks.js';

/** What the writer of one session works with, beyond what its reader has. */
export interface SessionWriterContext extends SessionReaderContext {
  /** Items appended expire this many seconds after writing; null = never. */
  readonly itemTtlSeconds: number | null;
}

/**
 * Signals, thrown inside a storage transaction to roll it back, that the write must be redone
 * outside it (storage calls are not re-entrant, so keys cannot be fetched inside).
 */
class RetryOutsideTransaction extends Error {
  constructor(
    readonly reason:
      'stale-key' | 'key-rotated' | 'key-exhausted' | 'operation-exists' | 'suffix-keys',
    readonly nextSeq = 0,
  ) {
    super(reason);
  }
}

/** How often a write re-runs after losing a race (a rotated, cleared or evicted key). */
const MAX_WRITE_ATTEMPTS = 5;

/** How many new generations one write may wait through while other writers fill them. */
const MAX_ROTATIONS_PER_WRITE = 100;

// Log lines carry ids, counts and error codes only: never item content or key material.
const logger = new Logger('EncryptedSession');

/**
 * Every write to one session goes through here: appends, pops, clears and history
 * transactions, each checked against the session's keys and retried outside the storage
 * transaction when it lost a race. Keep it the only place that changes a session's rows, so
 * that a later audit trail of writes is added here, in one place.
 *
 * Payloads come in validated and encoded: nothing is stored before the caller's checks pass.
 */
export class SessionWriter {
  private readonly ref: SessionRef;

  constructor(
    private readonly context: SessionWriterContext,
    private readonly reader: SessionReader,
  ) {
    this.ref = context.ref;
  }

  /** Appends encoded items in one transaction with one batched insert. */
  async addItems(payloads: readonly Buffer[]): Promise<void> {
    if (payloads.length === 0) return;
    this.refuseBatchOverKeyLimit(payloads.length, 'addItems');
    await auditedOperation(this.context, 'session.append', (event) =>
      this.withWriteKey((dataKey) =>
        this.context.storage.transaction(this.ref, async (scope) => {
          await this.appendSealed(scope, dataKey, payloads);
          await event?.appendIn(scope.audit, {
            count: payloads.length,
            keys: { dekIds: [dataKey.dekId] },
          });
        }),
      ),
    );
    logger.verbose(
      `Appended ${payloads.length} item(s) to session '${this.ref.sessionId}' of tenant '${this.ref.tenantId}'`,
    );
  }

  /** Removes and returns the newest visible item; one that cannot be opened stays. */
  async popItem(): Promise<AgentInputItem | undefined> {
    return auditedOperation(this.context, 'session.pop', async (event) => {
      for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
        const now = this.context.now();
        const [newest] = await this.reader.readNewestRows(now, 1);
        if (!newest) {
          // Nothing to pop: nothing changed, yet the attempt is on record.
          if (event) await this.context.audit!.recordRead(event, 0);
          return undefined;
        }
        // Open first: a failure throws here, before anything is deleted.
        const [item] = await this.reader.openRows([newest], now);
        const deleted = await this.context.storage.transaction(this.ref, async (scope) => {
          const count = await scope.items.deleteBySeq([newest.seq]);
          if (count === 1) {
            await event?.appendIn(scope.audit, { count, keys: { dekIds: [newest.dekId] } });
          }
          return count;
        });
        if (deleted === 1) {
          logger.verbose(
            `Popped item ${newest.seq} of session '${this.ref.sessionId}' of tenant '${this.ref.tenantId}'`,
          );
          return item;
        }
        // Another writer popped or cleared it first; look again.
      }
      throw new StorageUnavailableError(
        `popItem on session '${this.ref.sessionId}' kept losing races with other writers; retry the call`,
      );
    });
  }

  /** Deletes every item and applied-operation record and destroys the session's data keys. */
  async clearSession(): Promise<void> {
    await auditedOperation(this.context, 'session.clear', (event) =>
      this.context.storage.transaction(this.ref, async (scope) => {
        // Waits for an append of another process to commit, so none lands under a destroyed key.
        await scope.session.lockForWrite(this.context.now());
        const count = await scope.items.deleteAll();
        await scope.historyOperations.deleteAll();
        const destroyed = await scope.dataKeys.destroyAll(this.context.now());
        await event?.appendIn(
          scope.audit,
          { count },
          destroyed > 0 ? [{ action: 'key.destroy', count: destroyed }] : [],
        );
      }),
    );
    this.context.keyRing.forgetSession(this.ref);
    logger.debug(
      `Cleared session '${this.ref.sessionId}' of tenant '${this.ref.tenantId}' and destroyed its data keys`,
    );
  }

  /** Applies a validated history transaction atomically and at most once per operation id. */
  async applyHistoryTransaction(
    operationId: string,
    transaction: HistoryTransactionSnapshot,
  ): Promise<void> {
    await auditedOperation(this.context, 'session.history_transaction', (event) =>
      this.applyHistoryTransactionAs(event, operationId, transaction),
    );
  }

  private async applyHistoryTransactionAs(
    event: PendingAuditEvent | undefined,
    operationId: string,
    transaction: HistoryTransactionSnapshot,
  ): Promise<void> {
    this.refuseBatchOverKeyLimit(
      transaction.type === 'replace_suffix'
        ? transaction.replacement.length
        : transaction.items.length,
      'applyHistoryTransaction',
    );
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const existing = checkOperationRecord(
        this.ref,
        await this.context.storage.read(this.ref, (scope) =>
          scope.historyOperations.find(operationId),
        ),
      );
      if (existing) {
        const recordedWith = await this.context.keyRing.keyForRead(this.ref, existing.dekId);
        if (digestsEqual(existing.digest, digestHistoryTransaction(recordedWith.key, transaction)))
          return;
        throw new HistoryConflictError(
          'Session history operation was already applied with a different transaction; use a new operationId',
        );
      }
      // Keys of the suffix being replaced are loaded here, outside the transaction.
      const suffixKeys =
        transaction.type === 'replace_suffix'
          ? await this.reader.keysForNewest(transaction.expectedSuffix.length)
          : new Map<string, UsableDataKey>();
      try {
        await this.withWriteKey((dataKey) =>
          this.context.storage.transaction(this.ref, async (scope) => {
            if (checkOperationRecord(this.ref, await scope.historyOperations.find(operationId))) {
              throw new RetryOutsideTransaction('operation-exists');
            }
            if (transaction.type === 'replace_suffix') {
              // The session row first, as every writer of the session takes it: deleting the
              // suffix's rows before it deadlocked with a unit that holds the row and rewrites
              // those items (key rotation).
              await scope.session.lockForWrite(this.context.now());
              await this.removeExpectedSuffix(scope, transaction, suffixKeys);
              await this.appendSealed(scope, dataKey, transaction.replacement);
            } else {
              await this.appendSealed(scope, dataKey, transaction.items);
            }
            const recorded = await scope.historyOperations.insertIfAbsent({
              operationId,
              dekId: dataKey.dekId,
              digest: digestHistoryTransaction(dataKey.key, transaction),
              createdAt: this.context.now(),
            });
            if (!recorded) throw new RetryOutsideTransaction('operation-exists');
            await event?.appendIn(scope.audit, {
              count:
                transaction.type === 'replace_suffix'
                  ? transaction.replacement.length
                  : transaction.items.length,
              keys: { dekIds: [dataKey.dekId] },
            });
          }),
        );
        return;
      } catch (error) {
        if (error instanceof RetryOutsideTransaction) continue;
        throw error;
      }
    }
    throw new StorageUnavailableError(
      `applyHistoryTransaction on session '${this.ref.sessionId}' kept losing races with other writers; retry with the same operationId`,
    );
  }

  /**
   * Runs a write with the session's current data key, redoing it when the key turned out to be
   * stale (rotated, cleared, evicted) or used up (a new generation is started first).
   */
  private async withWriteKey<T>(write: (dataKey: UsableDataKey) => Promise<T>): Promise<T> {
    const { keyRing, subjectId } = this.context;
    let staleKeyRetries = 0;
    let rotations = 0;
    for (;;) {
      const dataKey = await keyRing.keyForWrite(this.ref, subjectId);
      try {
        return await write(dataKey);
      } catch (error) {
        if (!(error instanceof RetryOutsideTransaction))
          throw await this.explainWriteFailure(error);
        if (error.reason === 'stale-key') {
          if (++staleKeyRetries >= MAX_WRITE_ATTEMPTS) throw this.lostKeyRaces();
          keyRing.forgetActiveKey(this.ref);
        } else if (error.reason === 'key-rotated') {
          // Another writer filled our key and started the next generation: progress, so it
          // shares the rotation budget rather than the one for lost keys.
          if (++rotations >= MAX_ROTATIONS_PER_WRITE) throw this.lostKeyRaces();
          keyRing.forgetActiveKey(this.ref);
        } else if (error.reason === 'key-exhausted') {
          // Each exhausted key means some writer made progress, so this has its own budget.
          if (++rotations >= MAX_ROTATIONS_PER_WRITE) throw this.lostKeyRaces();
          await keyRing.rotate(this.ref, subjectId, error.nextSeq);
        } else {
          throw error;
        }
      }
    }
  }

  /**
   * A write that failed with an untyped error (a driver's duplicate key) may have hit items at
   * positions the session's counter had not reached yet: a counter rolled back in the database.
   * That is damage, not a passing failure: IntegrityError, so no caller retries it forever.
   */
  private async explainWriteFailure(error: unknown): Promise<unknown> {
    if (error instanceof EncryptedSessionError) return error;
    try {
      const behind = await this.context.storage.read(this.ref, async (scope) => {
        const session = await scope.session.find();
        const [newest] = await this.reader.newestRows(scope, STORED_AT_ALL, 1);
        return session !== undefined && newest !== undefined && newest.seq >= session.nextSeq;
      });
      if (behind) return counterBehindItems(this.ref);
    } catch (diagnosis) {
      // Damage found while looking is the better answer; anything else, the original error.
      if (diagnosis instanceof IntegrityError) return diagnosis;
    }
    return error;
  }

  /**
   * One batch is sealed under one data key, so it can hold at most `maxItemsPerDataKey` items;
   * a larger one could never be written (each new key would be too small again).
   */
  private refuseBatchOverKeyLimit(count: number, call: string): void {
    const limit = this.context.keyRing.maxItemsPerDataKey;
    if (count > limit) {
      throw new InvalidArgumentError(
        `${call} got ${count} items, more than one data key seals (maxItemsPerDataKey ${limit}); nothing was stored: split them over several calls`,
      );
    }
  }

  private lostKeyRaces(): StorageUnavailableError {
    return new StorageUnavailableError(
      `Writing to session '${this.ref.sessionId}' kept losing races with key changes; retry the call`,
    );
  }

  /** Reserves positions, seals each payload for its position and inserts them in one batch. */
  private async appendSealed(
    scope: SessionWriteScope,
    dataKey: UsableDataKey,
    payloads: readonly Buffer[],
  ): Promise<void> {
    const now = this.context.now();
    const first =
      payloads.length > 0 ? await scope.session.reserveSequence(payloads.length, now) : 0;
    if (first === undefined) {
      // Items without their session row: the row was deleted behind the module's back.
      if ((await this.reader.newestRows(scope, STORED_AT_ALL, 1)).length > 0) {
        throw sessionRowMissing(this.ref);
      }
      throw new SessionNotFoundError(
        `Session '${this.ref.sessionId}' no longer exists (erased?); open it again to start a new one`,
      );
    }
    // The key must still be the session's active one: a concurrent clear or rotation would
    // otherwise leave items sealed under a destroyed key.
    const active = await scope.dataKeys.findActive();
    if (active?.dekId !== dataKey.dekId || dataKey.revoked) {
      throw new RetryOutsideTransaction(
        active && active.generation > dataKey.generation && !dataKey.revoked
          ? 'key-rotated'
          : 'stale-key',
      );
    }
    if (payloads.length === 0) return;
    if (
      first + payloads.length - dataKey.firstSeq > this.context.keyRing.maxItemsPerDataKey ||
      this.context.keyRing.rotationDue(active, first, now)
    ) {
      // Used up, or due by the rotation policy: the next generation seals this write.
      throw new RetryOutsideTransaction('key-exhausted', first);
    }
    const ttl = this.context.itemTtlSeconds;
    const expiresAt = ttl === null ? null : now + ttl * 1000;
    const rows: StoredItem[] = payloads.map((payload, index) => {
      const seq = first + index;
      const binding = itemBinding(this.ref, seq, expiresAt);
      return {
        seq,
        dekId: dataKey.dekId,
        expiresAt,
        createdAt: now,
        ciphertext: this.context.cipher.seal(dataKey, binding, payload),
      };
    });
    await scope.items.insertMany(rows);
  }

  /** Checks the newest items against the expected suffix and deletes them; conflict otherwise. */
  private async removeExpectedSuffix(
    scope: SessionWriteScope,
    transaction: Extract<HistoryTransactionSnapshot, { type: 'replace_suffix' }>,
    keys: Map<string, UsableDataKey>,
  ): Promise<void> {
    const expected = transaction.expectedSuffix;
    if (expected.length === 0) return;
    const now = this.context.now();
    const rows = await this.reader.newestRows(scope, now, expected.length);
    if (rows.length < expected.length) {
      throw new HistoryConflictError(
        'Session history suffix no longer matches the transaction precondition',
      );
    }
    if (rows.some((row) => !keys.get(row.dekId) || keys.get(row.dekId)!.revoked)) {
      throw new RetryOutsideTransaction('suffix-keys');
    }
    const actual = this.reader.openRowsWith(rows, keys, now);
    if (
      actual.some((item, index) => canonicalItemJson(item) !== canonicalPayload(expected[index]))
    ) {
      throw new HistoryConflictError(
        'Session history suffix no longer matches the transaction precondition',
      );
    }
    await scope.items.deleteBySeq(rows.map((row) => row.seq));
  }
}
