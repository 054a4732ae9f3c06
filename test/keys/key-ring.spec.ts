import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EnvKeyProvider,
  IntegrityError,
  KeyProviderUnavailableError,
  KeyRing,
  MemorySessionStorage,
  type DataKeyContext,
  type KeyProvider,
  type SessionStorage,
  type SessionReadScope,
  type SessionRef,
  type WrappedDataKey,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { thrownBy } from '../support/thrown-by.js';
import { newSessionRecord } from '../support/session-records.js';

/** Counts calls into a real env provider; can be switched off to simulate an outage. */
class CountingProvider implements KeyProvider {
  readonly name = 'counting';
  unwrapCalls = 0;
  generateCalls = 0;
  down = false;
  /** The next this-many unwraps fail as a throttled request would. */
  throttleNext = 0;
  /** Every unwrap waits this long first (ms). */
  latencyMs = 5;
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
    await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    if (this.down) throw new Error('connect ECONNREFUSED');
    if (this.throttleNext > 0) {
      this.throttleNext--;
      throw new KeyProviderUnavailableError('throttled');
    }
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
    await storage.transaction(ref, (scope) => scope.session.insertIfAbsent(newSessionRecord(ref)));
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
    expect(ring.stats()).toMatchObject({ cacheHits: 1, cacheMisses: 1, providerCalls: 1 });
  });

  it('hands out a cached key without a call, only for the session it belongs to', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(2);
    const ref = { tenantId: 't', sessionId: 's0' };
    const before = ring.cachedKey(ref, dekIds[0]);
    const loaded = await ring.keyForRead(ref, dekIds[0]);
    expect({
      before,
      cached: ring.cachedKey(ref, dekIds[0]),
      otherSession: ring.cachedKey({ tenantId: 't', sessionId: 's1' }, dekIds[0]),
      unwrapCalls: provider.unwrapCalls,
    }).toEqual({ before: undefined, cached: loaded, otherSession: undefined, unwrapCalls: 1 });
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

  it('zeroes a key once it is older than cacheMaxAgeMs, without waiting to be asked for it', async () => {
    const { ring, dekIds } = await ringWithKeys(1, { cacheMaxAgeMs: 20 });
    const loaded = await ring.keyForRead({ tenantId: 't', sessionId: 's0' }, dekIds[0]);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(loaded.revoked).toBe(true);
    expect(loaded.key.equals(Buffer.alloc(32))).toBe(true);
    expect(ring.stats().cachedKeys).toBe(0);
  });

  it('reloads a key older than cacheMaxAgeMs', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(1, { cacheMaxAgeMs: 30 });
    const ref = { tenantId: 't', sessionId: 's0' };
    await ring.keyForRead(ref, dekIds[0]);
    const loaded = provider.unwrapCalls;
    await new Promise((resolve) => setTimeout(resolve, 60));
    await ring.keyForRead(ref, dekIds[0]);
    expect(provider.unwrapCalls).toBe(loaded + 1);
  });

  it('keeps serving cached keys while the provider is down, and fails uncached ones as retryable', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(2, { providerOutageCooldownMs: 0 });
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

  it('retries a throttled provider with backoff until it answers', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(1);
    provider.throttleNext = 2;
    await expect(
      ring.keyForRead({ tenantId: 't', sessionId: 's0' }, dekIds[0]),
    ).resolves.toBeDefined();
    expect(provider.unwrapCalls).toBe(3);
    expect(ring.stats()).toMatchObject({ providerRetries: 2, providerFailures: 2 });
  });

  it('does not retry a wrapped key that fails its integrity check', async () => {
    const { storage, provider, dekIds } = await ringWithKeys(1);
    // A provider that receives the stored wrapped key with one bit flipped.
    const tampered = new KeyRing(storage, {
      name: 'tampering',
      activeKekId: () => provider.activeKekId(),
      generateDataKey: (context) => provider.generateDataKey(context),
      rewrapDataKey: (wrapped, context) => provider.rewrapDataKey(wrapped, context),
      unwrapDataKey: (wrapped, context) => {
        const bytes = Buffer.from(wrapped.wrappedKey);
        bytes[bytes.length - 1] ^= 0x01;
        return provider.unwrapDataKey({ ...wrapped, wrappedKey: bytes }, context);
      },
    });
    await expect(
      tampered.keyForRead({ tenantId: 't', sessionId: 's0' }, dekIds[0]),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(provider.unwrapCalls).toBe(1);
    expect(tampered.stats().providerRetries).toBe(0);
  });

  it('gives up within its time budget when the provider stays down', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(1, {
      providerMaxAttempts: 100,
      providerRetryBudgetMs: 300,
    });
    provider.down = true;
    const started = Date.now();
    await expect(
      ring.keyForRead({ tenantId: 't', sessionId: 's0' }, dekIds[0]),
    ).rejects.toBeInstanceOf(KeyProviderUnavailableError);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(provider.unwrapCalls).toBeGreaterThan(1);
  });

  it('fails new sessions at once right after an outage, then probes the provider again', async () => {
    const { provider, ring, dekIds } = await ringWithKeys(3, { providerOutageCooldownMs: 200 });
    provider.down = true;
    await expect(
      ring.keyForRead({ tenantId: 't', sessionId: 's0' }, dekIds[0]),
    ).rejects.toBeInstanceOf(KeyProviderUnavailableError);
    const callsWhenDown = provider.unwrapCalls;
    const started = Date.now();
    await expect(
      ring.keyForRead({ tenantId: 't', sessionId: 's1' }, dekIds[1]),
    ).rejects.toBeInstanceOf(KeyProviderUnavailableError);
    expect(Date.now() - started).toBeLessThan(50);
    expect(provider.unwrapCalls).toBe(callsWhenDown);
    expect(ring.stats().providerFastFailures).toBe(1);
    provider.down = false;
    await new Promise((resolve) => setTimeout(resolve, 250));
    await expect(
      ring.keyForRead({ tenantId: 't', sessionId: 's2' }, dekIds[2]),
    ).resolves.toBeDefined();
  });
});

/** A gate a test opens by hand, and that tells when something has reached it. */
function gate() {
  let open!: () => void;
  let arrive!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (arrive = resolve));
  return {
    open,
    reached,
    /** Called by the code under test: marks arrival, then waits for the test. */
    pass: async () => {
      arrive();
      await opened;
    },
  };
}

/**
 * Storage whose read scope runs each call as a read of its own, as the SQL adapters do on a
 * server's pool (no snapshot across statements), with a hook before each call.
 */
function poolLikeStorage(
  inner: MemorySessionStorage,
  beforeCall: (call: string) => Promise<void>,
): SessionStorage {
  const scopeFor = (ref: SessionRef) =>
    new Proxy(
      {},
      {
        get: (_, repository: string) =>
          new Proxy(
            {},
            {
              get:
                (__, method: string) =>
                async (...args: unknown[]) => {
                  await beforeCall(`${repository}.${method}`);
                  return inner.read(ref, (real) => {
                    const target = (real as unknown as Record<string, Record<string, Function>>)[
                      repository
                    ];
                    return target[method].apply(target, args) as Promise<unknown>;
                  });
                },
            },
          ),
      },
    ) as unknown as SessionReadScope;
  return {
    backend: inner.backend,
    read: (ref, work) => work(scopeFor(ref)),
    transaction: (ref, work) => inner.transaction(ref, work),
    close: () => inner.close(),
  };
}

describe('KeyRing data key creation racing other processes', () => {
  const ref = { tenantId: 't', sessionId: 'raced' };

  async function storageWithSession() {
    const storage = new MemorySessionStorage();
    await storage.transaction(ref, (scope) => scope.session.insertIfAbsent(newSessionRecord(ref)));
    return storage;
  }

  it('creates the next generation, not an IntegrityError, when a clear destroyed the key another process created meanwhile', async () => {
    const storage = await storageWithSession();
    const inner = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    const paused = gate();
    let generateCalls = 0;
    const slowProvider: KeyProvider = {
      name: 'paused',
      activeKekId: () => inner.activeKekId(),
      generateDataKey: async (context) => {
        if (generateCalls++ === 0) await paused.pass();
        return inner.generateDataKey(context);
      },
      unwrapDataKey: (wrapped, context) => inner.unwrapDataKey(wrapped, context),
      rewrapDataKey: (wrapped, context) => inner.rewrapDataKey(wrapped, context),
    };
    const ringA = new KeyRing(storage, slowProvider);
    const ringB = new KeyRing(storage, inner);

    // A looks (no key, generation 0) and waits in the provider; B creates generation 1 and a
    // clear destroys it before A stores its own generation-1 key.
    const writeA = ringA.keyForWrite(ref, null);
    await paused.reached;
    await ringB.keyForWrite(ref, null);
    await storage.transaction(ref, (scope) => scope.dataKeys.destroyAll(Date.now()));
    paused.open();

    const keyA = await writeA;
    const active = await storage.read(ref, (scope) => scope.dataKeys.findActive());
    expect(active?.dekId).toBe(keyA.dekId);
    expect(keyA.generation).toBe(2);
  });

  it('never leaves two active keys when a first write races another process creating one', async () => {
    const storage = await storageWithSession();
    const provider = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    const paused = gate();
    let held = false;
    // A reads on a pool: it finds no active key, then (after B created one) the generation.
    const ringA = new KeyRing(
      poolLikeStorage(storage, async (call) => {
        if (call === 'dataKeys.maxGeneration' && !held) {
          held = true;
          await paused.pass();
        }
      }),
      provider,
    );
    const ringB = new KeyRing(storage, provider);

    const writeA = ringA.keyForWrite(ref, null);
    await paused.reached;
    const keyB = await ringB.keyForWrite(ref, null);
    paused.open();
    const keyA = await writeA;

    const states = await storage.read(ref, async (scope) => {
      const found = [];
      for (const dekId of new Set([keyA.dekId, keyB.dekId])) {
        found.push((await scope.dataKeys.findById(dekId))!.state);
      }
      return found;
    });
    expect(states.filter((state) => state === 'active')).toHaveLength(1);
    expect(keyA.dekId).toBe(keyB.dekId);
  });
});

describe('KeyRing options', () => {
  it.each([
    [
      'cacheMaxEntries',
      0,
      'options.keyCache.maxEntries must be a whole number of keys, at least 1 (default 10000)',
    ],
    [
      'cacheMaxAgeMs',
      -1,
      'options.keyCache.maxAgeMs must be a whole number of milliseconds, 0 or more (default 900000)',
    ],
    [
      'maxItemsPerDataKey',
      2 ** 28 + 1,
      'options.keys.maxItemsPerDataKey must be a whole number of items from 1 to 2^28 (default 268435456)',
    ],
    [
      'providerMaxAttempts',
      1.5,
      'options.keys.retry.maxAttempts must be a whole number of attempts from 1 to 100 (default 4)',
    ],
    [
      'providerRetryBaseDelayMs',
      -1,
      'options.keys.retry.baseDelayMs must be a whole number of milliseconds, 0 or more (default 50)',
    ],
    [
      'providerOutageCooldownMs',
      -1,
      'options.keys.retry.outageCooldownMs must be a whole number of milliseconds, 0 or more (default 1000)',
    ],
    [
      'providerRetryBudgetMs',
      '2000',
      'options.keys.retry.budgetMs must be a whole number of milliseconds, 0 or more (default 2000)',
    ],
  ])('refuses %s: %s with a message that says what to set', (name, value, message) => {
    const error = thrownBy(
      () => new KeyRing(new MemorySessionStorage(), new CountingProvider(), { [name]: value }),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(message);
  });

  it('accepts the bounds themselves, and explicit undefined as the default', () => {
    const ring = new KeyRing(new MemorySessionStorage(), new CountingProvider(), {
      cacheMaxEntries: 1,
      cacheMaxAgeMs: 0,
      maxItemsPerDataKey: 2 ** 28,
      providerMaxAttempts: 100,
      providerRetryBudgetMs: undefined,
    });
    expect(ring.stats().cachedKeys).toBe(0);
  });

  it('refuses an option it does not know, listing the ones it takes', () => {
    const error = thrownBy(
      () =>
        new KeyRing(new MemorySessionStorage(), new CountingProvider(), {
          maxEntries: 5,
        } as never),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(
      /^Unknown key ring option maxEntries; the key ring takes: cacheMaxEntries, /,
    );
  });
});
