import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import { Test } from '@nestjs/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  InvalidArgumentError,
  KekRotationService,
  KeyRotationService,
  LeaseLostError,
  RetentionService,
  runAs,
  supportsMaintenance,
  type SessionRef,
} from '../../src/index.js';
import type { JobLease } from '../../src/storage/storage.records.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { SESSION_FIELDS } from '../../src/storage/redis/redis-record-codec.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import type { ExpiredItemPage, StorageMaintenance } from '../../src/storage/storage.ports.js';
import { startLoopbackCluster, type LoopbackCluster } from '../support/redis-cluster-support.js';
import { redisReadyFor } from '../support/redis-support.js';
import { newSessionRecord } from '../support/session-records.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/*
 * The expired-item scan and the lease fence on a Redis Cluster of three masters on loopback
 * ports, started by this spec: the scan SCANs every master, and the fence checks the lease (in a
 * slot of its own) right before each commit.
 */

const up = await redisReadyFor('Redis expiry index on a Cluster spec');

const NOW = 1_767_000_000_000;
const DEK_ID = '00000000-0000-4000-8000-000000000001';
/** Slots per master of the loopback cluster (the last has a few fewer). */
const SLOTS_PER_MASTER = Math.ceil(16_384 / 3);

const bytes = (ref: SessionRef): Buffer => Buffer.from(ref.sessionId);

/**
 * Ids of sessions of tenant 'acme' under `layout`, drawn until every master serves at least
 * one of them and there are `minimum` (a session's keys share its hash tag, so one slot).
 */
async function sessionIdsOnEveryMaster(
  client: Cluster,
  layout: RedisKeyLayout,
  minimum: number,
): Promise<string[]> {
  const masters = new Set<number>();
  const sessionIds: string[] = [];
  while (masters.size < 3 || sessionIds.length < minimum) {
    const sessionId = `s-${randomUUID()}`;
    const key = layout.forSession({ tenantId: 'acme', sessionId }).session;
    masters.add(Math.floor((await client.cluster('KEYSLOT', key)) / SLOTS_PER_MASTER));
    sessionIds.push(sessionId);
  }
  return sessionIds;
}

describe.skipIf(!up)('Redis expiry index on a Redis Cluster', () => {
  let cluster: LoopbackCluster;
  let client: Cluster;
  let storage: RedisSessionStorage;
  let maintenance: StorageMaintenance;
  let layout: RedisKeyLayout;

  beforeAll(async () => {
    cluster = await startLoopbackCluster(3);
    client = cluster.client();
    storage = new RedisSessionStorage({ client, keyPrefix: `nes-${randomUUID().slice(0, 8)}:` });
    if (!supportsMaintenance(storage)) throw new Error('maintenance is unsupported');
    maintenance = storage.maintenance;
    layout = new RedisKeyLayout(storage.keyPrefix);
  }, 30_000);
  afterAll(async () => {
    await storage?.close();
    client?.disconnect();
    await cluster?.stop();
  });

  const append = (ref: SessionRef, expiries: Array<number | null>) =>
    storage.transaction(ref, async (scope) => {
      await scope.session.insertIfAbsent(newSessionRecord(ref));
      const first = (await scope.session.reserveSequence(expiries.length, NOW))!;
      await scope.items.insertMany(
        expiries.map((expiresAt, index) => ({
          seq: first + index,
          dekId: DEK_ID,
          expiresAt,
          createdAt: NOW,
          ciphertext: Buffer.from([first + index]),
        })),
      );
    });

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

  /** Which master (0-2) serves the session's slot. */
  const masterOf = async (ref: SessionRef): Promise<number> =>
    Math.floor((await client.cluster('KEYSLOT', layout.forSession(ref).items)) / SLOTS_PER_MASTER);

  it('finds expired items on every master, in order, page by page; legacy sessions too', async () => {
    // Two sessions on each master.
    const tenantId = `tenant-${randomUUID()}`;
    const byMaster: SessionRef[][] = [[], [], []];
    while (byMaster.some((refs) => refs.length < 2)) {
      const ref = { tenantId, sessionId: `s-${randomUUID()}` };
      const refs = byMaster[await masterOf(ref)];
      if (refs.length < 2) refs.push(ref);
    }
    const sessions = byMaster.flat();
    for (const [index, ref] of sessions.entries()) {
      await append(ref, [NOW - 100 + index, NOW + 1_000, NOW - 100, null]);
    }
    // One of them as written before the index.
    const legacy = layout.forSession(sessions[4]);
    await client.del(legacy.expiry);
    await client.hdel(legacy.session, SESSION_FIELDS.expiryIndexed);

    const pages = await scanAll(NOW, 4);

    const bySession = sessions.toSorted((a, b) => Buffer.compare(bytes(a), bytes(b)));
    const expected = [
      ...bySession.map((ref) => [ref.sessionId, 3, NOW - 100]),
      ...sessions.map((ref, index) => [ref.sessionId, 1, NOW - 100 + index]),
    ].toSorted(
      (a, b) =>
        (a[2] as number) - (b[2] as number) ||
        Buffer.compare(Buffer.from(a[0] as string), Buffer.from(b[0] as string)) ||
        (a[1] as number) - (b[1] as number),
    );
    // The third page is full, so a cursor follows it; the page after it is empty and ends.
    expect(pages.map((page) => page.items.length)).toEqual([4, 4, 4, 0]);
    expect(pages.at(-1)!.cursor).toBeUndefined();
    expect(
      pages.flatMap((page) =>
        page.items.map(({ sessionId, item }) => [sessionId, item.seq, item.expiresAt]),
      ),
    ).toEqual(expected);
    expect(await client.hget(legacy.session, SESSION_FIELDS.expiryIndexed)).toBe('1');
  }, 30_000);

  it('fences units with a lease in another slot: current commits, taken over refuses, pin lapsed and taken before the commit refuses', async () => {
    const ref: SessionRef = { tenantId: `t-${randomUUID()}`, sessionId: 'fenced' };
    await append(ref, [NOW - 1, NOW - 1, NOW - 1]);
    const deleteFenced = (seq: number, lease: JobLease, pause?: () => Promise<void>) =>
      storage.transaction(ref, async (scope) => {
        await scope.fence!(lease);
        const deleted = await scope.items.deleteBySeq([seq]);
        await pause?.();
        return deleted;
      });

    const current = (await storage.leases.acquire(`job-${randomUUID()}`, 'owner-a', 10_000))!;
    expect(await deleteFenced(1, current)).toBe(1);

    const name = `job-${randomUUID()}`;
    const stale = (await storage.leases.acquire(name, 'owner-a', 50))!;
    await sleep(80);
    await storage.leases.acquire(name, 'owner-b', 10_000);
    const sessionKey = layout.forSession(ref).session;
    const version = await client.hget(sessionKey, 'version');
    await expect(deleteFenced(2, stale)).rejects.toBeInstanceOf(LeaseLostError);

    // Paused past the lease and its pin (dropped here, as if its time ran out) while another
    // replica takes the lease: the check right before the commit refuses it.
    const other = `job-${randomUUID()}`;
    const lapsing = (await storage.leases.acquire(other, 'owner-a', 100))!;
    const outcome = deleteFenced(3, lapsing, async () => {
      await sleep(150);
      const leaseKey = layout.jobLease(other);
      const pins = Object.keys(await client.hgetall(leaseKey)).filter((field) =>
        field.startsWith('pin:'),
      );
      await client.hdel(leaseKey, ...pins);
      expect(await storage.leases.acquire(other, 'owner-b', 10_000)).toBeDefined();
    });
    await expect(outcome).rejects.toBeInstanceOf(LeaseLostError);

    expect(await client.hget(sessionKey, 'version')).toBe(version);
    expect(await client.zcard(layout.forSession(ref).items)).toBe(2);
  }, 30_000);

  it('runs the retention purge through the module: every expired item on every master purged once, audited', async () => {
    const actor = { type: 'service' as const, id: 'cluster-test', tenantId: 'acme' };
    const purgeStorage = new RedisSessionStorage({
      client,
      keyPrefix: `nes-${randomUUID().slice(0, 8)}:`,
    });
    const purgeLayout = new RedisKeyLayout(purgeStorage.keyPrefix);
    const app = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } },
          storage: { instance: purgeStorage },
          jobs: { retentionPurge: { enabled: false, batchSize: 7 } },
        }),
      ],
    }).compile();
    await app.init();
    try {
      const service = app.get(EncryptedSessionService);
      const sessionIds = await sessionIdsOnEveryMaster(client, purgeLayout, 4);
      await runAs(actor, async () => {
        for (const sessionId of sessionIds) {
          const session = await service.open(sessionId, { tenantId: 'acme', ttlSeconds: 1 });
          await session.addItems(
            Array.from({ length: 5 }, (_, n) => ({ role: 'user' as const, content: `${n}` })),
          );
        }
        const live = await service.open('live', { tenantId: 'acme', ttlSeconds: null });
        await live.addItems([{ role: 'user', content: 'kept' }]);
      });
      await sleep(1_100);

      const report = await app.get(RetentionService).purgeExpired();

      const expired = sessionIds.length * 5;
      expect(report).toMatchObject({
        outcome: 'done',
        result: { scanned: expired, purged: expired, unverified: 0, complete: true },
      });
      const left = await (purgeStorage.maintenance as StorageMaintenance).listExpiredItems!(
        Date.now(),
        undefined,
        10,
      );
      expect(left).toEqual({ items: [], cursor: undefined });
      const live = await runAs(actor, () =>
        service.open('live', { tenantId: 'acme', ttlSeconds: null }),
      );
      expect(await runAs(actor, () => live.getItems())).toEqual([
        { role: 'user', content: 'kept' },
      ]);
      expect(
        await runAs(actor, () => app.get(AuditService).verify({ tenantId: 'acme' })),
      ).toMatchObject({ ok: true });
    } finally {
      await app.close();
    }
  }, 60_000);

  it('rotates the root key across every master: status counts, rewrapAll moves, the key rotation figures cover them all', async () => {
    const actor = { type: 'service' as const, id: 'cluster-test', tenantId: 'acme' };
    const keyPrefix = `nes-${randomUUID().slice(0, 8)}:`;
    const sessionLayout = new RedisKeyLayout(keyPrefix);
    const [k1, k2] = [newRootKeyEntry('k1'), newRootKeyEntry('k2')];
    const boot = async (keys: string, activeKeyId: string) => {
      const app = await Test.createTestingModule({
        imports: [
          EncryptedSessionModule.forRoot({
            keys: { env: { keys, activeKeyId } },
            storage: { instance: new RedisSessionStorage({ client, keyPrefix }) },
          }),
        ],
      }).compile();
      await app.init();
      return app;
    };
    const sessionIds = await sessionIdsOnEveryMaster(client, sessionLayout, 6);
    const first = await boot(k1, 'k1');
    try {
      await runAs(actor, async () => {
        for (const sessionId of sessionIds) {
          const session = await first.get(EncryptedSessionService).open(sessionId, {
            tenantId: 'acme',
          });
          await session.addItems([{ role: 'user', content: sessionId }]);
        }
      });
      expect(await first.get(KeyRotationService).status()).toMatchObject({
        activeKeys: sessionIds.length,
        retiringKeys: 0,
        rotationLagMs: null,
      });
    } finally {
      await first.close();
    }

    const second = await boot(`${k2},${k1}`, 'k2');
    try {
      const rotation = second.get(KekRotationService);
      const before = await rotation.status();
      // The sessions' keys and the audit trail's own, all under k1.
      expect(before.dataKeysByKek['env:k1']).toBeGreaterThan(sessionIds.length);
      expect(before).toMatchObject({
        activeKekId: 'env:k2',
        remaining: before.dataKeysByKek['env:k1'],
      });
      // Small pages: the cursor walks one master after another.
      const report = await rotation.rewrapAll({ batchSize: 2 });
      expect(report).toMatchObject({ rewrapped: before.remaining, failed: 0, remaining: 0 });
      expect(await rotation.status()).toEqual({
        activeKekId: 'env:k2',
        // The first write under k2 added nothing: every key came over from k1.
        dataKeysByKek: { 'env:k2': before.remaining },
        remaining: 0,
      });
      await runAs(actor, async () => {
        for (const sessionId of sessionIds) {
          const session = await second.get(EncryptedSessionService).open(sessionId, {
            tenantId: 'acme',
          });
          expect(await session.getItems()).toEqual([{ role: 'user', content: sessionId }]);
        }
      });
    } finally {
      await second.close();
    }
  }, 60_000);

  it('refuses a data-key scan cursor it did not return, with InvalidArgumentError', async () => {
    await expect(
      maintenance.listDataKeysWrappedByOtherKek('k1', 'not-a-cursor', 10),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
