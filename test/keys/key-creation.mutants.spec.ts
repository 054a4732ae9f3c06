import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  EnvKeyProvider,
  IntegrityError,
  KeyRing,
  MemorySessionStorage,
  StorageUnavailableError,
  type DataKeyContext,
  type GeneratedDataKey,
  type KeyProvider,
  type SessionRef,
  type SessionStorage,
  type SessionWriteScope,
  type WrappedDataKey,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';

// Tests that kill mutants StrykerJS found alive in the reworked key creation of the key ring
// (issue 8, point 14): a failed creation zeroes the key it generated, losing every race ends
// in a retryable error after a bounded number of tries, a warm session whose key was evicted
// still gets a key, and a key id read from storage reaches a message only when it looks like one.

/** An env provider that keeps every plaintext key it generates (the live buffer). */
class GeneratingProvider implements KeyProvider {
  readonly name = 'generating';
  readonly generated: Buffer[] = [];
  private readonly inner = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });

  activeKekId() {
    return this.inner.activeKekId();
  }
  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    const generated = await this.inner.generateDataKey(context);
    this.generated.push(generated.plaintext);
    return generated;
  }
  unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.inner.unwrapDataKey(wrapped, context);
  }
  rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    return this.inner.rewrapDataKey(wrapped, context);
  }
}

/** `inner` with its transactions' scopes passed through `patch`. */
function patchedTransactions(
  inner: SessionStorage,
  patch: (scope: SessionWriteScope) => SessionWriteScope,
): SessionStorage {
  return {
    backend: inner.backend,
    read: (ref, work) => inner.read(ref, work),
    transaction: (ref, work) => inner.transaction(ref, (scope) => work(patch(scope))),
    close: () => inner.close(),
  };
}

const newRef = (): SessionRef => ({ tenantId: 't', sessionId: `s-${randomUUID()}` });
const isZero = (buffer: Buffer) => buffer.every((byte) => byte === 0);

describe('KeyRing: creating a data key', () => {
  it('zeroes the generated key when storing it fails, and passes the error on', async () => {
    const provider = new GeneratingProvider();
    const inner = new MemorySessionStorage();
    const storage: SessionStorage = {
      backend: inner.backend,
      read: (ref, work) => inner.read(ref, work),
      transaction: async () => {
        throw new StorageUnavailableError('down');
      },
      close: () => inner.close(),
    };
    const ring = new KeyRing(storage, provider);
    await expect(ring.keyForWrite(newRef(), null)).rejects.toBeInstanceOf(StorageUnavailableError);
    expect(provider.generated).toHaveLength(1);
    expect(isZero(provider.generated[0])).toBe(true);
  });

  it('gives up with a retryable error after five lost races, each key zeroed', async () => {
    const provider = new GeneratingProvider();
    const storage = patchedTransactions(new MemorySessionStorage(), (scope) => ({
      ...scope,
      dataKeys: { ...scope.dataKeys, insertIfAbsent: async () => false },
    }));
    const ring = new KeyRing(storage, provider);
    await expect(ring.keyForWrite(newRef(), null)).rejects.toBeInstanceOf(StorageUnavailableError);
    expect(provider.generated).toHaveLength(5);
    expect(provider.generated.every(isZero)).toBe(true);
  });

  it('hands a warm session a live key after its cached key was evicted', async () => {
    const ring = new KeyRing(new MemorySessionStorage(), new GeneratingProvider(), {
      cacheMaxEntries: 1,
    });
    const a = newRef();
    const first = await ring.keyForWrite(a, null);
    await ring.keyForWrite(newRef(), null);
    expect(first.revoked).toBe(true);
    const again = await ring.keyForWrite(a, null);
    expect(again).toBeDefined();
    expect(again.revoked).toBe(false);
    expect(again.dekId).toBe(first.dekId);
  });
});

describe('KeyRing: a missing data key named in the error', () => {
  const ring = new KeyRing(new MemorySessionStorage(), new GeneratingProvider());
  const messageFor = async (dekId: string) => {
    const error = await ring.keyForRead(newRef(), dekId).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IntegrityError);
    return (error as Error).message;
  };

  it.each([randomUUID(), randomUUID().toUpperCase()])('names a well-formed id (%s)', async (id) => {
    expect(await messageFor(id)).toContain(id);
  });

  it.each([
    ['before', (id: string, canary: string) => `${canary}${id}`],
    ['after', (id: string, canary: string) => `${id}${canary}`],
  ])('leaves out an id with text %s a key id', async (_where, build) => {
    const canary = `canary${randomUUID().slice(0, 8)}`;
    expect(await messageFor(build(randomUUID(), canary))).not.toContain(canary);
  });
});
