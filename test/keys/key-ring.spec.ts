import { describe, expect, it } from 'vitest';
import {
  EnvKeyProvider,
  KeyProviderUnavailableError,
  KeyRing,
  MemorySessionStorage,
  type DataKeyContext,
  type KeyProvider,
  type WrappedDataKey,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/** Counts calls into a real env provider; can be switched off to simulate an outage. */
class CountingProvider implements KeyProvider {
  readonly name = 'counting';
  unwrapCalls = 0;
  generateCalls = 0;
  down = false;
  private readonly inner = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
  activeKekId() {
    return this.inner.activeKekId();
  }
  async generateDataKey(context: DataKeyContext) {
    this.generateCalls++;
    if (this.down) throw new Error('connect ECONNREFUSED');
    return this.inner.generateDataKey(context);
  }
  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    this.unwrapCalls++;
    if (this.down) throw new Error('connect ECONNREFUSED');
    await new Promise((resolve) => setTimeout(resolve, 5));
    return this.inner.unwrapDataKey(wrapped, context);
  }
  async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    if (this.down) throw new Error('connect ECONNREFUSED');
    return this.inner.rewrapDataKey(wrapped, context);
  }
}

async function ringWithKeys(sessionCount: number, options = {}) {
  const storage = new MemorySessionStorage();
  const provider = new CountingProvider();
  const writer = new KeyRing(storage, provider, options);
  const dekIds: string[] = [];
  for (let i = 0; i < sessionCount; i++) {
    const ref = { tenantId: 't', sessionId: `s${i}` };
    await storage.transaction((scope) =>
      scope.sessions.insertIfAbsent({
        ...ref,
        subjectId: null,
        createdAt: 0,
        lastActivityAt: 0,
        nextSeq: 1,
        itemTtlSeconds: null,
        legalHold: false,
      }),
    );
    dekIds.push((await writer.keyForWrite(ref, null)).dekId);
  }
  // A fresh ring, as in another process: nothing cached.
  return { storage, provider, ring: new KeyRing(storage, provider, options), dekIds };
}

describe('KeyRing', () => {
  it('makes one unwrap call for 100 concurrent first reads of one session', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(1);
    const ref = { tenantId: 't', sessionId: 's0' };
    const keys = await Promise.all(
      Array.from({ length: 100 }, () => ring.keyForRead(ref, dekIds[0])),
    );
    expect(provider.unwrapCalls).toBe(1);
    expect(new Set(keys).size).toBe(1);
  });

  it('serves a warm key without calling the provider', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(1);
    const ref = { tenantId: 't', sessionId: 's0' };
    await ring.keyForRead(ref, dekIds[0]);
    await ring.keyForRead(ref, dekIds[0]);
    expect(provider.unwrapCalls).toBe(1);
    expect(ring.stats()).toMatchObject({ cacheHits: 1, providerCalls: 1 });
  });

  it('holds at most cacheMaxEntries keys and zeroes the ones it evicts', async () => {
    const { ring, dekIds } = await ringWithKeys(3, { cacheMaxEntries: 2 });
    const first = await ring.keyForRead({ tenantId: 't', sessionId: 's0' }, dekIds[0]);
    await ring.keyForRead({ tenantId: 't', sessionId: 's1' }, dekIds[1]);
    await ring.keyForRead({ tenantId: 't', sessionId: 's2' }, dekIds[2]);
    expect(ring.stats().cachedKeys).toBe(2);
    expect(first.revoked).toBe(true);
    expect(first.key.equals(Buffer.alloc(32))).toBe(true);
  });

  it('reloads a key older than cacheMaxAgeMs', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(1, { cacheMaxAgeMs: 0 });
    const ref = { tenantId: 't', sessionId: 's0' };
    await ring.keyForRead(ref, dekIds[0]);
    await new Promise((resolve) => setTimeout(resolve, 2));
    await ring.keyForRead(ref, dekIds[0]);
    expect(provider.unwrapCalls).toBe(2);
  });

  it('keeps serving cached keys while the provider is down, and fails uncached ones as retryable', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(2);
    const warm = { tenantId: 't', sessionId: 's0' };
    await ring.keyForRead(warm, dekIds[0]);
    provider.down = true;
    await expect(ring.keyForRead(warm, dekIds[0])).resolves.toBeDefined();
    const cold = ring.keyForRead({ tenantId: 't', sessionId: 's1' }, dekIds[1]);
    await expect(cold).rejects.toBeInstanceOf(KeyProviderUnavailableError);
    await expect(cold).rejects.toMatchObject({ retryable: true });
    provider.down = false;
    await expect(
      ring.keyForRead({ tenantId: 't', sessionId: 's1' }, dekIds[1]),
    ).resolves.toBeDefined();
  });

  it('creates one data key for concurrent first writes of a session', async () => {
    const storage = new MemorySessionStorage();
    const provider = new CountingProvider();
    const ring = new KeyRing(storage, provider);
    const ref = { tenantId: 't', sessionId: 'new' };
    const keys = await Promise.all(Array.from({ length: 20 }, () => ring.keyForWrite(ref, null)));
    expect(provider.generateCalls).toBe(1);
    expect(new Set(keys.map((key) => key.dekId)).size).toBe(1);
  });
});
