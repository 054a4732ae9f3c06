import { createHmac, randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deriveSubkey, encodeItemPayload } from '../../src/crypto/index.js';
import {
  EncryptedSessionService,
  IntegrityError,
  InvalidArgumentError,
  SessionNotFoundError,
  StorageUnavailableError,
  type SessionRef,
  type SessionStorage,
  type SessionReadScope,
  type SessionWriteScope,
} from '../../src/index.js';
import {
  canonicalItemJson,
  decodeItems,
  describeByteSize,
  digestHistoryTransaction,
  digestsEqual,
  encodeSessionItems,
  snapshotHistoryTransaction,
} from '../../src/sessions/history-transaction.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

// Tests that kill mutants StrykerJS found alive in src/sessions after the fixes of issue 8
// (point 14): the item size bound, the canonical form history digests and suffix comparison
// rest on, and the session layer's answers when storage hands back what it should not (a
// counter set back, a session row gone, more rows than asked for), reached in process by
// wrapping the memory storage.

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];

describe('encodeSessionItems: the size bound', () => {
  const item = userMessage('x'.repeat(100));
  const size = encodeItemPayload(item).length;

  it('accepts an item of exactly maxItemBytes and refuses one byte less of room', () => {
    expect(encodeSessionItems([item], 'addItems', size)).toHaveLength(1);
    expect(() => encodeSessionItems([item], 'addItems', size - 1)).toThrow(InvalidArgumentError);
  });

  it('refuses an item over the 4 MiB default', () => {
    expect(() =>
      encodeSessionItems([userMessage('x'.repeat(4 * 1024 * 1024))], 'addItems'),
    ).toThrow(InvalidArgumentError);
  });

  it('takes items that are not objects unless asked for objects only', () => {
    expect(encodeSessionItems(['text'], 'addItems')).toHaveLength(1);
    expect(() => encodeSessionItems(['text'], 'items', 100, true)).toThrow(InvalidArgumentError);
  });
});

describe('describeByteSize', () => {
  it.each([
    [512, '512 bytes'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB (1536 bytes)'],
    [4 * 1024 * 1024, '4 MiB'],
    [5452595, '5.2 MiB (5452595 bytes)'],
  ])('%d bytes reads %s', (bytes, text) => {
    expect(describeByteSize(bytes)).toBe(text);
  });
});

describe('canonicalItemJson', () => {
  it('sorts keys and leaves out undefined values', () => {
    expect(canonicalItemJson({ b: 1, a: [2, { d: 3, c: undefined }] })).toBe(
      '{"a":[2,{"d":3}],"b":1}',
    );
  });

  it('writes bytes as $u8 and wraps look-alike objects in $obj', () => {
    expect(canonicalItemJson(new Uint8Array([1, 2]))).toBe('{"$u8":"AQI="}');
    expect(canonicalItemJson({ $u8: 'AQI=' })).toBe('{"$obj":{"$u8":"AQI="}}');
    expect(canonicalItemJson({ $obj: 1 })).toBe('{"$obj":{"$obj":1}}');
    expect(canonicalItemJson({ $u8: 'x', a: 1 })).toBe('{"$u8":"x","a":1}');
    expect(canonicalItemJson({ a: 1 })).toBe('{"a":1}');
  });

  it('keeps -0 apart from 0', () => {
    expect(canonicalItemJson(-0)).toBe('-0');
    expect(canonicalItemJson(0)).toBe('0');
  });
});

describe('history digests', () => {
  const key = Buffer.alloc(32, 7);
  const payload = encodeItemPayload(userMessage('a'));
  const expected = (canonical: unknown) =>
    createHmac('sha256', deriveSubkey(key, 'history-operation-digest'))
      .update(JSON.stringify(canonical))
      .digest();

  it('keep the stored format, so digests written earlier still match', () => {
    const canonical = canonicalItemJson(userMessage('a'));
    expect(digestHistoryTransaction(key, { type: 'append_items', items: [payload] })).toEqual(
      expected(['append_items', [canonical]]),
    );
    expect(
      digestHistoryTransaction(key, {
        type: 'replace_suffix',
        expectedSuffix: [payload],
        replacement: [],
      }),
    ).toEqual(expected(['replace_suffix', [canonical], []]));
  });

  it('compare unequal lengths as different instead of throwing', () => {
    expect(digestsEqual(Buffer.alloc(32), Buffer.alloc(31))).toBe(false);
    expect(digestsEqual(Buffer.alloc(32), Buffer.alloc(32))).toBe(true);
  });

  it('decodeItems gives back the items of a snapshot', () => {
    expect(decodeItems([payload])).toEqual([userMessage('a')]);
  });
});

describe('snapshotHistoryTransaction: arguments that throw', () => {
  it('reports a throwing getter as InvalidArgumentError without its text', () => {
    const canary = `canary-${randomUUID()}`;
    const args = {
      get operationId(): string {
        throw new Error(canary);
      },
      transaction: { type: 'append_items' as const, items: [] },
    };
    let thrown: unknown;
    try {
      snapshotHistoryTransaction(args);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InvalidArgumentError);
    expect((thrown as Error).message).not.toContain(canary);
  });
});

/** The memory storage with some scope methods replaced, in reads and transactions alike. */
function patchedStorage(
  inner: SessionStorage,
  patch: (scope: SessionWriteScope, inTransaction: boolean) => SessionWriteScope,
): SessionStorage {
  // In reads the scope has only its read methods; a patch adds what it replaces.
  const patchRead = (scope: SessionReadScope): SessionReadScope =>
    patch(scope as SessionWriteScope, false);
  return {
    backend: inner.backend,
    read: (ref, work) => inner.read(ref, (scope) => work(patchRead(scope))),
    transaction: (ref, work) => inner.transaction(ref, (scope) => work(patch(scope, true))),
    close: () => inner.close(),
  };
}

/** Inserts fail the way a SQL driver reports a duplicate key: an untyped error. */
const failingInserts = (scope: SessionWriteScope): SessionWriteScope => ({
  ...scope,
  items: {
    ...scope.items,
    insertMany: async () => {
      throw new Error('duplicate key value violates unique constraint');
    },
  },
});

describe('the session layer on storage that misbehaves', () => {
  let harness: SessionHarness;
  let ref: SessionRef;
  beforeEach(async () => {
    harness = await memoryHarness();
    ref = { tenantId: 'default', sessionId: `s-${randomUUID()}` };
  });
  afterEach(async () => {
    await harness.close();
  });

  /** A service on `storage` sharing the harness's key ring. */
  const serviceOn = (storage: SessionStorage) =>
    new EncryptedSessionService(storage, harness.keyRing);

  /** How many items of the session storage holds. */
  const storedCount = async () =>
    (await harness.storage.read(ref, (scope) => scope.items.listVisible(Date.now(), 100))).length;

  /** Sets the session's counter back to `nextSeq`, as a restored session row would. */
  function setCounter(nextSeq: number) {
    const internals = harness.storage as unknown as {
      sessions: Map<string, { record: SessionRef & { nextSeq: number } }>;
    };
    for (const state of internals.sessions.values()) {
      if (state.record.sessionId === ref.sessionId) state.record = { ...state.record, nextSeq };
    }
  }

  it('explains an untyped insert failure over a counter set back as IntegrityError', async () => {
    await (await harness.service.open(ref.sessionId)).addItems(items('a', 'b'));
    setCounter(2);
    const session = await serviceOn(patchedStorage(harness.storage, failingInserts)).open(
      ref.sessionId,
    );
    await expect(session.addItems(items('c'))).rejects.toBeInstanceOf(IntegrityError);
  });

  it('passes an untyped insert failure on unchanged when the counter is ahead', async () => {
    await (await harness.service.open(ref.sessionId)).addItems(items('a'));
    const session = await serviceOn(patchedStorage(harness.storage, failingInserts)).open(
      ref.sessionId,
    );
    const failure = await session.addItems(items('b')).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(Error);
    expect(failure).not.toBeInstanceOf(IntegrityError);
    expect((failure as Error).message).toContain('duplicate key');
  });

  it('reports damage found while diagnosing a failed write', async () => {
    await (await harness.service.open(ref.sessionId)).addItems(items('a'));
    const session = await serviceOn(
      patchedStorage(harness.storage, (scope, inTransaction) =>
        inTransaction
          ? failingInserts(scope)
          : {
              ...scope,
              items: { ...scope.items, listVisible: async () => [{ seq: 'x' }] as never },
            },
      ),
    ).open(ref.sessionId);
    await expect(session.addItems(items('b'))).rejects.toBeInstanceOf(IntegrityError);
  });

  it('an append whose session row is gone but whose items remain is IntegrityError', async () => {
    const session = await harness.service.open(ref.sessionId);
    await session.addItems(items('a'));
    const rowless = await serviceOn(
      patchedStorage(harness.storage, (scope) => ({
        ...scope,
        session: { ...scope.session, reserveSequence: async () => undefined },
      })),
    ).open(ref.sessionId);
    await expect(rowless.addItems(items('b'))).rejects.toBeInstanceOf(IntegrityError);
  });

  it('an append whose session row is gone with no items left is SessionNotFoundError', async () => {
    await harness.service.open(ref.sessionId);
    const rowless = await serviceOn(
      patchedStorage(harness.storage, (scope) => ({
        ...scope,
        session: { ...scope.session, reserveSequence: async () => undefined },
      })),
    ).open(ref.sessionId);
    await expect(rowless.addItems(items('b'))).rejects.toBeInstanceOf(SessionNotFoundError);
  });

  it('open refuses a session whose row is gone but whose items remain', async () => {
    await (await harness.service.open(ref.sessionId)).addItems(items('a'));
    const rowless = serviceOn(
      patchedStorage(harness.storage, (scope) => ({
        ...scope,
        session: { ...scope.session, find: async () => undefined },
      })),
    );
    await expect(rowless.open(ref.sessionId)).rejects.toBeInstanceOf(IntegrityError);
  });

  it('getItems(n) refuses more rows than it asked for', async () => {
    await (await harness.service.open(ref.sessionId)).addItems(items('a', 'b', 'c'));
    const session = await serviceOn(
      patchedStorage(harness.storage, (scope) => ({
        ...scope,
        items: {
          ...scope.items,
          listVisible: (now, limit) => scope.items.listVisible(now, limit + 1),
        },
      })),
    ).open(ref.sessionId);
    await expect(session.getItems(1)).rejects.toBeInstanceOf(IntegrityError);
  });

  it('getItems() refuses a page reaching past the newest item it started from', async () => {
    await (await harness.service.open(ref.sessionId)).addItems(items('a', 'b'));
    const session = await serviceOn(
      patchedStorage(harness.storage, (scope) => ({
        ...scope,
        items: {
          ...scope.items,
          // The newest item looks like item 1, and pages ignore their upper bound.
          listVisible: async (now, limit) =>
            (await scope.items.listVisible(now, limit + 1)).filter((row) => row.seq === 1),
          listVisiblePage: (now, afterSeq, _throughSeq, limit) =>
            scope.items.listVisiblePage(now, afterSeq, Number.MAX_SAFE_INTEGER, limit),
        },
      })),
    ).open(ref.sessionId);
    await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
  });

  describe('applyHistoryTransaction stays at most once when a check misses the record', () => {
    const args = {
      operationId: 'op-1',
      transaction: { type: 'append_items' as const, items: items('x') },
    };
    beforeEach(async () => {
      const session = await harness.service.open(ref.sessionId);
      await session.addItems(items('kept'));
      await session.applyHistoryTransaction(args);
    });

    it('does not commit when recording the operation finds it already there', async () => {
      let inserts = 0;
      const blind = await serviceOn(
        patchedStorage(harness.storage, (scope) => ({
          ...scope,
          historyOperations: {
            ...scope.historyOperations,
            find: async () => undefined,
            insertIfAbsent: (operation) => {
              inserts++;
              return scope.historyOperations.insertIfAbsent(operation);
            },
          },
        })),
      ).open(ref.sessionId);
      await expect(blind.applyHistoryTransaction(args)).rejects.toBeInstanceOf(
        StorageUnavailableError,
      );
      expect(inserts).toBe(5);
      expect(await storedCount()).toBe(2);
    });

    it('does not append when the transaction finds the operation already applied', async () => {
      const blind = await serviceOn(
        patchedStorage(harness.storage, (scope, inTransaction) => ({
          ...scope,
          historyOperations: {
            ...scope.historyOperations,
            find: async (operationId) =>
              inTransaction ? scope.historyOperations.find(operationId) : undefined,
            insertIfAbsent: async () => true,
          },
        })),
      ).open(ref.sessionId);
      await expect(blind.applyHistoryTransaction(args)).rejects.toBeInstanceOf(
        StorageUnavailableError,
      );
      expect(await storedCount()).toBe(2);
    });
  });

  it('open refuses null options as InvalidArgumentError', async () => {
    await expect(
      harness.service.open(ref.sessionId, null as unknown as undefined),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
