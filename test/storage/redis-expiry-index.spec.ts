import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IntegrityError,
  InvalidArgumentError,
  LeaseLostError,
  type SessionRef,
  type StoredItem,
} from '../../src/index.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { SESSION_FIELDS } from '../../src/storage/redis/redis-record-codec.js';
import type { ExpiredItemPage, StorageMaintenance } from '../../src/storage/storage.ports.js';
import {
  createRedisTestStorage,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { newSessionRecord } from '../support/session-records.js';

/*
 * The per-item expiry index of the Redis adapter (a zset per session, kept by the commit script)
 * and the expired-item scan over it, on the shared standalone Redis; each test has a key prefix
 * of its own, so the scan sees only its own sessions. The Cluster runs in
 * redis-expiry-index-cluster.spec.ts.
 */

const up = await redisReadyFor('Redis expiry index spec');

const NOW = 1_767_000_000_000;
const DEK_ID = '00000000-0000-4000-8000-000000000001';

/** Drops the pins of running units from a lease hash, as if their time had run out. */
async function dropPins(client: Redis, leaseKey: string): Promise<void> {
  const fields = Object.keys(await client.hgetall(leaseKey)).filter((field) =>
    field.startsWith('pin:'),
  );
  if (fields.length > 0) await client.hdel(leaseKey, ...fields);
}

const job = (): string => `retention-${randomUUID()}`;

/** An item's place in the scan: tenant, session, seq, expiry. */
type Found = [string, string, number, number | null];

const foundOf = (page: ExpiredItemPage): Found[] =>
  page.items.map(({ tenantId, sessionId, item }) => [
    tenantId,
    sessionId,
    item.seq,
    item.expiresAt,
  ]);

describe.skipIf(!up)('Redis expiry index and expired-item scan', () => {
  let redis: RedisTestStorage;
  let maintenance: StorageMaintenance;
  let layout: RedisKeyLayout;

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    maintenance = redis.storage.maintenance as StorageMaintenance;
    layout = new RedisKeyLayout(redis.keyPrefix);
  });
  afterEach(async () => {
    await redis.cleanup();
  });

  /** Creates the session if needed and appends items with these expiries. */
  const append = (ref: SessionRef, expiries: Array<number | null>): Promise<StoredItem[]> =>
    redis.storage.transaction(ref, async (scope) => {
      await scope.session.insertIfAbsent(newSessionRecord(ref));
      const first = (await scope.session.reserveSequence(expiries.length, NOW))!;
      const items = expiries.map((expiresAt, index) => ({
        seq: first + index,
        dekId: DEK_ID,
        expiresAt,
        createdAt: NOW - 60_000,
        ciphertext: Buffer.from([0, 0xff, first + index]),
      }));
      await scope.items.insertMany(items);
      return items;
    });

  /** Every page at `now`, `limit` items each. */
  const scanAll = async (now: number, limit: number): Promise<ExpiredItemPage[]> => {
    const pages: ExpiredItemPage[] = [];
    let cursor: string | undefined;
    do {
      const page = await maintenance.listExpiredItems!(now, cursor, limit);
      pages.push(page);
      cursor = page.cursor;
      if (pages.length > 50) throw new Error('the scan does not end');
    } while (cursor !== undefined);
    return pages;
  };

  const indexOf = (ref: SessionRef) => redis.client.zrange(layout.forSession(ref).expiry, 0, -1);

  it('lists only expired items, by expiry, tenant and session bytes, then seq', async () => {
    const a: SessionRef = { tenantId: 'tenant-b', sessionId: 's-1' };
    const b: SessionRef = { tenantId: 'tenant-a', sessionId: 's-2' };
    const c: SessionRef = { tenantId: 'tenant-a', sessionId: 's-1' };
    await append(a, [NOW - 10, NOW + 1, null, NOW]);
    await append(b, [NOW - 10, NOW - 20]);
    await append(c, [null, NOW - 10, NOW + 5_000]);
    await append({ tenantId: 'tenant-c', sessionId: 'never' }, [null, null]);

    const [page, ...rest] = await scanAll(NOW, 100);

    expect(rest).toEqual([]);
    expect(page.cursor).toBeUndefined();
    expect(foundOf(page)).toEqual([
      ['tenant-a', 's-2', 2, NOW - 20],
      ['tenant-a', 's-1', 2, NOW - 10],
      ['tenant-a', 's-2', 1, NOW - 10],
      ['tenant-b', 's-1', 1, NOW - 10],
      ['tenant-b', 's-1', 4, NOW],
    ]);
    // The full stored item, not just its place.
    expect(page.items[0].item).toEqual({
      seq: 2,
      dekId: DEK_ID,
      expiresAt: NOW - 20,
      createdAt: NOW - 60_000,
      ciphertext: Buffer.from([0, 0xff, 2]),
    });
    expect((await scanAll(NOW - 21, 100))[0].items).toEqual([]);
  });

  it('pages through many sessions with tied expiries exactly as the order says, at any page size', async () => {
    // A fixed pseudo-random mix: few distinct expiries, so many ties across sessions.
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const expiries = [NOW - 30, NOW - 20, NOW - 10, NOW, NOW + 10, null];
    const expected: Found[] = [];
    for (let index = 0; index < 24; index++) {
      const ref = { tenantId: ['a', 'A', 'a ', '\u00e9'][next(4)], sessionId: `s${next(1000)}` };
      const chosen = Array.from({ length: 1 + next(5) }, () => expiries[next(expiries.length)]);
      const items = await append(ref, chosen);
      for (const item of items) {
        if (item.expiresAt !== null && item.expiresAt <= NOW) {
          expected.push([ref.tenantId, ref.sessionId, item.seq, item.expiresAt]);
        }
      }
    }
    expected.sort(
      (x, y) =>
        x[3]! - y[3]! ||
        Buffer.compare(Buffer.from(x[0]), Buffer.from(y[0])) ||
        Buffer.compare(Buffer.from(x[1]), Buffer.from(y[1])) ||
        x[2] - y[2],
    );
    expect(expected.length).toBeGreaterThan(20);

    for (const limit of [1, 3, 7, 1000]) {
      const pages = await scanAll(NOW, limit);
      expect(pages.flatMap(foundOf), `limit ${limit}`).toEqual(expected);
      expect(pages.slice(0, -1).every((page) => page.items.length === limit)).toBe(true);
    }
  });

  it('pages 2, 2, 1 with a cursor after each full page and none after the last', async () => {
    const one: SessionRef = { tenantId: 't', sessionId: 'one' };
    const two: SessionRef = { tenantId: 't', sessionId: 'two' };
    await append(one, [NOW - 5, NOW - 5, NOW - 1]);
    await append(two, [NOW - 5, NOW - 3]);

    const pages = await scanAll(NOW, 2);

    expect(pages.map((page) => page.items.length)).toEqual([2, 2, 1]);
    expect(pages.map((page) => page.cursor === undefined)).toEqual([false, false, true]);
    expect(pages.flatMap(foundOf)).toEqual([
      ['t', 'one', 1, NOW - 5],
      ['t', 'one', 2, NOW - 5],
      ['t', 'two', 1, NOW - 5],
      ['t', 'two', 2, NOW - 3],
      ['t', 'one', 3, NOW - 1],
    ]);
  });

  it('does not find again the items a caller left in place, nor those it deleted', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 's' };
    await append(ref, [NOW - 4, NOW - 3, NOW - 2, NOW - 1]);

    const first = await maintenance.listExpiredItems!(NOW, undefined, 2);
    // The caller deletes the first item and leaves the second in place.
    await redis.storage.transaction(ref, (scope) => scope.items.deleteBySeq([1]));
    const second = await maintenance.listExpiredItems!(NOW, first.cursor, 2);
    const third = await maintenance.listExpiredItems!(NOW, second.cursor, 2);

    expect(foundOf(first).map(([, , seq]) => seq)).toEqual([1, 2]);
    expect(foundOf(second).map(([, , seq]) => seq)).toEqual([3, 4]);
    expect(third).toEqual({ items: [], cursor: undefined });
  });

  it('fills a page past entries whose items a writer deleted after the entries were read', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'racing' };
    await append(ref, [NOW - 3, NOW - 2, NOW - 1]);
    // As if a writer deleted the first two items between the scan's two reads: their entries
    // are still read, their items are gone.
    const items = layout.forSession(ref).items;
    await redis.client.zremrangebyscore(items, 1, 2);

    const page = await maintenance.listExpiredItems!(NOW, undefined, 1);

    expect(foundOf(page)).toEqual([['t', 'racing', 3, NOW - 1]]);
    expect(await maintenance.listExpiredItems!(NOW, page.cursor, 1)).toEqual({
      items: [],
      cursor: undefined,
    });
  });

  it('removes index entries with their items: deleteBySeq, deleteAll, and items inserted and deleted in one unit', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'deletes' };
    await append(ref, [NOW - 3, null, NOW - 2, NOW + 9]);
    expect(await indexOf(ref)).toHaveLength(3);

    expect(await redis.storage.transaction(ref, (scope) => scope.items.deleteBySeq([1, 2]))).toBe(
      2,
    );
    expect((await scanAll(NOW, 10)).flatMap(foundOf)).toEqual([['t', 'deletes', 3, NOW - 2]]);
    expect(await indexOf(ref)).toHaveLength(2);

    // Inserted and deleted in the same unit: neither the item nor its entry stays.
    await redis.storage.transaction(ref, async (scope) => {
      const seq = (await scope.session.reserveSequence(1, NOW))!;
      await scope.items.insertMany([
        { seq, dekId: DEK_ID, expiresAt: NOW - 9, createdAt: NOW, ciphertext: Buffer.from('x') },
      ]);
      expect(await scope.items.deleteBySeq([seq])).toBe(1);
    });
    expect(await indexOf(ref)).toHaveLength(2);

    expect(await redis.storage.transaction(ref, (scope) => scope.items.deleteAll())).toBe(2);
    expect(await redis.client.exists(layout.forSession(ref).expiry)).toBe(0);
    expect((await scanAll(NOW, 10)).flatMap(foundOf)).toEqual([]);
  });

  it('gives the index the expiry backstop of the session keys', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'backstop' };
    await append(ref, [NOW + 60_000]);
    const keys = layout.forSession(ref);

    const itemsTtl = await redis.client.pttl(keys.items);
    const indexTtl = await redis.client.pttl(keys.expiry);

    expect(itemsTtl).toBeGreaterThan(0);
    expect(Math.abs(indexTtl - itemsTtl)).toBeLessThan(1_000);

    // An item without expiry makes the whole session persistent, the index too.
    await append(ref, [null]);
    expect(await redis.client.pttl(keys.expiry)).toBe(-1);
  });

  it('keeps ids apart that differ only by case, a trailing space or NFC against NFD, in byte order', async () => {
    const nfc = 'caf\u00e9';
    const nfd = 'cafe\u0301';
    const refs: SessionRef[] = [
      { tenantId: 'T', sessionId: 's' },
      { tenantId: 't', sessionId: 's' },
      { tenantId: 't ', sessionId: 's' },
      { tenantId: 't', sessionId: nfc },
      { tenantId: 't', sessionId: nfd },
      { tenantId: 't', sessionId: 'S' },
    ];
    for (const ref of refs) await append(ref, [NOW - 1]);

    const found = (await scanAll(NOW, 2)).flatMap(foundOf);

    const byBytes = refs.toSorted(
      (a, b) =>
        Buffer.compare(Buffer.from(a.tenantId), Buffer.from(b.tenantId)) ||
        Buffer.compare(Buffer.from(a.sessionId), Buffer.from(b.sessionId)),
    );
    expect(found.map(([tenantId, sessionId]) => [tenantId, sessionId])).toEqual(
      byBytes.map((ref) => [ref.tenantId, ref.sessionId]),
    );
    // NFD ('cafe' + U+0301) sorts before NFC (U+00E9 is C3 A9 > 65 CC 81).
    expect(found.findIndex(([, s]) => s === nfd)).toBeLessThan(
      found.findIndex(([, s]) => s === nfc),
    );
  });

  it('refuses a cursor no page returned, and bad arguments, with InvalidArgumentError', async () => {
    const scan = maintenance.listExpiredItems!.bind(maintenance);
    for (const cursor of ['not-a-cursor', Buffer.from('[1,"t"]').toString('base64url'), '']) {
      await expect(scan(NOW, cursor, 10)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(scan(NOW, 42 as unknown as string, 10)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(scan(NOW, undefined, 0)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(scan(NOW + 0.5, undefined, 10)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('rebuilds the index of a session written before it, so its expired items are found', async () => {
    const legacy: SessionRef = { tenantId: 't', sessionId: 'legacy' };
    const fresh: SessionRef = { tenantId: 't', sessionId: 'fresh' };
    await append(legacy, [NOW - 2, null, NOW + 100]);
    await append(fresh, [NOW - 1]);
    const keys = layout.forSession(legacy);
    // As the adapter left it before the index: no entries, no flag.
    await redis.client.del(keys.expiry);
    await redis.client.hdel(keys.session, SESSION_FIELDS.expiryIndexed);
    // A write after the upgrade indexes its own item, but not the older ones.
    await append(legacy, [NOW - 3]);
    expect(await indexOf(legacy)).toHaveLength(1);
    expect(await redis.client.hget(keys.session, SESSION_FIELDS.expiryIndexed)).toBeNull();

    const found = (await scanAll(NOW, 10)).flatMap(foundOf);

    expect(found).toEqual([
      ['t', 'legacy', 4, NOW - 3],
      ['t', 'legacy', 1, NOW - 2],
      ['t', 'fresh', 1, NOW - 1],
    ]);
    expect(await indexOf(legacy)).toHaveLength(3);
    expect(await redis.client.hget(keys.session, SESSION_FIELDS.expiryIndexed)).toBe('1');
  });

  it('marks a cleared legacy session indexed: nothing older than the index is left', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'cleared' };
    await append(ref, [NOW - 2]);
    const keys = layout.forSession(ref);
    await redis.client.hdel(keys.session, SESSION_FIELDS.expiryIndexed);

    await redis.storage.transaction(ref, (scope) => scope.items.deleteAll());

    expect(await redis.client.hget(keys.session, SESSION_FIELDS.expiryIndexed)).toBe('1');
  });

  it('raises IntegrityError for an index altered outside the module, naming how to rebuild it', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'damaged' };
    await append(ref, [NOW - 1]);
    const keys = layout.forSession(ref);

    await redis.client.zadd(keys.expiry, 0, '0000:not-an-entry');
    const listed = maintenance.listExpiredItems!(NOW, undefined, 10);
    await expect(listed).rejects.toBeInstanceOf(IntegrityError);
    await expect(listed).rejects.toThrow(/expiry_indexed/);

    // Another type at the index key: the commit writes nothing.
    await redis.client.del(keys.expiry);
    await redis.client.set(keys.expiry, 'x');
    const version = await redis.client.hget(keys.session, 'version');
    await expect(append(ref, [NOW + 1])).rejects.toBeInstanceOf(IntegrityError);
    expect(await redis.client.hget(keys.session, 'version')).toBe(version);

    // As the message says: drop the key and the flag, and the next scan rebuilds the index.
    await redis.client.del(keys.expiry);
    await redis.client.hdel(keys.session, SESSION_FIELDS.expiryIndexed);
    expect((await scanAll(NOW, 10)).flatMap(foundOf)).toEqual([['t', 'damaged', 1, NOW - 1]]);
  });

  it('raises IntegrityError for an indexed item that is not at its own position', async () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'moved' };
    await append(ref, [NOW - 1, NOW + 1]);
    const items = layout.forSession(ref).items;
    // The second member re-scored onto the first's position.
    const [, second] = await redis.client.zrangeBuffer(items, 0, -1);
    await redis.client.zadd(items, 1, second);

    await expect(maintenance.listExpiredItems!(NOW, undefined, 10)).rejects.toBeInstanceOf(
      IntegrityError,
    );
  });

  describe('lease fence', () => {
    const ref: SessionRef = { tenantId: 't', sessionId: 'fenced' };

    it('lets a unit fenced with a current lease commit', async () => {
      await append(ref, [NOW - 1, NOW - 1]);
      const lease = (await redis.storage.leases.acquire(job(), 'owner-a', 10_000))!;

      const deleted = await redis.storage.transaction(ref, async (scope) => {
        await scope.fence!(lease);
        return scope.items.deleteBySeq([1]);
      });

      expect(deleted).toBe(1);
      expect((await scanAll(NOW, 10)).flatMap(foundOf)).toEqual([['t', 'fenced', 2, NOW - 1]]);
    });

    it('refuses a lease another owner took over, and stores nothing', async () => {
      await append(ref, [NOW - 1]);
      const name = job();
      const stale = (await redis.storage.leases.acquire(name, 'owner-a', 50))!;
      await sleep(80);
      const taken = await redis.storage.leases.acquire(name, 'owner-b', 10_000);
      expect(taken?.token).toBe(stale.token + 1);

      const outcome = redis.storage.transaction(ref, async (scope) => {
        await scope.fence!(stale);
        return scope.items.deleteBySeq([1]);
      });

      await expect(outcome).rejects.toBeInstanceOf(LeaseLostError);
      expect((await scanAll(NOW, 10)).flatMap(foundOf)).toEqual([['t', 'fenced', 1, NOW - 1]]);
    });

    it('keeps others from taking a lapsed lease while the fenced unit runs, and drops the pin at its end', async () => {
      await append(ref, [NOW - 1]);
      const name = job();
      const lease = (await redis.storage.leases.acquire(name, 'owner-a', 100))!;
      const leaseKey = layout.jobLease(name);

      const deleted = await redis.storage.transaction(ref, async (scope) => {
        await scope.fence!(lease);
        await sleep(150);
        // Lapsed, but pinned by the running unit: nobody takes it afresh.
        expect(await redis.storage.leases.acquire(name, 'owner-b', 10_000)).toBeUndefined();
        return scope.items.deleteBySeq([1]);
      });

      expect(deleted).toBe(1);
      expect(Object.keys(await redis.client.hgetall(leaseKey)).toSorted()).toEqual([
        'expiresAt',
        'owner',
        'token',
      ]);
      expect(await redis.storage.leases.acquire(name, 'owner-b', 10_000)).toMatchObject({
        token: lease.token + 1,
      });
    });

    it('refuses at the commit a lease whose pin lapsed and that another owner took meanwhile', async () => {
      await append(ref, [NOW - 1]);
      const name = job();
      const lease = (await redis.storage.leases.acquire(name, 'owner-a', 100))!;
      const versionBefore = await redis.client.hget(layout.forSession(ref).session, 'version');

      const outcome = redis.storage.transaction(ref, async (scope) => {
        await scope.fence!(lease);
        const deleted = await scope.items.deleteBySeq([1]);
        // Paused past the lease and its pin (dropped here, as if its time ran out); another
        // replica takes the lease meanwhile.
        await sleep(150);
        await dropPins(redis.client, layout.jobLease(name));
        expect(await redis.storage.leases.acquire(name, 'owner-b', 10_000)).toBeDefined();
        return deleted;
      });

      await expect(outcome).rejects.toBeInstanceOf(LeaseLostError);
      expect(await redis.client.hget(layout.forSession(ref).session, 'version')).toBe(
        versionBefore,
      );
      expect((await scanAll(NOW, 10)).flatMap(foundOf)).toEqual([['t', 'fenced', 1, NOW - 1]]);
    });
  });
});
