import { describe, expect, it } from 'vitest';
import {
  MemorySessionStorage,
  ShuttingDownError,
  supportsMaintenance,
  type SessionStorage,
  type StorageMaintenance,
} from '../../src/index.js';
import { DrainingSessionStorage } from '../../src/storage/index.js';
import { newSessionRecord } from '../support/session-records.js';
import { rejectionOf } from '../support/thrown-by.js';

// Issue 9, point 6: closing storage lets the units of work in flight finish, refuses new ones
// with a typed error, and closes the adapter only after the last one.

const ref = { tenantId: 't', sessionId: 's' };

/** A memory adapter that records when it was closed. */
function recordingAdapter(events: string[]): SessionStorage {
  const adapter = new MemorySessionStorage();
  const close = adapter.close.bind(adapter);
  adapter.close = async () => {
    events.push('adapter closed');
    await close();
  };
  return adapter;
}

describe('DrainingSessionStorage', () => {
  it('lets a unit in flight commit before the adapter closes', async () => {
    const events: string[] = [];
    const storage = new DrainingSessionStorage(recordingAdapter(events));
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const unit = storage.transaction(ref, async (scope) => {
      await released;
      await scope.session.insertIfAbsent(newSessionRecord(ref));
      events.push('unit committed');
    });
    const closing = storage.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual([]);
    release();
    await unit;
    await closing;
    expect(events).toEqual(['unit committed', 'adapter closed']);
  });

  it('refuses units that start after close began, without running them', async () => {
    const storage = new DrainingSessionStorage(new MemorySessionStorage());
    void storage.close();
    let ran = false;
    const refused = await rejectionOf(() =>
      storage.read(ref, async () => {
        ran = true;
      }),
    );
    expect(refused).toBeInstanceOf(ShuttingDownError);
    expect(refused.message).toContain('nothing was stored');
    expect(ran).toBe(false);
  });

  it('counts maintenance scans as units too', async () => {
    const storage = new DrainingSessionStorage(new MemorySessionStorage());
    expect(supportsMaintenance(storage)).toBe(true);
    await storage.close();
    if (!supportsMaintenance(storage)) throw new Error('maintenance lost');
    expect(await rejectionOf(() => storage.maintenance.countDataKeysByKek())).toBeInstanceOf(
      ShuttingDownError,
    );
  });

  it('passes the expired-item scan through, counted as a unit too, and none for an adapter without it', async () => {
    const storage = new DrainingSessionStorage(new MemorySessionStorage());
    if (!supportsMaintenance(storage)) throw new Error('maintenance lost');
    expect(await storage.maintenance.listExpiredItems!(Date.now(), undefined, 10)).toEqual({
      items: [],
      cursor: undefined,
    });
    await storage.close();
    expect(
      await rejectionOf(() => storage.maintenance.listExpiredItems!(Date.now(), undefined, 10)),
    ).toBeInstanceOf(ShuttingDownError);
    const memory = new MemorySessionStorage();
    // An adapter from before the scan: the other maintenance methods only.
    const withoutScan: StorageMaintenance = {
      supported: true,
      listDataKeysWrappedByOtherKek: (kekId, cursor, limit) =>
        memory.maintenance.listDataKeysWrappedByOtherKek(kekId, cursor, limit),
      countDataKeysByKek: () => memory.maintenance.countDataKeysByKek(),
    };
    const olderAdapter: SessionStorage = {
      backend: 'older',
      read: (at, work) => memory.read(at, work),
      transaction: (at, work) => memory.transaction(at, work),
      maintenance: withoutScan,
      close: () => memory.close(),
    };
    const wrapped = new DrainingSessionStorage(olderAdapter).maintenance;
    expect(wrapped && 'listExpiredItems' in wrapped).toBe(false);
  });

  it('passes job leases through, counted as units too, and none for an adapter without them', async () => {
    const storage = new DrainingSessionStorage(new MemorySessionStorage());
    const lease = await storage.leases!.acquire('purge', 'replica-a', 30_000);
    expect(lease).toMatchObject({ job: 'purge', owner: 'replica-a', token: 1 });
    await storage.close();
    expect(await rejectionOf(() => storage.leases!.renew(lease!, 30_000))).toBeInstanceOf(
      ShuttingDownError,
    );
    const memory = new MemorySessionStorage();
    const hostAdapter: SessionStorage = {
      backend: 'host',
      read: (at, work) => memory.read(at, work),
      transaction: (at, work) => memory.transaction(at, work),
      close: () => memory.close(),
    };
    expect(new DrainingSessionStorage(hostAdapter).leases).toBeUndefined();
  });

  it('closes the adapter once however often it is closed', async () => {
    const events: string[] = [];
    const storage = new DrainingSessionStorage(recordingAdapter(events));
    await Promise.all([storage.close(), storage.close()]);
    await storage.close();
    expect(events).toEqual(['adapter closed']);
  });
});
