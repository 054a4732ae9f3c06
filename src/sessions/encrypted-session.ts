import type {
  AgentInputItem,
  SessionHistoryTransactionArgs,
  SessionHistoryTransactionAwareSession,
} from '@openai/agents-core';
import { Logger } from '@nestjs/common';
import { decodeItemPayload, type ItemBinding } from '../crypto/index.js';
import {
  EncryptedSessionError,
  HistoryConflictError,
  IntegrityError,
  InvalidArgumentError,
  SessionNotFoundError,
  StorageUnavailableError,
} from '../errors/index.js';
import type { KeyRing, UsableDataKey } from '../keys/index.js';
import type {
  SessionReadScope,
  SessionRef,
  SessionStorage,
  SessionWriteScope,
  StoredItem,
} from '../storage/index.js';
import {
  canonicalItemJson,
  canonicalPayload,
  digestHistoryTransaction,
  digestsEqual,
  encodeSessionItems,
  snapshotHistoryTransaction,
  type HistoryTransactionSnapshot,
} from './history-transaction.js';
import { envelopeItemCipher, type ItemCipher } from './item-cipher.js';
import {
  checkOperationRecord,
  checkStoredItems,
  counterBehindItems,
  sessionRowMissing,
  STORED_AT_ALL,
} from './stored-row-checks.js';

/** What an {@link EncryptedSession} is built from; `EncryptedSessionService.open` fills it in. */
export interface EncryptedSessionContext {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly subjectId: string | null;
  /** Items appended through this handle expire this many seconds after writing; null = never. */
  readonly itemTtlSeconds: number | null;
  readonly storage: SessionStorage;
  readonly keyRing: KeyRing;
  /** @default the AES-256-GCM envelope. Only the benchmark passes another. */
  readonly cipher?: ItemCipher;
  /** Largest encoded size of one item in bytes; larger ones are refused. @default 4 MiB */
  readonly maxItemBytes?: number;
  /** Epoch ms now. @default Date.now */
  readonly clock?: () => number;
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

/** Rows per query when reading a whole history. */
const FULL_READ_PAGE_SIZE = 1000;

// Log lines carry ids, counts and error codes only: never item content or key material.
const logger = new Logger('EncryptedSession');

/**
 * An `@openai/agents` `Session` whose items are encrypted at rest: each item is sealed with
 * AES-256-GCM under the session's data key and bound to its tenant, session, position and
 * expiry. Pass it wherever a Session is accepted: `run(agent, input, { session })`.
 *
 * Reads fail closed and never delete: an item that does not authenticate raises
 * `IntegrityError`, a destroyed key `KeyDestroyedError`, an unreachable provider
 * `KeyProviderUnavailableError`. Expired items are invisible at once.
 */
export class EncryptedSession implements SessionHistoryTransactionAwareSession {
  private readonly ref: SessionRef;
  private readonly cipher: ItemCipher;
  private readonly now: () => number;

  constructor(private readonly context: EncryptedSessionContext) {
    this.ref = { tenantId: context.tenantId, sessionId: context.sessionId };
    this.cipher = context.cipher ?? envelopeItemCipher;
    this.now = context.clock ?? Date.now;
  }

  /** The session id given to `open`. */
  async getSessionId(): Promise<string> {
    return this.ref.sessionId;
  }

  /** The tenant the session belongs to. */
  get tenantId(): string {
    return this.ref.tenantId;
  }

  /**
   * The newest `limit` visible items in chronological order.
   *
   * @param limit `undefined` returns every visible item; `0` returns none; a positive integer
   *   returns at most that many (the newest). Anything else throws `InvalidArgumentError`.
   *   Cost depends on `limit`, not on how much older history has expired.
   */
  async getItems(limit?: number): Promise<AgentInputItem[]> {
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new InvalidArgumentError(
        `getItems(limit) takes a non-negative integer or nothing (all items); got ${String(limit)}`,
      );
    }
    if (limit === 0) return [];
    const now = this.now();
    const items =
      limit === undefined
        ? await this.readAllPaged(now)
        : await this.openRows(
            await this.context.storage.read(this.ref, (scope) =>
              this.newestRows(scope, now, limit),
            ),
            now,
          );
    logger.verbose(`Read ${items.length} item(s) of session '${this.ref.sessionId}'`);
    return items;
  }

  /**
   * Every visible item, read in pages up to the newest visible item when the call started:
   * items appended meanwhile are not included (positions are never reused), and no more than
   * one page of ciphertext is held at a time. Bounded by the items themselves, not the
   * session's counter, so a full read returns what `getItems(n)` returns even when the counter
   * or the session row was altered.
   */
  private async readAllPaged(now: number): Promise<AgentInputItem[]> {
    // The session row is read as well, though the bound comes from the items (a counter set
    // back below them must not hide them): its damaged values fail this read as they fail a
    // write, instead of going unnoticed.
    const newest = await this.context.storage.read(this.ref, async (scope) => {
      await scope.session.find();
      return (await this.newestRows(scope, now, 1))[0];
    });
    if (!newest) return [];
    const throughSeq = newest.seq;
    const items: AgentInputItem[] = [];
    let afterSeq = 0;
    for (;;) {
      const page = checkStoredItems(
        this.ref,
        await this.context.storage.read(this.ref, (scope) =>
          scope.items.listVisiblePage(now, afterSeq, throughSeq, FULL_READ_PAGE_SIZE),
        ),
        { limit: FULL_READ_PAGE_SIZE, afterSeq, throughSeq },
      );
      if (page.length === 0) return items;
      afterSeq = page.at(-1)!.seq;
      for (const item of await this.openRows(page, now)) items.push(item);
      if (page.length < FULL_READ_PAGE_SIZE) return items;
    }
  }

  /**
   * Appends items in one transaction with one batched insert. Nothing is stored if any item
   * could not be returned exactly as given or is over `maxItemBytes` (`InvalidArgumentError`).
   */
  async addItems(items: AgentInputItem[]): Promise<void> {
    const payloads = encodeSessionItems(items, 'addItems', this.context.maxItemBytes);
    if (payloads.length === 0) return;
    this.refuseBatchOverKeyLimit(payloads.length, 'addItems');
    await this.withWriteKey((dataKey) =>
      this.context.storage.transaction(this.ref, async (scope) => {
        await this.appendSealed(scope, dataKey, payloads);
      }),
    );
    logger.verbose(`Appended ${payloads.length} item(s) to session '${this.ref.sessionId}'`);
  }

  /**
   * Removes and returns the newest visible item, or undefined when there is none. An item
   * that cannot be opened is neither returned nor deleted: the error is thrown.
   */
  async popItem(): Promise<AgentInputItem | undefined> {
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const now = this.now();
      const [newest] = await this.context.storage.read(this.ref, (scope) =>
        this.newestRows(scope, now, 1),
      );
      if (!newest) return undefined;
      // Open first: a failure throws here, before anything is deleted.
      const [item] = await this.openRows([newest], now);
      const deleted = await this.context.storage.transaction(this.ref, (scope) =>
        scope.items.deleteBySeq([newest.seq]),
      );
      if (deleted === 1) {
        logger.verbose(`Popped item ${newest.seq} of session '${this.ref.sessionId}'`);
        return item;
      }
      // Another writer popped or cleared it first; look again.
    }
    throw new StorageUnavailableError(
      `popItem on session '${this.ref.sessionId}' kept losing races with other writers; retry the call`,
    );
  }

  /**
   * Deletes every item and applied-operation record of the session and destroys its data keys,
   * so no copy of an old ciphertext can ever be opened again. The next write starts a new key.
   */
  async clearSession(): Promise<void> {
    await this.context.storage.transaction(this.ref, async (scope) => {
      // Waits for an append of another process to commit, so none lands under a destroyed key.
      await scope.session.lockForWrite(this.now());
      await scope.items.deleteAll();
      await scope.historyOperations.deleteAll();
      await scope.dataKeys.destroyAll(this.now());
    });
    this.context.keyRing.forgetSession(this.ref);
    logger.debug(`Cleared session '${this.ref.sessionId}' and destroyed its data keys`);
  }

  /**
   * Applies an agents-core history transaction atomically and at most once per operation id:
   * repeating an id with the same transaction succeeds without applying it again; reusing it
   * with a different transaction, or a suffix that no longer matches, throws
   * `HistoryConflictError` and changes nothing.
   */
  async applyHistoryTransaction(args: SessionHistoryTransactionArgs): Promise<void> {
    const { operationId, transaction } = snapshotHistoryTransaction(
      args,
      this.context.maxItemBytes,
    );
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
          ? await this.keysForNewest(transaction.expectedSuffix.length)
          : new Map<string, UsableDataKey>();
      try {
        await this.withWriteKey((dataKey) =>
          this.context.storage.transaction(this.ref, async (scope) => {
            if (checkOperationRecord(this.ref, await scope.historyOperations.find(operationId))) {
              throw new RetryOutsideTransaction('operation-exists');
            }
            if (transaction.type === 'replace_suffix') {
              await this.removeExpectedSuffix(scope, transaction, suffixKeys);
              await this.appendSealed(scope, dataKey, transaction.replacement);
            } else {
              await this.appendSealed(scope, dataKey, transaction.items);
            }
            const recorded = await scope.historyOperations.insertIfAbsent({
              operationId,
              dekId: dataKey.dekId,
              digest: digestHistoryTransaction(dataKey.key, transaction),
              createdAt: this.now(),
            });
            if (!recorded) throw new RetryOutsideTransaction('operation-exists');
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
    const { keyRing } = this.context;
    let staleKeyRetries = 0;
    let rotations = 0;
    for (;;) {
      const dataKey = await keyRing.keyForWrite(this.ref, this.context.subjectId);
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
          await keyRing.rotate(this.ref, this.context.subjectId, error.nextSeq);
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
        const [newest] = await this.newestRows(scope, STORED_AT_ALL, 1);
        return session !== undefined && newest !== undefined && newest.seq >= session.nextSeq;
      });
      if (behind) return counterBehindItems(this.ref);
    } catch (diagnosis) {
      // Damage found while looking is the better answer; anything else, the original error.
      if (diagnosis instanceof IntegrityError) return diagnosis;
    }
    return error;
  }

  /** The newest `limit` rows visible at `now`, checked: damaged rows never reach a caller. */
  private async newestRows(
    scope: SessionReadScope,
    now: number,
    limit: number,
  ): Promise<StoredItem[]> {
    return checkStoredItems(this.ref, await scope.items.listVisible(now, limit), {
      limit,
    });
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
    const now = this.now();
    const first =
      payloads.length > 0 ? await scope.session.reserveSequence(payloads.length, now) : 0;
    if (first === undefined) {
      // Items without their session row: the row was deleted behind the module's back.
      if ((await this.newestRows(scope, STORED_AT_ALL, 1)).length > 0) {
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
    if (first + payloads.length - dataKey.firstSeq > this.context.keyRing.maxItemsPerDataKey) {
      throw new RetryOutsideTransaction('key-exhausted', first);
    }
    const ttl = this.context.itemTtlSeconds;
    const expiresAt = ttl === null ? null : now + ttl * 1000;
    const rows: StoredItem[] = payloads.map((payload, index) => {
      const seq = first + index;
      const binding: ItemBinding = {
        tenantId: this.ref.tenantId,
        sessionId: this.ref.sessionId,
        seq,
        expiresAt,
      };
      return {
        seq,
        dekId: dataKey.dekId,
        expiresAt,
        createdAt: now,
        ciphertext: this.cipher.seal(dataKey, binding, payload),
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
    const now = this.now();
    const rows = await this.newestRows(scope, now, expected.length);
    if (rows.length < expected.length) {
      throw new HistoryConflictError(
        'Session history suffix no longer matches the transaction precondition',
      );
    }
    if (rows.some((row) => !keys.get(row.dekId) || keys.get(row.dekId)!.revoked)) {
      throw new RetryOutsideTransaction('suffix-keys');
    }
    const actual = this.openRowsWith(rows, keys, now);
    if (
      actual.some((item, index) => canonicalItemJson(item) !== canonicalPayload(expected[index]!))
    ) {
      throw new HistoryConflictError(
        'Session history suffix no longer matches the transaction precondition',
      );
    }
    await scope.items.deleteBySeq(rows.map((row) => row.seq));
  }

  /** Loads the keys of the newest `count` visible items (outside any transaction). */
  private async keysForNewest(count: number): Promise<Map<string, UsableDataKey>> {
    if (count === 0) return new Map();
    const now = this.now();
    const rows = await this.context.storage.read(this.ref, (scope) =>
      this.newestRows(scope, now, count),
    );
    return this.loadKeys(rows);
  }

  private async loadKeys(rows: readonly StoredItem[]): Promise<Map<string, UsableDataKey>> {
    const keys = new Map<string, UsableDataKey>();
    for (const row of rows) {
      if (!keys.has(row.dekId))
        keys.set(row.dekId, await this.context.keyRing.keyForRead(this.ref, row.dekId));
    }
    return keys;
  }

  /** Opens rows outside a transaction, reloading keys the cache evicted meanwhile. */
  private async openRows(rows: StoredItem[], now: number): Promise<AgentInputItem[]> {
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      try {
        const keys = await this.loadKeys(rows);
        if ([...keys.values()].every((key) => !key.revoked))
          return this.openRowsWith(rows, keys, now);
      } catch (error) {
        if (error instanceof EncryptedSessionError) {
          logger.warn(
            `Read of session '${this.ref.sessionId}' failed (${error.code}): ${error.message}`,
          );
        }
        throw error;
      }
    }
    throw new StorageUnavailableError(
      `Data keys of session '${this.ref.sessionId}' were evicted while reading; raise the key cache size or retry`,
    );
  }

  /**
   * Opens and decodes rows whose keys are loaded, synchronously. Each plaintext is zeroed as
   * soon as it is decoded and each row's ciphertext is let go once opened, so a long history
   * never holds ciphertext, plaintext and items all at once.
   */
  private openRowsWith(
    rows: StoredItem[],
    keys: Map<string, UsableDataKey>,
    now: number,
  ): AgentInputItem[] {
    const items: AgentInputItem[] = [];
    for (let index = 0; index < rows.length; index++) {
      const row = rows[index]!;
      const binding: ItemBinding = {
        tenantId: this.ref.tenantId,
        sessionId: this.ref.sessionId,
        seq: row.seq,
        expiresAt: row.expiresAt,
      };
      const payload = this.cipher.open(keys.get(row.dekId)!, binding, row.ciphertext);
      // The expiry just authenticated is the one the query filtered on; check it once more.
      if (row.expiresAt === null || row.expiresAt > now) {
        items.push(decodeItemPayload(payload) as AgentInputItem);
      }
      if (payload !== row.ciphertext) payload.fill(0);
      row.ciphertext = EMPTY;
    }
    return items;
  }
}

const EMPTY = Buffer.alloc(0);
