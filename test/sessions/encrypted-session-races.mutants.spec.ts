import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  EncryptedSession,
  EncryptedSessionService,
  InvalidArgumentError,
  KeyRing,
  SessionNotFoundError,
  StorageUnavailableError,
  type SessionStorage,
  type SessionReadScope,
  type SessionWriteScope,
} from '../../src/index.js';
import { type KeyRingOptions } from '../../src/keys/key-ring.options.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

// Tests that kill mutants StrykerJS found alive in encrypted-session.ts (issue 8, point 14):
// lost races, keys evicted or rotated under a call, and what storage returns that the
// session must still check.

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];
const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);

let harness: SessionHarness;
let sessionId: string;
beforeEach(async () => {
  harness = await memoryHarness();
  sessionId = `s-${randomUUID()}`;
});
afterEach(async () => {
  await harness.close();
});

/** A session over `storage` with its own key ring, as another process would have. */
function sessionOver(storage: SessionStorage, keyRing: KeyRing, clock?: () => number) {
  return new EncryptedSession({
    tenantId: 'default',
    sessionId,
    subjectId: null,
    itemTtlSeconds: null,
    storage,
    keyRing,
    clock,
  });
}

type Repository = 'session' | 'items' | 'dataKeys' | 'historyOperations';

/**
 * `storage` with some scope methods replaced; `edit` gets the real scope (in reads, the read
 * scope: only its read methods exist).
 */
function editedStorage(
  storage: SessionStorage,
  edit: (scope: SessionWriteScope) => Partial<{ [K in Repository]: Partial<SessionWriteScope[K]> }>,
  onTransaction?: () => void,
): SessionStorage {
  const wrap = <S extends SessionReadScope>(scope: S): S => {
    const changes = edit(scope as unknown as SessionWriteScope);
    return {
      ref: scope.ref,
      session: { ...bind(scope.session), ...changes.session },
      items: { ...bind(scope.items), ...changes.items },
      dataKeys: { ...bind(scope.dataKeys), ...changes.dataKeys },
      historyOperations: { ...bind(scope.historyOperations), ...changes.historyOperations },
    } as S;
  };
  return {
    backend: storage.backend,
    read: (ref, work) => storage.read(ref, (scope) => work(wrap(scope))),
    transaction: (ref, work) =>
      storage.transaction(ref, (scope) => {
        onTransaction?.();
        return work(wrap(scope));
      }),
    close: () => storage.close(),
  };
}

/** An object's methods bound to it, as own properties (so spreading keeps them). */
function bind<T extends object>(target: T): T {
  const bound: Record<string, unknown> = {};
  let proto: object | null = target;
  while (proto && proto !== Object.prototype) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const value: unknown = (target as Record<string, unknown>)[name];
      if (name !== 'constructor' && typeof value === 'function' && !(name in bound)) {
        bound[name] = (value as (...args: unknown[]) => unknown).bind(target);
      }
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return bound as T;
}

describe('EncryptedSession: what storage returns is checked again', () => {
  it('hides an expired item even when the storage query returns it', async () => {
    const session = await harness.service.open(sessionId, { ttlSeconds: 1 });
    await session.addItems(items('expires'));
    const [row] = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
      scope.items.listVisible(0, 1),
    );
    // A store whose queries ignore expiry (e.g. a lagging replica or a bug).
    const leaky = editedStorage(harness.storage, (scope) => ({
      items: {
        listVisible: (_now, limit) => scope.items.listVisible(0, limit),
        listVisiblePage: (_now, after, through, limit) =>
          scope.items.listVisiblePage(0, after, through, limit),
      },
    }));
    const later = sessionOver(leaky, harness.keyRing, () => row.expiresAt! + 1);
    expect(await later.getItems()).toEqual([]);
    expect(await later.getItems(5)).toEqual([]);
  });

  it('reads nothing from a session that has no record', async () => {
    expect(await sessionOver(harness.storage, harness.keyRing).getItems()).toEqual([]);
  });

  it('reads only the items that existed when a full read started', async () => {
    const session = await harness.service.open(sessionId);
    await session.addItems(items('a', 'b'));
    let reads = 0;
    const racing: SessionStorage = {
      backend: harness.storage.backend,
      transaction: (ref, work) => harness.storage.transaction(ref, work),
      close: () => harness.storage.close(),
      read: async (ref, work) => {
        // Read 1 fixes the last position; before read 2 (the first page) another writer appends.
        if (++reads === 2) await (await harness.service.open(sessionId)).addItems(items('c'));
        return harness.storage.read(ref, work);
      },
    };
    expect(texts(await sessionOver(racing, harness.keyRing).getItems())).toEqual(['a', 'b']);
  });
});

describe('EncryptedSession: writes to a session that is gone or keeps moving', () => {
  it('refuses to append to a session that has no record, storing nothing', async () => {
    const session = sessionOver(harness.storage, harness.keyRing);
    await expect(session.addItems(items('orphan'))).rejects.toBeInstanceOf(SessionNotFoundError);
    const rows = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
      scope.items.listVisible(0, 10),
    );
    expect(rows).toEqual([]);
  });

  it('refuses a non-array, and creates no key for an empty append', async () => {
    const session = await harness.service.open(sessionId);
    await expect(session.addItems('text' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await session.addItems([]);
    const key = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
      scope.dataKeys.findActive(),
    );
    expect(key).toBeUndefined();
  });

  it('gives up with a retryable error when its key keeps being replaced', async () => {
    await harness.service.open(sessionId);
    let transactions = 0;
    // Every write finds another key active than the one it holds.
    const moving = editedStorage(
      harness.storage,
      () => ({ dataKeys: { findActive: async () => undefined } }),
      () => transactions++,
    );
    const session = sessionOver(moving, new KeyRing(moving, harness.provider));
    const error = await session.addItems(items('x')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(transactions).toBeGreaterThanOrEqual(5);
    expect(transactions).toBeLessThan(12);
  });

  it('gives up popping with a retryable error when other writers keep taking the item', async () => {
    const session = await harness.service.open(sessionId);
    await session.addItems(items('contested'));
    let attempts = 0;
    const contested = editedStorage(harness.storage, () => ({
      items: {
        deleteBySeq: async () => {
          attempts++;
          return 0;
        },
      },
    }));
    const error = await sessionOver(contested, harness.keyRing)
      .popItem()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(attempts).toBe(5);
    expect(texts(await session.getItems())).toEqual(['contested']);
  });

  it('moves on to the generation another process started, without starting another', async () => {
    const options: KeyRingOptions = { maxItemsPerDataKey: 2 };
    const ringA = new KeyRing(harness.storage, harness.provider, options);
    const ringB = new KeyRing(harness.storage, harness.provider, options);
    await harness.service.open(sessionId);
    const a = sessionOver(harness.storage, ringA);
    const b = sessionOver(harness.storage, ringB);
    await a.addItems(items('a1'));
    // B fills generation 1 and starts generation 2; A still holds generation 1.
    await b.addItems(items('b1'));
    await b.addItems(items('b2'));
    await a.addItems(items('a2'));
    const ref = { tenantId: 'default', sessionId };
    expect(await harness.storage.read(ref, (scope) => scope.dataKeys.maxGeneration())).toBe(2);
    expect(texts(await a.getItems())).toEqual(['a1', 'b1', 'b2', 'a2']);
    ringA.clear();
    ringB.clear();
  });

  it('starts a new generation only past maxItemsPerDataKey items', async () => {
    const ring = new KeyRing(harness.storage, harness.provider, { maxItemsPerDataKey: 3 });
    await harness.service.open(sessionId);
    const session = sessionOver(harness.storage, ring);
    const ref = { tenantId: 'default', sessionId };
    const generation = () => harness.storage.read(ref, (scope) => scope.dataKeys.maxGeneration());
    await session.addItems(items('1', '2'));
    await session.addItems(items('3'));
    expect(await generation()).toBe(1);
    await session.addItems(items('4'));
    expect(await generation()).toBe(2);
    expect(texts(await session.getItems())).toEqual(['1', '2', '3', '4']);
    ring.clear();
  });
});

describe('EncryptedSession: keys evicted while a call is under way', () => {
  it('reloads the keys of the suffix a replace_suffix checks when they were evicted', async () => {
    await harness.service.open(sessionId);
    let evict = false;
    const evicting = editedStorage(
      harness.storage,
      () => ({}),
      () => {
        if (evict) {
          evict = false;
          keyRing.clear();
        }
      },
    );
    const keyRing = new KeyRing(evicting, harness.provider);
    const session = sessionOver(evicting, keyRing);
    await session.addItems(items('a', 'b'));
    evict = true;
    await session.applyHistoryTransaction({
      operationId: 'op',
      transaction: { type: 'replace_suffix', expectedSuffix: items('b'), replacement: items('s') },
    });
    expect(texts(await session.getItems())).toEqual(['a', 's']);
  });

  it('fails a read retryably when the key cache cannot hold the keys one read needs', async () => {
    const writer = new KeyRing(harness.storage, harness.provider, { maxItemsPerDataKey: 1 });
    await harness.service.open(sessionId);
    await sessionOver(harness.storage, writer).addItems(items('gen 1'));
    await sessionOver(harness.storage, writer).addItems(items('gen 2'));
    writer.clear();
    const tiny = new KeyRing(harness.storage, harness.provider, { cacheMaxEntries: 1 });
    const error = await sessionOver(harness.storage, tiny)
      .getItems()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    // With room for both keys the same history reads fine.
    const roomy = new EncryptedSessionService(
      harness.storage,
      new KeyRing(harness.storage, harness.provider, { cacheMaxEntries: 2 }),
    );
    expect(texts(await (await roomy.open(sessionId)).getItems())).toEqual(['gen 1', 'gen 2']);
  });
});

describe('EncryptedSession: expiry boundary', () => {
  it('hides an item at the very millisecond it expires, whatever storage returns', async () => {
    const session = await harness.service.open(sessionId, { ttlSeconds: 1 });
    await session.addItems(items('expires'));
    const [row] = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
      scope.items.listVisible(0, 1),
    );
    const leaky = editedStorage(harness.storage, (scope) => ({
      items: { listVisible: (_now, limit) => scope.items.listVisible(0, limit) },
    }));
    expect(await sessionOver(leaky, harness.keyRing, () => row.expiresAt!).getItems(1)).toEqual([]);
  });
});

describe('EncryptedSessionService.open: more checks', () => {
  it('refuses ids that are not strings', async () => {
    await expect(harness.service.open(5 as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(harness.service.open(sessionId, { tenantId: 5 as never })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  it('refuses options that are not an object, creating nothing', async () => {
    await expect(harness.service.open(sessionId, 'tenant-a' as never)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(await sessionOver(harness.storage, harness.keyRing).getItems()).toEqual([]);
    const record = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
      scope.session.find(),
    );
    expect(record).toBeUndefined();
  });

  it('lets a session created without a subject be opened with one', async () => {
    await harness.service.open(sessionId);
    const session = await harness.service.open(sessionId, { subjectId: 'dave' });
    await session.addItems(items('x'));
    const ref = { tenantId: 'default', sessionId };
    expect(
      (await harness.storage.read(ref, (scope) => scope.dataKeys.findActive()))!.subjectId,
    ).toBe('dave');
  });

  it('creates a session with no legal hold, starting at position 1', async () => {
    await harness.service.open(sessionId);
    const record = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
      scope.session.find(),
    );
    expect(record).toMatchObject({
      legalHold: false,
      nextSeq: 1,
      subjectId: null,
      itemTtlSeconds: null,
    });
  });
});

/** `storage` running `before` ahead of each of its transactions, outside any of them. */
function racedStorage(storage: SessionStorage, before: () => Promise<void>): SessionStorage {
  return {
    backend: storage.backend,
    read: (ref, work) => storage.read(ref, work),
    transaction: async (ref, work) => {
      await before();
      return storage.transaction(ref, work);
    },
    close: () => storage.close(),
  };
}

const currentRef = () => ({ tenantId: 'default', sessionId });

/** Storage on which the next `times` write checks find a newer generation active. */
function rotatedUnder(times: number) {
  let checks = 0;
  const storage = editedStorage(harness.storage, (scope) => ({
    dataKeys: {
      findActive: async () => {
        const active = await scope.dataKeys.findActive();
        if (!active || checks++ >= times) return active;
        return { ...active, dekId: randomUUID(), generation: active.generation + 1 };
      },
    },
  }));
  return { storage, checks: () => checks };
}

describe('EncryptedSession: how long a write waits for other writers', () => {
  it('waits through more rotations by other writers than lost keys, then writes', async () => {
    await harness.service.open(sessionId);
    const { storage, checks } = rotatedUnder(20);
    // The key ring reads the real storage: only the write's own check sees the rotations.
    await sessionOver(storage, harness.keyRing).addItems(items('after 20 rotations'));
    expect(checks()).toBe(21);
    expect(texts(await sessionOver(harness.storage, harness.keyRing).getItems())).toEqual([
      'after 20 rotations',
    ]);
  });

  it('gives up retryably after 100 rotations by other writers, storing nothing', async () => {
    await harness.service.open(sessionId);
    const { storage, checks } = rotatedUnder(Number.POSITIVE_INFINITY);
    const error = await sessionOver(storage, harness.keyRing)
      .addItems(items('never'))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(checks()).toBe(100);
    expect(await sessionOver(harness.storage, harness.keyRing).getItems()).toEqual([]);
  });

  it('counts a key replaced by one of the same generation as a lost key (5 tries)', async () => {
    await harness.service.open(sessionId);
    let checks = 0;
    const replaced = editedStorage(harness.storage, (scope) => ({
      dataKeys: {
        findActive: async () => {
          const active = await scope.dataKeys.findActive();
          checks++;
          return active && { ...active, dekId: randomUUID() };
        },
      },
    }));
    const error = await sessionOver(replaced, harness.keyRing)
      .addItems(items('never'))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(checks).toBe(5);
  });

  it('gives up retryably after 100 keys other writers filled first', async () => {
    const options: KeyRingOptions = { maxItemsPerDataKey: 1 };
    await harness.service.open(sessionId);
    const other = sessionOver(
      harness.storage,
      new KeyRing(harness.storage, harness.provider, options),
    );
    let transactions = 0;
    // Before each of its transactions another writer fills the key it is about to use.
    const filled = racedStorage(harness.storage, async () => {
      transactions++;
      await other.addItems(items(`other ${transactions}`));
    });
    const ring = new KeyRing(harness.storage, harness.provider, options);
    const error = await sessionOver(filled, ring)
      .addItems(items('never'))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(transactions).toBe(100);
    const stored = texts(await sessionOver(harness.storage, harness.keyRing).getItems());
    expect(stored).toHaveLength(100);
    expect(stored).not.toContain('never');
    expect(
      await harness.storage.read(currentRef(), (scope) => scope.dataKeys.maxGeneration()),
    ).toBe(100);
  });

  it('refuses a batch larger than one data key seals, storing nothing', async () => {
    const ring = new KeyRing(harness.storage, harness.provider, { maxItemsPerDataKey: 2 });
    await harness.service.open(sessionId);
    const session = sessionOver(harness.storage, ring);
    await expect(session.addItems(items('1', '2', '3'))).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(
      session.applyHistoryTransaction({
        operationId: 'op',
        transaction: { type: 'append_items', items: items('1', '2', '3') },
      }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    await session.addItems(items('1', '2'));
    expect(texts(await session.getItems())).toEqual(['1', '2']);
    expect(
      await harness.storage.read(currentRef(), (scope) => scope.historyOperations.find('op')),
    ).toBe(undefined);
  });
});

describe('EncryptedSession: a write that fails for another reason', () => {
  it('passes a driver error on as it is when the counter is sound', async () => {
    await harness.service.open(sessionId);
    const driverError = new Error('driver: connection reset');
    const failing = editedStorage(harness.storage, () => ({
      items: {
        insertMany: async () => {
          throw driverError;
        },
      },
    }));
    const error = await sessionOver(failing, harness.keyRing)
      .addItems(items('x'))
      .catch((caught: unknown) => caught);
    expect(error).toBe(driverError);
  });

  it('passes a driver error on as it is when looking for its cause fails too', async () => {
    await harness.service.open(sessionId);
    const driverError = new Error('driver: connection reset');
    const failing = editedStorage(harness.storage, () => ({
      items: {
        insertMany: async () => {
          throw driverError;
        },
      },
      session: {
        find: async () => {
          throw new StorageUnavailableError('the database went away');
        },
      },
    }));
    const error = await sessionOver(failing, harness.keyRing)
      .addItems(items('x'))
      .catch((caught: unknown) => caught);
    expect(error).toBe(driverError);
  });

  it('passes a typed error on as it is, even with the counter behind the items', async () => {
    const session = await harness.service.open(sessionId);
    await session.addItems(items('a', 'b'));
    const typed = new StorageUnavailableError('the database went away');
    const failing = editedStorage(harness.storage, (scope) => ({
      session: {
        // The counter reads as if rolled back to position 1.
        find: async () => {
          const record = await scope.session.find();
          return record && { ...record, nextSeq: 1 };
        },
      },
      items: {
        insertMany: async () => {
          throw typed;
        },
      },
    }));
    const error = await sessionOver(failing, harness.keyRing)
      .addItems(items('x'))
      .catch((caught: unknown) => caught);
    expect(error).toBe(typed);
  });
});

describe('EncryptedSession: replace_suffix racing a writer that moved the suffix to a new key', () => {
  it('reloads the keys and applies the transaction', async () => {
    // The other writer's keys hold two items each, so its next append starts generation 2.
    const otherRing = new KeyRing(harness.storage, harness.provider, { maxItemsPerDataKey: 2 });
    await harness.service.open(sessionId);
    const other = sessionOver(harness.storage, otherRing);
    await other.addItems(items('a', 'b'));
    let raced = false;
    // After the suffix keys were loaded and before the transaction: 'b' is popped and
    // appended again, now under generation 2's key.
    const racing = racedStorage(harness.storage, async () => {
      if (raced) return;
      raced = true;
      await other.popItem();
      await other.addItems(items('b'));
    });
    const session = sessionOver(racing, new KeyRing(harness.storage, harness.provider));
    await session.applyHistoryTransaction({
      operationId: 'op',
      transaction: {
        type: 'replace_suffix',
        expectedSuffix: items('a', 'b'),
        replacement: items('c'),
      },
    });
    expect(raced).toBe(true);
    const ref = { tenantId: 'default', sessionId };
    expect(await harness.storage.read(ref, (scope) => scope.dataKeys.maxGeneration())).toBe(2);
    expect(texts(await session.getItems())).toEqual(['c']);
  });
});

describe('EncryptedSession: a read whose keys keep being evicted', () => {
  it('tries 5 times, loading both keys each time, before failing retryably', async () => {
    const writer = new KeyRing(harness.storage, harness.provider, { maxItemsPerDataKey: 1 });
    await harness.service.open(sessionId);
    await sessionOver(harness.storage, writer).addItems(items('gen 1'));
    await sessionOver(harness.storage, writer).addItems(items('gen 2'));
    writer.clear();
    const unwraps = vi.spyOn(harness.provider, 'unwrapDataKey');
    const tiny = new KeyRing(harness.storage, harness.provider, { cacheMaxEntries: 1 });
    const error = await sessionOver(harness.storage, tiny)
      .getItems()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(unwraps).toHaveBeenCalledTimes(10);
  });
});
