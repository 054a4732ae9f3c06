import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSession,
  EncryptedSessionService,
  HistoryConflictError,
  InvalidArgumentError,
  KeyRing,
  type SessionRef,
  type SessionStorage,
} from '../../src/index.js';
import { type EncryptedSessionContext } from '../../src/sessions/index.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';
import { DEFAULT_SESSION_DEFAULTS } from '../../src/sessions/session-defaults.js';
import { envelopeItemCipher, type ItemCipher } from '../../src/sessions/item-cipher.js';
import { createEncryptedSessionWithCipher } from '../../src/sessions/item-cipher.testing.js';

// Tests that kill mutants StrykerJS found alive in src/sessions (issue 8, point 14): each one
// pins an outcome that a broken session or service would otherwise get away with. The memory
// backend is enough: what they pin lives above the storage port.

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];
const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);
const zeroKey = Buffer.alloc(32);

let harness: SessionHarness;
let sessionId: string;
beforeEach(async () => {
  harness = await memoryHarness();
  sessionId = `s-${randomUUID()}`;
});
afterEach(async () => {
  await harness.close();
});

/** The session under test in the default tenant. */
const defaultRef = (): SessionRef => ({ tenantId: 'default', sessionId });

/** The context `open` would build for the session under test, without a TTL. */
const defaultContext = (): EncryptedSessionContext => ({
  tenantId: 'default',
  sessionId,
  subjectId: null,
  itemTtlSeconds: null,
  storage: harness.storage,
  keyRing: harness.keyRing,
});

/** Seconds from now to the expiry of an item appended through `session`; null = never. */
async function expiryOfAppend(session: EncryptedSession): Promise<number | null> {
  const before = Date.now();
  await session.addItems(items('x'));
  const rows = await storedRows(defaultRef(), 1);
  const { expiresAt } = rows[0];
  return expiresAt === null ? null : Math.round((expiresAt - before) / 1000);
}

/** The newest `limit` stored rows of a session, oldest first, read straight from storage. */
function storedRows(ref: SessionRef, limit = 100) {
  return harness.storage.read(ref, (scope) => scope.items.listVisible(Date.now(), limit));
}

/** Another process on the same storage and root keys: its own key ring and service. */
function secondProcess(storage: SessionStorage = harness.storage) {
  const keyRing = new KeyRing(storage, harness.provider);
  return { keyRing, service: new EncryptedSessionService(storage, keyRing) };
}

describe('EncryptedSessionService.open: ids', () => {
  it.each([
    ['NUL', 'a\u0000b'],
    ['a newline', 'line\nbreak'],
    ['unit separator U+001F', 'a\u001fb'],
    ['DEL U+007F', 'a\u007fb'],
    ['a lone surrogate', 'a\ud800b'],
    ['the empty string', ''],
    ['192 characters', 'x'.repeat(192)],
  ])('refuses a session id with %s', async (_what, id) => {
    await expect(harness.service.open(id)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it.each([
    ['tenantId', { tenantId: 'acme\u0000' }],
    ['tenantId', { tenantId: 'acme\t' }],
    ['subjectId', { subjectId: 'patient\u0007' }],
    ['subjectId', { subjectId: '' }],
  ])('refuses control characters and empty values in %s', async (_name, options) => {
    await expect(harness.service.open(sessionId, options)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    // Nothing was created for the refused call.
    expect(
      await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
        scope.session.find(),
      ),
    ).toBeUndefined();
  });

  it('accepts printable text up to 191 characters, spaces and tildes included', async () => {
    for (const id of [' x ~', 'x'.repeat(191), 'é😀 \u0080']) {
      const session = await harness.service.open(id, { tenantId: id, subjectId: id });
      await session.addItems(items('kept'));
      expect(texts(await session.getItems())).toEqual(['kept']);
    }
  });
});

describe('EncryptedSessionService.open: subject', () => {
  it('refuses to open an existing session under another subject', async () => {
    const first = await harness.service.open(sessionId, { subjectId: 'alice' });
    await first.addItems(items('about alice'));
    await expect(harness.service.open(sessionId, { subjectId: 'bob' })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    // The same subject, or none, opens it.
    await harness.service.open(sessionId, { subjectId: 'alice' });
    await harness.service.open(sessionId);
  });

  it("records the stored subject on the session's data keys when opened without one", async () => {
    const ref = { tenantId: 'default', sessionId };
    await harness.service.open(sessionId, { subjectId: 'alice' });
    const session = await harness.service.open(sessionId);
    await session.addItems(items('a'));
    const key = await harness.storage.read(ref, (scope) => scope.dataKeys.findActive());
    expect(key!.subjectId).toBe('alice');
  });

  it('records the subject given at creation on the data keys', async () => {
    const ref = { tenantId: 'default', sessionId };
    const session = await harness.service.open(sessionId, { subjectId: 'carol' });
    await session.addItems(items('a'));
    const key = await harness.storage.read(ref, (scope) => scope.dataKeys.findActive());
    expect(key!.subjectId).toBe('carol');
    expect((await harness.storage.read(ref, (scope) => scope.session.find()))!.subjectId).toBe(
      'carol',
    );
  });
});

describe('EncryptedSessionService.open: ttlSeconds', () => {
  it('applies ttlSeconds given at creation and keeps it for later opens', async () => {
    expect(await expiryOfAppend(await harness.service.open(sessionId, { ttlSeconds: 60 }))).toBe(
      60,
    );
    expect(await expiryOfAppend(await harness.service.open(sessionId))).toBe(60);
  });

  it('applies ttlSeconds given when opening an existing session, for that handle', async () => {
    await harness.service.open(sessionId);
    expect(await expiryOfAppend(await harness.service.open(sessionId, { ttlSeconds: 5 }))).toBe(5);
    expect(await expiryOfAppend(await harness.service.open(sessionId))).toBeNull();
  });

  it('keeps items forever when opened with ttlSeconds null over a stored TTL', async () => {
    await harness.service.open(sessionId, { ttlSeconds: 60 });
    expect(
      await expiryOfAppend(await harness.service.open(sessionId, { ttlSeconds: null })),
    ).toBeNull();
  });

  it("uses the module's itemTtlSeconds for sessions opened without one", async () => {
    const service = new EncryptedSessionService(harness.storage, harness.keyRing, {
      ...DEFAULT_SESSION_DEFAULTS,
      itemTtlSeconds: 30,
    });
    expect(await expiryOfAppend(await service.open(sessionId))).toBe(30);
  });

  it('hides items once their ttlSeconds passed', async () => {
    const session = await harness.service.open(sessionId, { ttlSeconds: 1 });
    await session.addItems(items('short-lived'));
    const [row] = await storedRows(defaultRef(), 1);
    const later = new EncryptedSession({ ...defaultContext(), clock: () => row.expiresAt! });
    expect(await later.getItems()).toEqual([]);
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '60'])(
    'refuses ttlSeconds %s',
    async (ttlSeconds) => {
      await expect(
        harness.service.open(sessionId, { ttlSeconds: ttlSeconds as number }),
      ).rejects.toBeInstanceOf(InvalidArgumentError);
    },
  );

  it('accepts a ttlSeconds of 1', async () => {
    expect(await expiryOfAppend(await harness.service.open(sessionId, { ttlSeconds: 1 }))).toBe(1);
  });
});

describe('EncryptedSession.getItems: long histories', () => {
  it('returns every item of a history longer than one read page (1,000 rows)', async () => {
    const session = await harness.service.open(sessionId);
    const all = Array.from({ length: 2_345 }, (_, i) => `m${i}`);
    for (let start = 0; start < all.length; start += 500) {
      await session.addItems(items(...all.slice(start, start + 500)));
    }
    expect(texts(await session.getItems())).toEqual(all);
  });

  it('returns every item when the history is exactly one page long, with gaps from pops', async () => {
    const session = await harness.service.open(sessionId);
    const all = Array.from({ length: 1_002 }, (_, i) => `m${i}`);
    await session.addItems(items(...all));
    await session.popItem();
    await session.popItem();
    expect(texts(await session.getItems())).toEqual(all.slice(0, 1_000));
    await session.addItems(items('after'));
    expect(texts(await session.getItems())).toEqual([...all.slice(0, 1_000), 'after']);
  });
});

describe('EncryptedSession: writes never land under a destroyed or zeroed key', () => {
  it('starts a new key when another process cleared the session under a cached key', async () => {
    const session = await harness.service.open(sessionId);
    await session.addItems(items('before'));
    const other = secondProcess();
    await (await other.service.open(sessionId)).clearSession();
    // This process still caches the destroyed key as the session's active one.
    await session.addItems(items('after'));
    const reader = await secondProcess().service.open(sessionId);
    expect(texts(await reader.getItems())).toEqual(['after']);
  });

  it('does not seal with a key that was evicted (zeroed) while the write was under way', async () => {
    let evictOnce = true;
    const storage: SessionStorage = {
      backend: harness.storage.backend,
      read: (ref, work) => harness.storage.read(ref, work),
      transaction: (ref, work) =>
        harness.storage.transaction(ref, async (scope) => {
          if (evictOnce) {
            evictOnce = false;
            // The cache drops (and zeroes) the key the write already holds.
            keyRing.clear();
          }
          return work(scope);
        }),
      close: () => harness.storage.close(),
    };
    const keyRing = new KeyRing(storage, harness.provider);
    await harness.service.open(sessionId);
    evictOnce = false;
    const session = new EncryptedSession({
      tenantId: 'default',
      sessionId,
      subjectId: null,
      itemTtlSeconds: null,
      storage,
      keyRing,
    });
    await session.addItems(items('warm-up'));
    evictOnce = true;
    await session.addItems(items('sealed after eviction'));
    const reader = await secondProcess().service.open(sessionId);
    expect(texts(await reader.getItems())).toEqual(['warm-up', 'sealed after eviction']);
  });
});

describe('EncryptedSession.clearSession', () => {
  it('zeroes and drops the cleared keys from the key ring', async () => {
    const session = await harness.service.open(sessionId);
    await session.addItems(items('secret'));
    const cached = await harness.keyRing.keyForWrite({ tenantId: 'default', sessionId }, null);
    expect(harness.keyRing.stats().cachedKeys).toBe(1);
    await session.clearSession();
    expect(cached.revoked).toBe(true);
    expect(cached.key.equals(zeroKey)).toBe(true);
    expect(harness.keyRing.stats().cachedKeys).toBe(0);
  });

  it('destroys the keys in storage so no copy of an old item opens again', async () => {
    const ref = { tenantId: 'default', sessionId };
    const session = await harness.service.open(sessionId);
    await session.addItems(items('secret'));
    const { dekId } = (await harness.storage.read(ref, (scope) => scope.dataKeys.findActive()))!;
    await session.clearSession();
    const record = await harness.storage.read(ref, (scope) => scope.dataKeys.findById(dekId));
    expect(record?.state ?? 'destroyed').toBe('destroyed');
    expect(await session.getItems()).toEqual([]);
  });
});

describe('EncryptedSession: plaintext does not linger', () => {
  it('zeroes each decrypted payload once it is decoded', async () => {
    const opened: Buffer[] = [];
    const recording: ItemCipher = {
      seal: (dataKey, binding, payload) => envelopeItemCipher.seal(dataKey, binding, payload),
      open: (dataKey, binding, stored) => {
        const payload = envelopeItemCipher.open(dataKey, binding, stored);
        opened.push(payload);
        return payload;
      },
    };
    await harness.service.open(sessionId);
    const session = createEncryptedSessionWithCipher(defaultContext(), recording);
    await session.addItems(items('canary-one', 'canary-two'));
    expect(texts(await session.getItems())).toEqual(['canary-one', 'canary-two']);
    expect(texts(await session.getItems(1))).toEqual(['canary-two']);
    expect(opened).toHaveLength(3);
    for (const payload of opened) {
      expect(payload.length).toBeGreaterThan(0);
      expect(payload.every((byte) => byte === 0)).toBe(true);
    }
  });
});

describe('EncryptedSession: the cipher is not a public option', () => {
  it('ignores a cipher put on the context: items are sealed all the same', async () => {
    await harness.service.open(sessionId);
    const nullCipher: ItemCipher = {
      seal: (_dataKey, _binding, payload) => Buffer.from(payload),
      open: (_dataKey, _binding, stored) => Buffer.from(stored),
    };
    const session = new EncryptedSession({
      ...defaultContext(),
      cipher: nullCipher,
    } as EncryptedSessionContext);
    await session.addItems(items('canary-sealed'));
    const [row] = await storedRows(defaultRef(), 1);
    expect(row.ciphertext.includes('canary-sealed')).toBe(false);
    expect(texts(await (await harness.service.open(sessionId)).getItems())).toEqual([
      'canary-sealed',
    ]);
  });

  it('offers no way to swap it from the package entry point', async () => {
    const entry: Record<string, unknown> = await import('../../src/index.js');
    expect(entry).not.toHaveProperty('envelopeItemCipher');
    expect(entry).not.toHaveProperty('createEncryptedSessionWithCipher');
    expect(entry).not.toHaveProperty('ITEM_CIPHER_OVERRIDE');
  });
});

describe('EncryptedSession.applyHistoryTransaction: preconditions and replays', () => {
  let session: EncryptedSession;
  beforeEach(async () => {
    session = await harness.service.open(sessionId);
  });
  const replace = (operationId: string, expected: string[], replacement: string[]) =>
    session.applyHistoryTransaction({
      operationId,
      transaction: {
        type: 'replace_suffix',
        expectedSuffix: items(...expected),
        replacement: items(...replacement),
      },
    });

  it('refuses an expected suffix longer than a history that matches its start', async () => {
    await session.addItems(items('a'));
    await expect(replace('op-r', ['a', 'b'], ['summary'])).rejects.toBeInstanceOf(
      HistoryConflictError,
    );
    expect(texts(await session.getItems())).toEqual(['a']);
  });

  it('refuses an expected suffix longer than a history that matches its end', async () => {
    await session.addItems(items('b'));
    await expect(replace('op-r', ['a', 'b'], ['summary'])).rejects.toBeInstanceOf(
      HistoryConflictError,
    );
    expect(texts(await session.getItems())).toEqual(['b']);
  });

  it('refuses a replace_suffix operation id reused with another replacement', async () => {
    await session.addItems(items('a', 'b'));
    await replace('op-r', ['b'], ['summary']);
    await expect(replace('op-r', ['b'], ['other summary'])).rejects.toBeInstanceOf(
      HistoryConflictError,
    );
    expect(texts(await session.getItems())).toEqual(['a', 'summary']);
  });

  it('refuses a replace_suffix operation id reused with another expected suffix', async () => {
    await session.addItems(items('a', 'b'));
    await replace('op-r', ['b'], ['summary']);
    await expect(replace('op-r', ['a', 'b'], ['summary'])).rejects.toBeInstanceOf(
      HistoryConflictError,
    );
    await expect(replace('op-r', [], ['summary'])).rejects.toBeInstanceOf(HistoryConflictError);
    expect(texts(await session.getItems())).toEqual(['a', 'summary']);
  });

  it('refuses an operation id reused for the other transaction type with the same items', async () => {
    await session.applyHistoryTransaction({
      operationId: 'op-x',
      transaction: { type: 'append_items', items: items('s') },
    });
    await expect(replace('op-x', [], ['s'])).rejects.toBeInstanceOf(HistoryConflictError);
    expect(texts(await session.getItems())).toEqual(['s']);
  });

  it('treats a repeated replace_suffix as applied, even after the history moved on', async () => {
    await session.addItems(items('a', 'b'));
    await replace('op-r', ['b'], ['summary']);
    await session.addItems(items('c'));
    await replace('op-r', ['b'], ['summary']);
    expect(texts(await session.getItems())).toEqual(['a', 'summary', 'c']);
  });

  it('recognises a replayed operation from another process with a cold key ring', async () => {
    await session.addItems(items('a', 'b'));
    await replace('op-r', ['b'], ['summary']);
    const other = await secondProcess().service.open(sessionId);
    await other.applyHistoryTransaction({
      operationId: 'op-r',
      transaction: {
        type: 'replace_suffix',
        expectedSuffix: items('b'),
        replacement: items('summary'),
      },
    });
    await expect(
      other.applyHistoryTransaction({
        operationId: 'op-r',
        transaction: { type: 'replace_suffix', expectedSuffix: items('b'), replacement: [] },
      }),
    ).rejects.toBeInstanceOf(HistoryConflictError);
    expect(texts(await other.getItems())).toEqual(['a', 'summary']);
  });
});
