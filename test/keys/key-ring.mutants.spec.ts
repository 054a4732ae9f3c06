import { describe, expect, it } from 'vitest';
import {
  EnvKeyProvider,
  IntegrityError,
  KeyDestroyedError,
  KeyProviderUnavailableError,
  KeyRing,
  MemorySessionStorage,
  type DataKeyContext,
  type GeneratedDataKey,
  type KeyProvider,
  type SessionRef,
  type SessionStorage,
  type WrappedDataKey,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { newSessionRecord } from '../support/session-records.js';

// Tests that kill mutants StrykerJS found alive in the key ring (issue 8, point 14): each one
// pins an outcome a broken key ring would otherwise get away with.

/** An env provider that keeps a copy of every plaintext key it hands out, and the buffer itself. */
class RecordingProvider implements KeyProvider {
  readonly name = 'recording';
  /** What each generateDataKey / unwrapDataKey returned: the live buffer and a copy of it. */
  readonly handedOut: { buffer: Buffer; copy: Buffer }[] = [];
  generateCalls = 0;
  unwrapCalls = 0;
  /** Every generateDataKey waits for this before answering. */
  generateGate: Promise<void> = Promise.resolve();
  private readonly inner = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });

  activeKekId() {
    return this.inner.activeKekId();
  }
  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    this.generateCalls++;
    await this.generateGate;
    const generated = await this.inner.generateDataKey(context);
    this.handedOut.push({ buffer: generated.plaintext, copy: Buffer.from(generated.plaintext) });
    return generated;
  }
  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer> {
    this.unwrapCalls++;
    const plaintext = await this.inner.unwrapDataKey(wrapped, context);
    this.handedOut.push({ buffer: plaintext, copy: Buffer.from(plaintext) });
    return plaintext;
  }
  rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.inner.rewrapDataKey(wrapped, context);
  }
  /** The real key of a stored data key, unwrapped outside any key ring. */
  async plaintextOf(storage: SessionStorage, ref: SessionRef, dekId: string): Promise<Buffer> {
    const record = (await storage.read(ref, (scope) => scope.dataKeys.findById(dekId)))!;
    return this.inner.unwrapDataKey(
      { kekId: record.kekId, wrappedKey: record.wrappedKey },
      { tenantId: record.tenantId, sessionId: record.sessionId, dekId },
    );
  }
}

const zeroKey = Buffer.alloc(32);

async function storageWithSession(ref: SessionRef = { tenantId: 't', sessionId: 's' }) {
  const storage = new MemorySessionStorage();
  await storage.transaction(ref, (scope) => scope.session.insertIfAbsent(newSessionRecord(ref)));
  return { storage, ref };
}

describe('KeyRing: the key bytes it hands out', () => {
  it('seals new sessions with the generated key, not with zero bytes', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const ring = new KeyRing(storage, provider);
    const dataKey = await ring.keyForWrite(ref, null);
    expect(dataKey.key.equals(zeroKey)).toBe(false);
    expect(dataKey.key.equals(provider.handedOut[0].copy)).toBe(true);
    expect(dataKey.key.equals(await provider.plaintextOf(storage, ref, dataKey.dekId))).toBe(true);
  });

  it('opens a stored key to its unwrapped bytes on a cold read', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const { dekId } = await new KeyRing(storage, provider).keyForWrite(ref, null);
    const dataKey = await new KeyRing(storage, provider).keyForRead(ref, dekId);
    expect(provider.unwrapCalls).toBe(1);
    expect(dataKey.key.equals(zeroKey)).toBe(false);
    expect(dataKey.key.equals(await provider.plaintextOf(storage, ref, dekId))).toBe(true);
  });

  it("zeroes the provider's plaintext buffers once it holds its own copy", async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const { dekId } = await new KeyRing(storage, provider).keyForWrite(ref, null);
    const cold = await new KeyRing(storage, provider).keyForRead(ref, dekId);
    expect(provider.handedOut).toHaveLength(2);
    for (const { buffer } of provider.handedOut) expect(buffer.equals(zeroKey)).toBe(true);
    // Its own memory: zeroing the provider's buffer did not zero the cached key.
    expect(cold.key.equals(provider.handedOut[1].copy)).toBe(true);
    expect(cold.key.buffer).not.toBe(provider.handedOut[1].buffer.buffer);
  });

  it('zeroes a key it evicts and marks it revoked', async () => {
    const { storage, ref } = await storageWithSession();
    const ring = new KeyRing(storage, new RecordingProvider());
    const dataKey = await ring.keyForWrite(ref, null);
    expect(dataKey.revoked).toBe(false);
    ring.clear();
    expect(dataKey.revoked).toBe(true);
    expect(dataKey.key.equals(zeroKey)).toBe(true);
    expect(ring.stats().cachedKeys).toBe(0);
  });
});

describe('KeyRing: forgetting a session', () => {
  it("zeroes and drops only that session's keys", async () => {
    const storage = new MemorySessionStorage();
    const provider = new RecordingProvider();
    const ring = new KeyRing(storage, provider);
    const a = { tenantId: 't', sessionId: 'a' };
    const b = { tenantId: 't', sessionId: 'b' };
    const otherTenant = { tenantId: 'u', sessionId: 'a' };
    for (const ref of [a, b, otherTenant]) await storageWithSessionIn(storage, ref);
    const keyA = await ring.keyForWrite(a, null);
    const keyB = await ring.keyForWrite(b, null);
    const keyOther = await ring.keyForWrite(otherTenant, null);
    ring.forgetSession(a);
    expect(keyA.revoked).toBe(true);
    expect(keyA.key.equals(zeroKey)).toBe(true);
    expect([keyB.revoked, keyOther.revoked]).toEqual([false, false]);
    expect(ring.stats().cachedKeys).toBe(2);
    // The next write of the session looks in storage again instead of reusing the dropped key.
    const again = await ring.keyForWrite(a, null);
    expect(again.revoked).toBe(false);
    expect(again.key.equals(zeroKey)).toBe(false);
  });
});

async function storageWithSessionIn(storage: SessionStorage, ref: SessionRef) {
  await storage.transaction(ref, (scope) => scope.session.insertIfAbsent(newSessionRecord(ref)));
}

describe('KeyRing: two processes creating the first key at once', () => {
  it("adopts the stored winner's key and zeroes the key that lost", async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    let open!: () => void;
    // Both rings read "no key yet" before either has one generated.
    provider.generateGate = new Promise((resolve) => (open = resolve));
    const first = new KeyRing(storage, provider);
    const second = new KeyRing(storage, provider);
    const pending = Promise.all([first.keyForWrite(ref, null), second.keyForWrite(ref, null)]);
    await waitUntil(() => provider.generateCalls === 2);
    open();
    const [a, b] = await pending;
    const stored = await storage.read(ref, (scope) => scope.dataKeys.findActive());
    expect(a.dekId).toBe(stored!.dekId);
    expect(b.dekId).toBe(stored!.dekId);
    expect(a.key.equals(b.key)).toBe(true);
    expect(await storage.read(ref, (scope) => scope.dataKeys.maxGeneration())).toBe(1);
    // The loser's generated plaintext is wiped, not cached.
    const lost = provider.handedOut.find(({ copy }) => !copy.equals(a.key))!;
    expect(lost.buffer.equals(zeroKey)).toBe(true);
    expect(first.stats().cachedKeys + second.stats().cachedKeys).toBe(2);
  });
});

describe('KeyRing: rotation', () => {
  it('retires the previous generation so the session has one active key', async () => {
    const { storage, ref } = await storageWithSession();
    const ring = new KeyRing(storage, new RecordingProvider());
    const first = await ring.keyForWrite(ref, null);
    const second = await ring.rotate(ref, null, 10);
    expect(second.generation).toBe(2);
    expect(second.firstSeq).toBe(10);
    expect(second.dekId).not.toBe(first.dekId);
    const old = await storage.read(ref, (scope) => scope.dataKeys.findById(first.dekId));
    expect(old!.state).toBe('retiring');
    expect((await storage.read(ref, (scope) => scope.dataKeys.findActive()))!.dekId).toBe(
      second.dekId,
    );
    // A retired key still opens old items, and writes now go to the new one.
    expect((await ring.keyForRead(ref, first.dekId)).revoked).toBe(false);
    expect((await ring.keyForWrite(ref, null)).dekId).toBe(second.dekId);
  });

  it('uses a generation another writer already started past firstSeq', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const ring = new KeyRing(storage, provider);
    await ring.keyForWrite(ref, null);
    const rotated = await new KeyRing(storage, provider).rotate(ref, null, 10);
    const reused = await ring.rotate(ref, null, 10);
    expect(reused.dekId).toBe(rotated.dekId);
    expect(await storage.read(ref, (scope) => scope.dataKeys.maxGeneration())).toBe(2);
  });
});

describe('KeyRing: destroyed keys', () => {
  it('refuses to load a destroyed key, even for a write', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const { dekId } = await new KeyRing(storage, provider).keyForWrite(ref, null);
    await storage.transaction(ref, (scope) => scope.dataKeys.destroyAll(1));
    const cold = new KeyRing(storage, provider);
    await expect(cold.keyForRead(ref, dekId)).rejects.toBeInstanceOf(KeyDestroyedError);
    expect(provider.unwrapCalls).toBe(0);
    // After a clear the next write starts the next generation instead of reusing a number.
    expect((await cold.keyForWrite(ref, null)).generation).toBe(2);
  });

  it('reports an unknown key id as tampering (IntegrityError) without calling the provider', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const ring = new KeyRing(storage, provider);
    await expect(
      ring.keyForRead(ref, '00000000-0000-4000-8000-000000000000'),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(provider.unwrapCalls).toBe(0);
  });
});

describe('KeyRing: provider failures', () => {
  it('reports an untyped provider failure as retryable without its message', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    provider.generateDataKey = async () => {
      throw Object.assign(new Error('secret-canary in the message'), { code: 'ECONNRESET' });
    };
    const ring = new KeyRing(storage, provider, {
      providerMaxAttempts: 2,
      providerRetryBaseDelayMs: 1,
    });
    const error = await ring.keyForWrite(ref, null).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect((error as KeyProviderUnavailableError).retryable).toBe(true);
    expect((error as Error).message).not.toContain('secret-canary');
    expect(((error as Error).cause as Error).message).toBe('Error (ECONNRESET)');
    expect(ring.stats()).toMatchObject({
      providerCalls: 2,
      providerFailures: 2,
      providerRetries: 1,
    });
  });
});

/** Polls a condition on the event loop (the rings run on microtasks and storage promises). */
async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(condition()).toBe(true);
}

describe('KeyRing: keys are bound to their session', () => {
  it.each([
    ['another tenant', { tenantId: 'u', sessionId: 's' }],
    ['another session', { tenantId: 't', sessionId: 'other' }],
  ])('refuses a key of %s, cached or not', async (_what, wrongRef) => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const warm = new KeyRing(storage, provider);
    const { dekId } = await warm.keyForWrite(ref, null);
    await expect(warm.keyForRead(wrongRef, dekId)).rejects.toBeInstanceOf(IntegrityError);
    const cold = new KeyRing(storage, provider);
    await expect(cold.keyForRead(wrongRef, dekId)).rejects.toBeInstanceOf(IntegrityError);
    expect((await cold.keyForRead(ref, dekId)).dekId).toBe(dekId);
  });
});

describe('KeyRing: warm sessions', () => {
  it('serves the write key of a warm session without reading storage', async () => {
    const { storage, ref } = await storageWithSession();
    let reads = 0;
    const counting: SessionStorage = {
      backend: storage.backend,
      read: (readRef, work) => {
        reads++;
        return storage.read(readRef, work);
      },
      transaction: (writeRef, work) => storage.transaction(writeRef, work),
      close: () => storage.close(),
    };
    const ring = new KeyRing(counting, new RecordingProvider());
    const first = await ring.keyForWrite(ref, null);
    const readsAfterFirst = reads;
    const second = await ring.keyForWrite(ref, null);
    expect(second).toBe(first);
    expect(reads).toBe(readsAfterFirst);
    expect(ring.stats()).toMatchObject({ cacheHits: 1 });
  });

  it('starts the first key of a cleared session at the next sequence number', async () => {
    const { storage, ref } = await storageWithSession();
    await storage.transaction(ref, (scope) => scope.session.reserveSequence(4, 1));
    const ring = new KeyRing(storage, new RecordingProvider());
    expect((await ring.keyForWrite(ref, null)).firstSeq).toBe(5);
  });

  it('zeroes a cached key once it is older than cacheMaxAgeMs', async () => {
    const { storage, ref } = await storageWithSession();
    const ring = new KeyRing(storage, new RecordingProvider(), { cacheMaxAgeMs: 0 });
    const first = await ring.keyForWrite(ref, null);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const again = await ring.keyForRead(ref, first.dekId);
    expect(first.revoked).toBe(true);
    expect(first.key.equals(zeroKey)).toBe(true);
    expect(again.key.equals(zeroKey)).toBe(false);
    expect(ring.stats().cachedKeys).toBe(1);
  });
});

describe('KeyRing: provider failure labels', () => {
  it.each([
    ['a numeric code', Object.assign(new Error('x'), { code: 503 }), 'Error (503)'],
    ['no code', Object.assign(new TypeError('x')), 'TypeError'],
    ['a thrown non-error', 'secret-canary', 'Error'],
    ['an object code', Object.assign(new Error('x'), { code: { deep: 1 } }), 'Error'],
  ])('labels a failure with %s by name and code only', async (_what, thrown, label) => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    provider.generateDataKey = () => Promise.reject(thrown);
    const ring = new KeyRing(storage, provider, { providerMaxAttempts: 1 });
    const error = await ring.keyForWrite(ref, null).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect(((error as Error).cause as Error).message).toBe(label);
  });
});

describe('KeyRing: expired keys', () => {
  it('zeroes an expired key even when reloading it fails', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const ring = new KeyRing(storage, provider, { cacheMaxAgeMs: 0 });
    const first = await ring.keyForWrite(ref, null);
    await new Promise((resolve) => setTimeout(resolve, 5));
    provider.unwrapDataKey = () => Promise.reject(new IntegrityError('damaged wrapping'));
    await expect(ring.keyForRead(ref, first.dekId)).rejects.toBeInstanceOf(IntegrityError);
    expect(first.revoked).toBe(true);
    expect(first.key.equals(zeroKey)).toBe(true);
    expect(ring.stats().cachedKeys).toBe(0);
  });
});

describe('KeyRing: concurrent loads of different keys', () => {
  it('gives each of two cold sessions its own key, for reads and for writes', async () => {
    const storage = new MemorySessionStorage();
    const provider = new RecordingProvider();
    const a = { tenantId: 't', sessionId: 'a' };
    const b = { tenantId: 't', sessionId: 'b' };
    await storageWithSessionIn(storage, a);
    await storageWithSessionIn(storage, b);
    const writers = new KeyRing(storage, provider);
    const [writeA, writeB] = await Promise.all([
      writers.keyForWrite(a, null),
      writers.keyForWrite(b, null),
    ]);
    expect([writeA.sessionId, writeB.sessionId]).toEqual(['a', 'b']);
    const readers = new KeyRing(storage, provider);
    const [readA, readB] = await Promise.all([
      readers.keyForRead(a, writeA.dekId),
      readers.keyForRead(b, writeB.dekId),
    ]);
    expect([readA.dekId, readB.dekId]).toEqual([writeA.dekId, writeB.dekId]);
    const [rotatedA, rotatedB] = await Promise.all([
      writers.rotate(a, null, 5),
      writers.rotate(b, null, 5),
    ]);
    expect([rotatedA.sessionId, rotatedB.sessionId]).toEqual(['a', 'b']);
  });

  it('hands two flights that load the same key at once the one cached copy, and wipes both unwraps', async () => {
    const { storage, ref } = await storageWithSession();
    const provider = new RecordingProvider();
    const { dekId } = await new KeyRing(storage, provider).keyForWrite(ref, null);
    // Each unwrap waits until both flights have asked for one.
    const unwrap = provider.unwrapDataKey.bind(provider);
    let release!: () => void;
    const bothAsked = new Promise<void>((resolve) => (release = resolve));
    let asked = 0;
    const unwrapped: Buffer[] = [];
    provider.unwrapDataKey = async (wrapped, context) => {
      if (++asked === 2) release();
      await bothAsked;
      const plaintext = await unwrap(wrapped, context);
      unwrapped.push(plaintext);
      return plaintext;
    };
    const ring = new KeyRing(storage, provider);
    const [write, read] = await Promise.all([
      ring.keyForWrite(ref, null),
      ring.keyForRead(ref, dekId),
    ]);
    expect(ring.stats().cachedKeys).toBe(1);
    // One copy for both: replacing it would zero the key a caller is about to seal with, and
    // neither unwrapped buffer is left holding the key.
    expect(write).toBe(read);
    expect(write.revoked).toBe(false);
    expect(unwrapped.map((buffer) => buffer.every((byte) => byte === 0))).toEqual([true, true]);
  });

  it('evicts the least recently used key, not the oldest loaded', async () => {
    const storage = new MemorySessionStorage();
    const provider = new RecordingProvider();
    const refs = ['a', 'b', 'c'].map((sessionId) => ({ tenantId: 't', sessionId }));
    for (const ref of refs) await storageWithSessionIn(storage, ref);
    const ids: string[] = [];
    for (const ref of refs)
      ids.push((await new KeyRing(storage, provider).keyForWrite(ref, null)).dekId);
    const ring = new KeyRing(storage, provider, { cacheMaxEntries: 2 });
    const keyA = await ring.keyForRead(refs[0], ids[0]);
    const keyB = await ring.keyForRead(refs[1], ids[1]);
    await ring.keyForRead(refs[0], ids[0]);
    await ring.keyForRead(refs[2], ids[2]);
    expect(keyA.revoked).toBe(false);
    expect(keyB.revoked).toBe(true);
  });

  it('counts no cache miss for the first write of a session', async () => {
    const { storage, ref } = await storageWithSession();
    const ring = new KeyRing(storage, new RecordingProvider());
    await ring.keyForWrite(ref, null);
    expect(ring.stats()).toMatchObject({ cacheHits: 0, cacheMisses: 0 });
  });
});
