import { randomUUID } from 'node:crypto';
import type { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { IntegrityError, InvalidArgumentError, supportsMaintenance } from '../../src/index.js';
import { decodeIdleSessionCursor } from '../../src/storage/idle-sessions.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { SESSION_FIELDS } from '../../src/storage/redis/redis-record-codec.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import type { IdleSessionPage, StorageMaintenance } from '../../src/storage/storage.ports.js';
import type { SessionRecord, SessionRef } from '../../src/storage/storage.records.js';
import { startLoopbackCluster, type LoopbackCluster } from '../support/redis-cluster-support.js';
import {
  createRedisTestStorage,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { newSessionRecord } from '../support/session-records.js';

/*
 * `listIdleSessions` on Redis, standalone and on a 3-master Cluster: every session hash of every
 * master is read per page (no index), pages follow (last activity, tenant bytes, session bytes)
 * and resume strictly after their cursor, and ids that differ in a single byte stay apart.
 */

const up = await redisReadyFor('Redis idle-session scan');

const BEFORE = 1_000_000;

/** Tenant and session ids differing only by case, a trailing space, normalisation, braces, colons. */
const TENANTS = ['ten', 'Ten', 'ten ', 't\u00e9n', 'te\u0301n', '{ten}', 'ten:x'];
const SESSIONS = ['s', 'S', 's ', '\u00e9', 'e\u0301', '{s}', 's:1', '}:session', '\u{1F600}'];

/** Creates the session with its last activity at `at`. */
async function createSessionAt(
  storage: RedisSessionStorage,
  ref: SessionRef,
  at: number,
): Promise<void> {
  const created = await storage.transaction(ref, (scope) =>
    scope.session.insertIfAbsent({ ...newSessionRecord(ref), lastActivityAt: at }),
  );
  expect(created).toBe(true);
}

/** The expected scan order, by an independent comparison of the UTF-8 bytes. */
function inScanOrder<T extends { lastActivityAt: number } & SessionRef>(rows: readonly T[]): T[] {
  return rows.toSorted(
    (a, b) =>
      a.lastActivityAt - b.lastActivityAt ||
      Buffer.compare(Buffer.from(a.tenantId), Buffer.from(b.tenantId)) ||
      Buffer.compare(Buffer.from(a.sessionId), Buffer.from(b.sessionId)),
  );
}

const keyOf = (row: SessionRef & { lastActivityAt: number }) =>
  `${row.lastActivityAt}|${row.tenantId}|${row.sessionId}`;

/** Every page from the first, checking the cursor contract on the way. */
async function allPages(
  maintenance: StorageMaintenance,
  before: number,
  limit: number,
): Promise<IdleSessionPage[]> {
  const pages: IdleSessionPage[] = [];
  let cursor: string | undefined;
  do {
    const page = await maintenance.listIdleSessions!(before, cursor, limit);
    pages.push(page);
    cursor = page.cursor;
    if (pages.length > 10_000) throw new Error('the scan does not end');
  } while (cursor !== undefined);
  // Every page but the last is full and carries a cursor naming its last session.
  expect(pages.map((page) => [page.sessions.length === limit, page.cursor !== undefined])).toEqual(
    pages.map((_, index) => (index < pages.length - 1 ? [true, true] : [false, false])),
  );
  const continued = pages.slice(0, -1);
  expect(continued.map((page) => decodeIdleSessionCursor(page.cursor))).toEqual(
    continued.map((page) => {
      const last = page.sessions.at(-1)!;
      return {
        lastActivityAt: last.lastActivityAt,
        tenantId: last.tenantId,
        sessionId: last.sessionId,
      };
    }),
  );
  return pages;
}

const listed = (pages: readonly IdleSessionPage[]) =>
  pages.flatMap((page) => page.sessions.map(keyOf));

/** The tricky-id sessions, activity cycling over a few values (ties across tenants) and BEFORE. */
function trickySessions(): SessionRecord[] {
  const rows: SessionRecord[] = [];
  let index = 0;
  for (const tenantId of TENANTS) {
    for (const sessionId of SESSIONS) {
      const activity = [5, 1, BEFORE - 1, 5, BEFORE, BEFORE + 7, 1][index++ % 7];
      rows.push({ ...newSessionRecord({ tenantId, sessionId }), lastActivityAt: activity });
    }
  }
  return rows;
}

/** The checks shared by standalone and Cluster: order, paging, `before` exclusive. */
async function expectOrderAndPaging(
  storage: RedisSessionStorage,
  rows: readonly SessionRecord[],
): Promise<void> {
  if (!supportsMaintenance(storage)) throw new Error('maintenance is unsupported');
  const maintenance = storage.maintenance;
  const idle = inScanOrder(rows.filter((row) => row.lastActivityAt < BEFORE));
  expect(idle.length).toBeGreaterThan(0);
  expect(idle.length).toBeLessThan(rows.length);

  // One page holding everything: the records as stored, in order.
  const [whole] = await allPages(maintenance, BEFORE, idle.length + 1);
  expect(whole.sessions).toEqual(idle);
  expect(whole.cursor).toBeUndefined();

  for (const limit of [1, 2, 5, idle.length - 1, idle.length]) {
    const pages = await allPages(maintenance, BEFORE, limit);
    expect(listed(pages)).toEqual(idle.map(keyOf));
    // A last page that came out exactly full is followed by an empty final one.
    expect(pages).toHaveLength(Math.floor(idle.length / limit) + 1);
  }

  // `before` is exclusive: a session at exactly BEFORE - 1 is idle before BEFORE, not before it.
  const earlier = await allPages(maintenance, BEFORE - 1, 1000);
  expect(listed(earlier)).toEqual(idle.filter((row) => row.lastActivityAt < BEFORE - 1).map(keyOf));
  expect(await maintenance.listIdleSessions!(1, undefined, 10)).toEqual({
    sessions: [],
    cursor: undefined,
  });
}

/** A call with arguments of any type, as from JavaScript. */
const listUnchecked = (
  maintenance: StorageMaintenance,
  before: unknown,
  cursor: unknown,
  limit: unknown,
) => maintenance.listIdleSessions!(before as number, cursor as string, limit as number);

/** A cursor of the right encoding holding `value`. */
const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe.skipIf(!up)('Redis idle-session scan', () => {
  let redis: RedisTestStorage;
  let storage: RedisSessionStorage;
  let maintenance: StorageMaintenance;
  let layout: RedisKeyLayout;

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    storage = redis.storage;
    if (!supportsMaintenance(storage)) throw new Error('maintenance is unsupported');
    maintenance = storage.maintenance;
    layout = new RedisKeyLayout(redis.keyPrefix);
  });
  afterEach(async () => {
    await redis?.cleanup();
  });

  it('lists idle sessions of every tenant by (activity, tenant bytes, session bytes), page by page', async () => {
    const rows = trickySessions();
    for (const row of rows) await createSessionAt(storage, row, row.lastActivityAt);
    await expectOrderAndPaging(storage, rows);
  });

  it('keeps only the best `limit` of many sessions found over several SCAN steps', async () => {
    const tenantId = `tenant-${randomUUID()}`;
    const rows: SessionRecord[] = [];
    const pipeline = redis.client.pipeline();
    // Written straight as session hashes: 2500 sessions, more than one SCAN step.
    for (let index = 0; index < 2500; index++) {
      const ref = { tenantId, sessionId: `s-${String(index).padStart(4, '0')}` };
      const activity = (index * 7919) % 3000;
      rows.push({ ...newSessionRecord(ref), lastActivityAt: activity });
      pipeline.hset(layout.forSession(ref).session, {
        [SESSION_FIELDS.tenantId]: ref.tenantId,
        [SESSION_FIELDS.sessionId]: ref.sessionId,
        [SESSION_FIELDS.createdAt]: '0',
        [SESSION_FIELDS.lastActivityAt]: String(activity),
        [SESSION_FIELDS.nextSeq]: '1',
        [SESSION_FIELDS.legalHold]: '0',
      });
    }
    await pipeline.exec();
    const idle = inScanOrder(rows.filter((row) => row.lastActivityAt < 2000));
    const pages = await allPages(maintenance, 2000, 97);
    expect(listed(pages)).toEqual(idle.map(keyOf));
    expect(pages).toHaveLength(Math.ceil((idle.length + 1) / 97));
  });

  it('finds sessions written by earlier versions: nothing is indexed, every session hash is read', async () => {
    const ref = { tenantId: 'old', sessionId: 'written-before' };
    await createSessionAt(storage, ref, 10);
    // An earlier version wrote no commit bookkeeping of today's (the fields are absent).
    await redis.client.hdel(
      layout.forSession(ref).session,
      SESSION_FIELDS.expiryIndexed,
      SESSION_FIELDS.recentCommits,
      SESSION_FIELDS.maxExpiresAt,
    );
    const page = await maintenance.listIdleSessions!(11, undefined, 10);
    expect(page.sessions.map(keyOf)).toEqual([keyOf({ ...ref, lastActivityAt: 10 })]);
  });

  it('pages over concurrent writes: a session that stays idle is not missed, one that turned active drops out', async () => {
    const tenantId = 'busy';
    const refs = Array.from({ length: 6 }, (_, index) => ({ tenantId, sessionId: `s${index}` }));
    for (const [index, ref] of refs.entries()) await createSessionAt(storage, ref, 100 + index);
    const first = await maintenance.listIdleSessions!(BEFORE, undefined, 2);
    expect(first.sessions.map((row) => row.sessionId)).toEqual(['s0', 's1']);
    // Meanwhile: s3 becomes active, s1 (already listed) is written again, a new idle one appears
    // after the cursor.
    await storage.transaction(refs[3], (scope) => scope.session.lockForWrite(BEFORE + 1));
    await storage.transaction(refs[1], (scope) => scope.session.lockForWrite(BEFORE + 2));
    await createSessionAt(storage, { tenantId, sessionId: 's9' }, 103);
    const rest = await allPages(maintenance, BEFORE, 2);
    let cursor = first.cursor;
    const seen: string[] = [];
    for (;;) {
      const page = await maintenance.listIdleSessions!(BEFORE, cursor, 2);
      seen.push(...page.sessions.map((row) => row.sessionId));
      cursor = page.cursor;
      if (cursor === undefined) break;
    }
    expect(seen).toEqual(['s2', 's9', 's4', 's5']);
    // A fresh scan agrees.
    const activity: Record<string, number> = { s0: 100, s2: 102, s9: 103, s4: 104, s5: 105 };
    expect(listed(rest)).toEqual(
      Object.entries(activity).map(([sessionId, lastActivityAt]) =>
        keyOf({ tenantId, sessionId, lastActivityAt }),
      ),
    );
  });

  it('leaves out keys that are no session of this store, and sessions deleted', async () => {
    await createSessionAt(storage, { tenantId: 't', sessionId: 'kept' }, 1);
    await createSessionAt(storage, { tenantId: 't', sessionId: 'gone' }, 2);
    await storage.transaction({ tenantId: 't', sessionId: 'gone' }, (scope) =>
      scope.session.deleteSession!(),
    );
    // Keys matching the pattern that no session of this store writes.
    await redis.client.hset(`${redis.keyPrefix}{not-a-tag}:session`, SESSION_FIELDS.tenantId, 'x');
    await redis.client.hset(`${redis.keyPrefix}{a}:x{b}:session`, SESSION_FIELDS.tenantId, 'x');
    // Another store's session under another prefix.
    const other = await createRedisTestStorage();
    try {
      await createSessionAt(other.storage, { tenantId: 't', sessionId: 'elsewhere' }, 1);
      const page = await maintenance.listIdleSessions!(BEFORE, undefined, 10);
      expect(page.sessions.map((row) => row.sessionId)).toEqual(['kept']);
    } finally {
      await other.cleanup();
    }
  });

  it('reports a damaged idle session, and is not stopped by damage to a session that is not idle', async () => {
    const active = { tenantId: 't', sessionId: 'active' };
    const idle = { tenantId: 't', sessionId: 'idle' };
    await createSessionAt(storage, active, BEFORE + 1);
    await createSessionAt(storage, idle, 1);
    await redis.client.hset(layout.forSession(active).session, SESSION_FIELDS.nextSeq, 'x');
    const page = await maintenance.listIdleSessions!(BEFORE, undefined, 10);
    expect(page.sessions.map((row) => row.sessionId)).toEqual(['idle']);
    await redis.client.hset(layout.forSession(idle).session, SESSION_FIELDS.lastActivityAt, '-1');
    await expect(maintenance.listIdleSessions!(BEFORE, undefined, 10)).rejects.toBeInstanceOf(
      IntegrityError,
    );
  });

  it('refuses bad arguments and cursors it never returned with InvalidArgumentError', async () => {
    for (const [before, cursor, limit] of [
      [1.5, undefined, 10],
      [Number.NaN, undefined, 10],
      ['1000', undefined, 10],
      [2 ** 53, undefined, 10],
      [BEFORE, undefined, 0],
      [BEFORE, undefined, -1],
      [BEFORE, undefined, 2.5],
      [BEFORE, undefined, '10'],
      [BEFORE, 'not a cursor', 10],
      [BEFORE, '', 10],
      [BEFORE, forged([1, 't']), 10],
      [BEFORE, forged([1.5, 't', 's']), 10],
      [BEFORE, forged([1, 't', 2]), 10],
      [BEFORE, forged({ lastActivityAt: 1, tenantId: 't', sessionId: 's' }), 10],
    ] as const) {
      await expect(listUnchecked(maintenance, before, cursor, limit)).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
    }
  });
});

describe.skipIf(!up)('Redis idle-session scan on a Redis Cluster', () => {
  let cluster: LoopbackCluster;
  let client: Cluster;
  let storage: RedisSessionStorage;

  beforeAll(async () => {
    cluster = await startLoopbackCluster(3);
    client = cluster.client();
    storage = new RedisSessionStorage({ client, keyPrefix: `nes-${randomUUID().slice(0, 8)}:` });
  }, 30_000);
  afterAll(async () => {
    await storage?.close();
    client?.disconnect();
    await cluster?.stop();
  });

  it('scans every master: order, paging and byte-distinct ids as on one server', async () => {
    const layout = new RedisKeyLayout(storage.keyPrefix);
    const rows = trickySessions();
    for (const row of rows) await createSessionAt(storage, row, row.lastActivityAt);
    // The idle sessions are spread over every master.
    const ranges = await client.cluster('SLOTS');
    const masters = new Set<number>();
    for (const row of rows.filter((candidate) => candidate.lastActivityAt < BEFORE)) {
      const slot = await client.cluster('KEYSLOT', layout.forSession(row).session);
      masters.add(ranges.findIndex(([first, last]) => slot >= first && slot <= last));
    }
    expect(masters.size).toBe(3);
    await expectOrderAndPaging(storage, rows);
  });
  it('reads a session again through the client when its node refuses it (slot moved meanwhile)', async () => {
    const moved = new RedisSessionStorage({
      client,
      keyPrefix: `nes-${randomUUID().slice(0, 8)}:`,
    });
    const rows = TENANTS.map((tenantId, index) => ({
      ...newSessionRecord({ tenantId, sessionId: 'm' }),
      lastActivityAt: index + 1,
    }));
    for (const row of rows) await createSessionAt(moved, row, row.lastActivityAt);
    // The first master's SCAN returns the keys of every master (as after a resharding): its
    // pipeline gets MOVED for those of the others, which are read again through the client.
    const masters = client.nodes('master');
    const pattern = new RedisKeyLayout(moved.keyPrefix).sessionPattern;
    const everyKey: string[] = [];
    for (const node of masters) everyKey.push(...(await node.keys(pattern)));
    const spies = masters.map((node, index) =>
      vi
        .spyOn(node, 'scan')
        .mockImplementation((() =>
          Promise.resolve(['0', index === 0 ? everyKey : []])) as unknown as typeof node.scan),
    );
    try {
      if (!supportsMaintenance(moved)) throw new Error('maintenance is unsupported');
      const page = await moved.maintenance.listIdleSessions!(BEFORE, undefined, 100);
      expect(page.sessions.map(keyOf)).toEqual(inScanOrder(rows).map(keyOf));
      expect(spies[0]).toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
      await moved.close();
    }
  });
});
