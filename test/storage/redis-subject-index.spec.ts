import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { v7 as uuidv7 } from 'uuid';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { supportsMaintenance, type SessionRef } from '../../src/index.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { SESSION_FIELDS } from '../../src/storage/redis/redis-record-codec.js';
import type { RedisSubjectIndex } from '../../src/storage/redis/redis-subject-index.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import type { StorageMaintenance } from '../../src/storage/storage.ports.js';
import type { DataKeyRecord, LegalHoldRecord } from '../../src/storage/storage.records.js';
import { loopbackClusterForSuite, redisClusterHarness } from '../support/redis-cluster-support.js';
import {
  createRedisTestStorage,
  keysUnderPrefix,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { newSessionRecord } from '../support/session-records.js';
import { describeHoldRaceContract, describeHoldStorageContract } from './hold-storage-contract.js';

/*
 * The subject index of the Redis adapter (a ZSET of session ids per tenant and subject, in a
 * slot of its own, written before a session's creating commit) and the hold keys (one slot):
 * sessions written before the index are found through a rebuild, stale entries are never
 * returned, ids stay distinct byte for byte, and all of it works on a 3-master Redis Cluster.
 */

const up = await redisReadyFor('Redis subject index spec');

const NOW = 1_767_000_000_000;

function dataKeyOf(ref: SessionRef, subjectId: string | null): DataKeyRecord {
  return {
    ...ref,
    dekId: randomUUID(),
    subjectId,
    generation: 1,
    firstSeq: 1,
    kekId: 'env:test-kek',
    wrappedKey: Buffer.alloc(60, 7),
    state: 'active',
    createdAt: NOW,
    destroyedAt: null,
  };
}

/** Creates a session of `subjectId` with a data key and one item. */
const createSession = (
  storage: RedisSessionStorage,
  ref: SessionRef,
  subjectId: string | null,
): Promise<DataKeyRecord> =>
  storage.transaction(ref, async (scope) => {
    await scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId });
    const key = dataKeyOf(ref, subjectId);
    await scope.dataKeys.insertIfAbsent(key);
    const seq = (await scope.session.reserveSequence(1, NOW))!;
    await scope.items.insertMany([
      { seq, dekId: key.dekId, expiresAt: null, createdAt: NOW, ciphertext: Buffer.from([seq]) },
    ]);
    return key;
  });

/** Every session id of the subject, page by page (`limit` per page). */
async function sessionIdsOf(
  maintenance: StorageMaintenance,
  tenantId: string,
  subjectId: string,
  limit = 100,
): Promise<string[]> {
  const found: string[] = [];
  let after = '';
  for (;;) {
    const page = await maintenance.listSessionsOfSubject!(tenantId, subjectId, after, limit);
    for (const record of page) {
      expect(record.subjectId).toBe(subjectId);
      expect(record.tenantId).toBe(tenantId);
    }
    found.push(...page.map((record) => record.sessionId));
    if (page.length < limit) return found;
    after = page.at(-1)!.sessionId;
  }
}

const byBytes = (ids: readonly string[]): string[] =>
  ids.toSorted((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

/** Forgets the index: as a store written before it existed. */
async function dropSubjectIndex(
  client: Redis | Cluster,
  layout: RedisKeyLayout,
  tenantId: string,
  subjects: readonly string[],
): Promise<void> {
  for (const subjectId of subjects) {
    const keys = layout.subjectIndex(tenantId, subjectId);
    await client.del(keys.sessions);
    await client.del(keys.tokens);
  }
  await client.del(layout.subjectIndexComplete);
}

function holdOf(
  tenantId: string,
  target: { sessionId: string } | { subjectId: string },
): LegalHoldRecord {
  return {
    holdId: uuidv7(),
    tenantId,
    sessionId: 'sessionId' in target ? target.sessionId : null,
    subjectId: 'subjectId' in target ? target.subjectId : null,
    matterRef: 'matter {1}: ü',
    placedAt: NOW,
    placedBy: 'legal-team',
    releasedAt: null,
    releasedBy: null,
  };
}

describe.skipIf(!up)('Redis subject index', () => {
  let redis: RedisTestStorage;
  let storage: RedisSessionStorage;
  let maintenance: StorageMaintenance;
  let layout: RedisKeyLayout;
  let tenantId: string;

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    storage = redis.storage;
    if (!supportsMaintenance(storage)) throw new Error('maintenance is unsupported');
    maintenance = storage.maintenance;
    layout = new RedisKeyLayout(redis.keyPrefix);
    tenantId = `tenant-${randomUUID()}`;
  });
  afterEach(async () => {
    await redis?.cleanup();
  });

  it('finds sessions written before the index (no entries, no marker) and rebuilds it once', async () => {
    const ids = ['s-1', 's-2', 's-3'];
    for (const sessionId of ids) await createSession(storage, { tenantId, sessionId }, 'p-1');
    await createSession(storage, { tenantId, sessionId: 'other' }, 'p-2');
    await createSession(storage, { tenantId, sessionId: 'anonymous' }, null);
    await dropSubjectIndex(redis.client, layout, tenantId, ['p-1', 'p-2']);
    expect(await redis.client.exists(layout.subjectIndex(tenantId, 'p-1').sessions)).toBe(0);

    expect(await sessionIdsOf(maintenance, tenantId, 'p-1', 2)).toEqual(ids);
    expect(await sessionIdsOf(maintenance, tenantId, 'p-2')).toEqual(['other']);
    expect(await redis.client.get(layout.subjectIndexComplete)).toBe('1');
    expect(await redis.client.zcard(layout.subjectIndex(tenantId, 'p-1').sessions)).toBe(3);

    // Once complete, the index alone answers: an entry dropped now is not found again.
    await redis.client.zrem(layout.subjectIndex(tenantId, 'p-1').sessions, 's-2');
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual(['s-1', 's-3']);
  });

  it('a session created after the index is complete is found without a rebuild', async () => {
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual([]);
    expect(await redis.client.get(layout.subjectIndexComplete)).toBe('1');
    await createSession(storage, { tenantId, sessionId: 'late' }, 'p-1');
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual(['late']);
  });

  it('returns no stale entry: a session gone, or naming another subject or none', async () => {
    await createSession(storage, { tenantId, sessionId: 'kept' }, 'p-1');
    await createSession(storage, { tenantId, sessionId: 'someone-else' }, 'p-2');
    await createSession(storage, { tenantId, sessionId: 'anonymous' }, null);
    await createSession(storage, { tenantId, sessionId: 'deleted' }, 'p-1');
    // Deleted behind the module's back: its entry stays.
    await redis.client.del(layout.forSession({ tenantId, sessionId: 'deleted' }).session);
    const keys = layout.subjectIndex(tenantId, 'p-1');
    // Entries no creation can still commit (token at or below the session's version) ...
    await redis.client.zadd(keys.sessions, 0, 'someone-else', 0, 'anonymous', 0, 'never');
    await redis.client.hset(keys.tokens, 'someone-else', '1', 'anonymous', '1', 'never', '0');
    // ... and one of a creation that may still commit (its token is above the version).
    await redis.client.zadd(keys.sessions, 0, 'in-flight');
    await redis.client.hset(keys.tokens, 'in-flight', '5');

    expect(await sessionIdsOf(maintenance, tenantId, 'p-1', 1)).toEqual(['kept']);
    expect(await sessionIdsOf(maintenance, tenantId, 'p-2')).toEqual(['someone-else']);
    // The stale entries went; the possible creation's stayed, and so did the entry of the hash
    // deleted outside the module (its version went with it: a creation of the id from scratch
    // would have the same token).
    expect(await redis.client.zrange(keys.sessions, 0, -1)).toEqual([
      'deleted',
      'in-flight',
      'kept',
    ]);
  });

  it('never loses a committed session to lookups that run while sessions are created', async () => {
    const ids = Array.from({ length: 10 }, (_, index) => `s-${index}`);
    const race = { creating: true };
    const lookups = (async () => {
      let count = 0;
      while (race.creating || count === 0) {
        await maintenance.listSessionsOfSubject!(tenantId, 'p-1', '', 100);
        count += 1;
      }
      return count;
    })();
    // Three creators race for each id: one creates it, the others conflict and run again.
    await Promise.all(
      ids.flatMap((sessionId) =>
        [0, 1, 2].map(() =>
          storage.transaction({ tenantId, sessionId }, (scope) =>
            scope.session.insertIfAbsent({
              ...newSessionRecord({ tenantId, sessionId }),
              subjectId: 'p-1',
            }),
          ),
        ),
      ),
    );
    race.creating = false;
    expect(await lookups).toBeGreaterThan(0);
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual(ids);
    expect(await redis.client.zcard(layout.subjectIndex(tenantId, 'p-1').sessions)).toBe(10);
  });

  it("a lookup between a creation's index entry and its commit leaves the entry", async () => {
    // A session that exists before, deleted, then created again: versions go on from there.
    const ref = { tenantId, sessionId: 'session-a' };
    await createSession(storage, ref, 'p-1');
    await storage.transaction(ref, (scope) => scope.session.deleteSession!());
    // The index is complete from here on: the lookup below needs no rebuild (which adds too).
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual([]);
    const index = (storage as unknown as { subjectIndex: RedisSubjectIndex }).subjectIndex;
    const add = index.add.bind(index);
    const seen: string[][] = [];
    const spy = vi.spyOn(index, 'add').mockImplementation(async (entries) => {
      await add(entries);
      // The entry is in, the commit not yet: the lookup finds a hash naming no subject.
      const page = await maintenance.listSessionsOfSubject!(tenantId, 'p-1', '', 10);
      seen.push(page.map((record) => record.sessionId));
    });
    try {
      await createSession(storage, ref, 'p-1');
    } finally {
      spy.mockRestore();
    }
    expect(seen).toEqual([[]]);
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual(['session-a']);
  });

  it('keeps ids apart byte for byte: case, trailing space, Unicode normalisation, braces', async () => {
    const subjects = ['Jos\u00e9', 'Jose\u0301', 'jos\u00e9', 'Jos\u00e9 ', 'a:{b}', 'a:{b} '];
    for (const [index, subjectId] of subjects.entries()) {
      await createSession(storage, { tenantId, sessionId: `s-${index}` }, subjectId);
    }
    for (const [index, subjectId] of subjects.entries()) {
      expect(await sessionIdsOf(maintenance, tenantId, subjectId)).toEqual([`s-${index}`]);
    }
    const sessions = ['S', 's', 's ', '\u00e9', 'e\u0301', '{x}:y', 'x y', '\u{1f600}'];
    for (const sessionId of sessions) await createSession(storage, { tenantId, sessionId }, 'p');
    expect(await sessionIdsOf(maintenance, tenantId, 'p', 3)).toEqual(byBytes(sessions));
    // Another tenant whose id differs only by a trailing space shares nothing.
    expect(await sessionIdsOf(maintenance, `${tenantId} `, 'p')).toEqual([]);
  });

  it("forgetSubject leaves no trace of the subject's id in Redis", async () => {
    const subjectId = 'patient-\u00e9-42';
    const ref = { tenantId, sessionId: 'session-a' };
    const key = await createSession(storage, ref, subjectId);
    await storage.transaction(ref, (scope) => scope.session.forgetSubject!());

    const hash = await redis.client.hgetall(layout.forSession(ref).session);
    expect(hash[SESSION_FIELDS.subjectId]).toBeUndefined();
    const stored = await storage.read(ref, (scope) => scope.dataKeys.findById(key.dekId));
    expect(stored?.subjectId).toBeNull();
    const encoded = Buffer.from(subjectId).toString('base64url');
    const names = await keysUnderPrefix(redis.client, redis.keyPrefix);
    expect(names.filter((name) => name.includes(encoded))).toEqual([]);
    const raw = await redis.client.hgetallBuffer(layout.forSession(ref).dataKeys);
    for (const value of Object.values(raw)) {
      expect(value.includes(Buffer.from(subjectId))).toBe(false);
    }
    expect(await sessionIdsOf(maintenance, tenantId, subjectId)).toEqual([]);
  });

  it('deleteSession keeps the audit keys and the version: a unit that read before it runs again', async () => {
    const ref = { tenantId, sessionId: 'session-a' };
    await createSession(storage, ref, 'p-1');
    const keys = layout.forSession(ref);
    const auditKey = layout.forAuditChain({ chainId: 'c', ...ref }).records;
    await redis.client.zadd(auditKey, 1, 'record');
    const versionBefore = Number(await redis.client.hget(keys.session, SESSION_FIELDS.version));

    let runs = 0;
    const deletions: boolean[] = [];
    const sawSession = await storage.transaction(ref, async (scope) => {
      runs += 1;
      const found = await scope.session.find();
      // Deleted by another unit after this one read it, the first time only.
      if (runs === 1) {
        deletions.push(await storage.transaction(ref, (other) => other.session.deleteSession!()));
      }
      await scope.session.lockForWrite(NOW);
      return found !== undefined;
    });
    expect(deletions).toEqual([true]);
    expect(runs).toBe(2);
    expect(sawSession).toBe(false);

    for (const key of [keys.items, keys.dataKeys, keys.operations, keys.expiry]) {
      expect(await redis.client.exists(key)).toBe(0);
    }
    const left = await redis.client.hgetall(keys.session);
    expect(Object.keys(left).toSorted()).toEqual(
      [
        SESSION_FIELDS.expiryIndexed,
        SESSION_FIELDS.recentCommits,
        SESSION_FIELDS.version,
      ].toSorted(),
    );
    expect(Number(left[SESSION_FIELDS.version])).toBe(versionBefore + 1);
    expect(await redis.client.pttl(keys.session)).toBeGreaterThan(0);
    expect(await redis.client.zcard(auditKey)).toBe(1);
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual([]);

    // The id can be used again, for a new session of the same subject.
    await createSession(storage, ref, 'p-1');
    expect(await sessionIdsOf(maintenance, tenantId, 'p-1')).toEqual(['session-a']);
    expect(await redis.client.pttl(keys.session)).toBe(-1);
  });

  it('lists every key of a session and destroys keys by id in a write unit', async () => {
    const ref = { tenantId, sessionId: 'session-a' };
    const first = await createSession(storage, ref, 'p-1');
    const second = { ...dataKeyOf(ref, 'p-1'), generation: 2, firstSeq: 2 };
    await storage.transaction(ref, (scope) => scope.dataKeys.insertIfAbsent(second));
    const destroyed = await storage.transaction(ref, async (scope) => {
      expect((await scope.dataKeys.listAll!()).map((key) => key.dekId)).toEqual([
        first.dekId,
        second.dekId,
      ]);
      return scope.dataKeys.destroyByIds!([first.dekId, randomUUID()], NOW + 1);
    });
    expect(destroyed).toBe(1);
    const keys = await storage.transaction(ref, (scope) => scope.dataKeys.listAll!());
    expect(
      keys.map((key) => [key.dekId, key.state, key.wrappedKey.length, key.destroyedAt]),
    ).toEqual([
      [first.dekId, 'destroyed', 0, NOW + 1],
      [second.dekId, 'active', 60, null],
    ]);
    expect(
      await storage.transaction(ref, (scope) => scope.dataKeys.destroyByIds!([first.dekId], NOW)),
    ).toBe(0);
  });

  it('keeps the keys of a held session from the expiry backstop until the hold is released', async () => {
    const ref = { tenantId, sessionId: 'session-a' };
    const keys = layout.forSession(ref);
    const append = () =>
      storage.transaction(ref, async (scope) => {
        await scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId: 'p-1' });
        const seq = (await scope.session.reserveSequence(1, Date.now()))!;
        await scope.items.insertMany([
          {
            seq,
            dekId: '00000000-0000-4000-8000-000000000001',
            expiresAt: Date.now() + 60_000,
            createdAt: Date.now(),
            ciphertext: Buffer.from([seq]),
          },
        ]);
      });
    const lock = () => storage.transaction(ref, (scope) => scope.session.lockForWrite(Date.now()));
    const ttls = () => Promise.all([keys.session, keys.items].map((key) => redis.client.pttl(key)));

    await append();
    for (const ttl of await ttls()) expect(ttl).toBeGreaterThan(0);
    // Placed as the service places it: stored, then the session locked.
    const hold = holdOf(tenantId, { subjectId: 'p-1' });
    await storage.holds.insert(hold);
    await lock();
    expect(await ttls()).toEqual([-1, -1]);
    await append();
    expect(await ttls()).toEqual([-1, -1]);

    await storage.holds.release(hold.holdId, Date.now(), 'counsel');
    await lock();
    for (const ttl of await ttls()) expect(ttl).toBeGreaterThan(0);
  });

  it('a creating unit that throws leaves no index entry', async () => {
    const ref = { tenantId, sessionId: 'session-a' };
    await expect(
      storage.transaction(ref, async (scope) => {
        await scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId: 'p-1' });
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(await redis.client.exists(layout.subjectIndex(tenantId, 'p-1').sessions)).toBe(0);
  });

  it('keeps holds of ids with braces, colons, spaces and non-ASCII apart, in one slot', async () => {
    const holds = storage.holds;
    const odd = ['{s}:1', '{s}:1 ', 'S\u00e9', 'Se\u0301'];
    const placed = odd.map((sessionId) => holdOf(tenantId, { sessionId }));
    for (const hold of placed) await holds.insert(hold);
    for (const [index, sessionId] of odd.entries()) {
      expect(await holds.activeCovering(tenantId, sessionId, null)).toEqual([placed[index]]);
    }
    // Every hold key has the hash tag 'holds' (its first braces), so they share one slot; the
    // ids are base64url in key names, so their braces start no tag of their own.
    const names = (await keysUnderPrefix(redis.client, redis.keyPrefix)).filter((name) =>
      name.includes('hold'),
    );
    expect(names.length).toBeGreaterThan(5);
    for (const name of names) {
      expect(name.startsWith(`${redis.keyPrefix}{holds}:`)).toBe(true);
      expect(name.slice(redis.keyPrefix.length + '{holds}'.length)).not.toMatch(/[{}]/);
    }
  });
});

describe.skipIf(!up)('Redis subject index and holds on a Redis Cluster', () => {
  const cluster = loopbackClusterForSuite();

  const clusterHarness = redisClusterHarness(cluster);

  describeHoldStorageContract('redis cluster', clusterHarness);
  describeHoldRaceContract('redis cluster', clusterHarness);

  it('rebuilds the index from sessions on every master, then answers from one slot', async () => {
    const client = cluster.client();
    const storage = new RedisSessionStorage({
      client,
      keyPrefix: `nes-${randomUUID().slice(0, 8)}:`,
    });
    try {
      const layout = new RedisKeyLayout(storage.keyPrefix);
      if (!supportsMaintenance(storage)) throw new Error('maintenance is unsupported');
      const tenantId = `tenant-${randomUUID()}`;
      // Two sessions of the subject on each master.
      const ranges = await client.cluster('SLOTS');
      const masterOf = (slot: number) =>
        ranges.findIndex(([first, last]) => slot >= first && slot <= last);
      const perMaster = new Map<number, number>();
      const refs: SessionRef[] = [];
      while (refs.length < 2 * ranges.length) {
        const ref = { tenantId, sessionId: `s-${randomUUID()}` };
        const master = masterOf(await client.cluster('KEYSLOT', layout.forSession(ref).session));
        if ((perMaster.get(master) ?? 0) >= 2) continue;
        perMaster.set(master, (perMaster.get(master) ?? 0) + 1);
        refs.push(ref);
      }
      for (const ref of refs) await createSession(storage, ref, 'p-1');
      await createSession(storage, { tenantId, sessionId: 'other' }, 'p-2');
      await dropSubjectIndex(client, layout, tenantId, ['p-1', 'p-2']);

      const expected = byBytes(refs.map((ref) => ref.sessionId));
      expect(await sessionIdsOf(storage.maintenance, tenantId, 'p-1', 4)).toEqual(expected);
      expect(await client.get(layout.subjectIndexComplete)).toBe('1');

      // forgetSubject and deleteSession commit in the session's slot and clean the index's.
      await storage.transaction(refs[0], (scope) => scope.session.forgetSubject!());
      expect(await storage.transaction(refs[1], (scope) => scope.session.deleteSession!())).toBe(
        true,
      );
      expect(await sessionIdsOf(storage.maintenance, tenantId, 'p-1')).toEqual(
        byBytes(refs.slice(2).map((ref) => ref.sessionId)),
      );
      expect(await client.zcard(layout.subjectIndex(tenantId, 'p-1').sessions)).toBe(
        refs.length - 2,
      );

      // A hold on the subject covers its sessions on every master, in read and write units.
      const hold = holdOf(tenantId, { subjectId: 'p-1' });
      await storage.holds.insert(hold);
      for (const ref of refs.slice(2)) {
        const inRead = await storage.read(ref, (scope) => scope.holds!.covering());
        const inWrite = await storage.transaction(ref, async (scope) => {
          await scope.session.lockForWrite(NOW);
          return scope.holds!.covering();
        });
        expect(inRead).toEqual([hold]);
        expect(inWrite).toEqual([hold]);
      }
      // The forgotten session names no subject any more: only a hold on itself covers it.
      expect(await storage.read(refs[0], (scope) => scope.holds!.covering())).toEqual([]);
    } finally {
      await storage.close();
      client.disconnect();
    }
  });
});
