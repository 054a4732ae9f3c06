import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  KekRotationService,
  KeyProviderUnavailableError,
  KeyRing,
  ShuttingDownError,
  type DataKeyContext,
  type DataKeyPage,
  type SessionStorage,
  type StorageMaintenance,
  type WrappedDataKey,
  supportsMaintenance,
} from '../../src/index.js';
import { Gate } from '../support/gate.js';
import { RotatingEnvProvider } from '../support/rotating-env-provider.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

// Tests that kill mutants StrykerJS found alive in KEK rotation (issue 8, point 14): batch
// accounting, the report's counts, and one damaged wrapping not stopping the run.

/** A provider whose rewrap fails its integrity check for the data keys listed in `damaged`. */
class DamagingProvider extends RotatingEnvProvider {
  readonly damaged = new Set<string>();
  override rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext) {
    if (this.damaged.has(context.dekId)) {
      return Promise.reject(new IntegrityError('The data key could not be unwrapped'));
    }
    return super.rewrapDataKey(wrapped, context);
  }
}

let harness: SessionHarness;
let provider: DamagingProvider;
let dekIds: string[];

beforeEach(async () => {
  provider = new DamagingProvider();
  harness = await memoryHarness({ provider });
  dekIds = [];
  for (let i = 0; i < 5; i++) {
    const session = await harness.service.open(`s${i}`);
    await session.addItems([userMessage(`item ${i}`)]);
    const key = await harness.storage.read({ tenantId: 'default', sessionId: `s${i}` }, (scope) =>
      scope.dataKeys.findActive(),
    );
    dekIds.push(key!.dekId);
  }
  provider.rotate();
});
afterEach(async () => {
  await harness.close();
});

/** `storage` with its maintenance scans replaced by `scans` (given the real ones). */
function withScans(
  storage: SessionStorage,
  scans: (real: StorageMaintenance) => Partial<StorageMaintenance>,
): SessionStorage {
  if (!supportsMaintenance(storage)) throw new Error(`${storage.backend} has no maintenance`);
  const real = storage.maintenance;
  return {
    backend: storage.backend,
    read: (ref, work) => storage.read(ref, work),
    transaction: (ref, work) => storage.transaction(ref, work),
    close: () => storage.close(),
    maintenance: {
      supported: true,
      listDataKeysWrappedByOtherKek: (kekId, cursor, limit) =>
        real.listDataKeysWrappedByOtherKek(kekId, cursor, limit),
      countDataKeysByKek: () => real.countDataKeysByKek(),
      ...scans(real),
    },
  };
}

/** The same storage, with the key listing answering an empty page (with a cursor) first. */
function withEmptyFirstPage(storage: SessionStorage): SessionStorage {
  let first = true;
  return withScans(storage, (real) => ({
    listDataKeysWrappedByOtherKek: async (kekId, cursor, limit): Promise<DataKeyPage> => {
      if (first) {
        first = false;
        return { records: [], cursor: '' };
      }
      return real.listDataKeysWrappedByOtherKek(kekId, cursor, limit);
    },
  }));
}

describe('KekRotationService.rewrapAll', () => {
  it('stops after maxBatches pages of batchSize keys and reports what remains', async () => {
    const rotation = new KekRotationService(harness.storage, harness.keyRing);
    const report = await rotation.rewrapAll({ batchSize: 2, maxBatches: 1 });
    expect(report).toEqual({
      rewrapped: 2,
      alreadyMoved: 0,
      failed: 0,
      remaining: 3,
      stoppedForShutdown: false,
    });
    const rest = await rotation.rewrapAll({ batchSize: 2, maxBatches: 2 });
    expect(rest).toEqual({
      rewrapped: 3,
      alreadyMoved: 0,
      failed: 0,
      remaining: 0,
      stoppedForShutdown: false,
    });
  });

  it('does not count a page that held no keys as a batch', async () => {
    const storage = withEmptyFirstPage(harness.storage);
    const rotation = new KekRotationService(storage, new KeyRing(storage, provider));
    const report = await rotation.rewrapAll({ batchSize: 5, maxBatches: 1 });
    expect(report.rewrapped).toBe(5);
    expect(report.remaining).toBe(0);
  });

  it('skips a key whose wrapping fails its integrity check and moves every other one', async () => {
    provider.damaged.add(dekIds[1]);
    const rotation = new KekRotationService(harness.storage, harness.keyRing);
    const report = await rotation.rewrapAll({ batchSize: 2 });
    expect(report).toEqual({
      rewrapped: 4,
      alreadyMoved: 0,
      failed: 1,
      remaining: 1,
      stoppedForShutdown: false,
    });
    const left = await harness.storage.read({ tenantId: 'default', sessionId: 's1' }, (scope) =>
      scope.dataKeys.findById(dekIds[1]),
    );
    expect(left!.kekId).toBe('env:k1');
  });

  it('counts keys another run moved first as already moved', async () => {
    const storage = harness.storage;
    // A run whose page was read before another run moved every key.
    let stale: DataKeyPage | undefined;
    const slow = withScans(storage, (real) => ({
      listDataKeysWrappedByOtherKek: async (kekId, cursor, limit) => {
        stale ??= await real.listDataKeysWrappedByOtherKek(kekId, cursor, limit);
        return stale;
      },
    }));
    await new KekRotationService(slow, harness.keyRing).rewrapAll({ batchSize: 10, maxBatches: 1 });
    // Now replay the same (stale) page: every key on it has moved already.
    const report = await new KekRotationService(slow, harness.keyRing).rewrapAll({
      batchSize: 10,
      maxBatches: 1,
    });
    expect(report).toEqual({
      rewrapped: 0,
      alreadyMoved: 5,
      failed: 0,
      remaining: 0,
      stoppedForShutdown: false,
    });
  });

  it('uses pages of 100 keys by default', async () => {
    const rotation = new KekRotationService(harness.storage, harness.keyRing);
    expect(await rotation.rewrapAll({ maxBatches: 1 })).toMatchObject({ rewrapped: 5 });
  });
});

describe('KekRotationService.rewrapAll when the provider is down', () => {
  it('stops with the retryable error instead of counting keys as failed', async () => {
    provider.rewrapDataKey = () => Promise.reject(new KeyProviderUnavailableError('down'));
    const ring = new KeyRing(harness.storage, provider, { providerMaxAttempts: 1 });
    const rotation = new KekRotationService(harness.storage, ring);
    await expect(rotation.rewrapAll({ batchSize: 2 })).rejects.toBeInstanceOf(
      KeyProviderUnavailableError,
    );
    expect((await rotation.status()).remaining).toBe(5);
  });
});

/** The memory storage behind an adapter that declares cross-session scans unsupported. */
const unsupportedStorage = (): SessionStorage => ({
  backend: 'cluster-like',
  read: (ref, work) => harness.storage.read(ref, work),
  transaction: (ref, work) => harness.storage.transaction(ref, work),
  close: () => harness.storage.close(),
  maintenance: { supported: false, reason: 'this adapter cannot scan every node yet' },
});

describe('KekRotationService on a storage without cross-session scans', () => {
  it('refuses status() and rewrapAll() up front, naming the reason, moving nothing', async () => {
    const storage = unsupportedStorage();
    const rotation = new KekRotationService(storage, new KeyRing(storage, provider));
    await expect(rotation.status()).rejects.toThrow(/cannot scan every node yet/);
    await expect(rotation.rewrapAll()).rejects.toBeInstanceOf(ConfigurationError);
    const real = new KekRotationService(harness.storage, harness.keyRing);
    expect((await real.status()).remaining).toBe(5);
  });
});

describe('KekRotationService.stop (shutdown)', () => {
  it('ends a run after the key it is moving, and refuses new runs', async () => {
    const rotation = new KekRotationService(harness.storage, harness.keyRing);
    const gate = new Gate();
    const rewrap = provider.rewrapDataKey.bind(provider);
    let calls = 0;
    provider.rewrapDataKey = async (wrapped, context) => {
      if (calls++ === 0) await gate.pass();
      return rewrap(wrapped, context);
    };
    const running = rotation.rewrapAll({ batchSize: 10 });
    await gate.reached;
    const stopped = rotation.stop();
    gate.open();
    const report = await running;
    await stopped;
    expect(report).toEqual({
      rewrapped: 1,
      alreadyMoved: 0,
      failed: 0,
      remaining: 4,
      stoppedForShutdown: true,
    });
    await expect(rotation.rewrapAll()).rejects.toBeInstanceOf(ShuttingDownError);
  });
});
