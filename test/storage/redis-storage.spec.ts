import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  StorageUnavailableError,
  type DataKeyRecord,
  type HistoryOperationRecord,
  type SessionRecord,
  type SessionRef,
  type StoredItem,
} from '../../src/index.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import {
  COMMIT_OP,
  COMMIT_SCRIPT,
  FENCE_REPLY,
  FENCE_SCRIPT,
  RECENT_COMMITS_KEPT,
} from '../../src/storage/redis/redis-commit-script.js';
import { redisSessionTag } from '../../src/storage/redis/redis-keys.js';
import { packItem } from '../../src/storage/redis/redis-record-codec.js';
import {
  REDIS_URL,
  createRedisTestStorage,
  keysUnderPrefix,
  redisItemTamperer,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { thrownBy } from '../support/thrown-by.js';

const redisUp = await redisReadyFor('Redis storage adapter spec');

const NOW = 1_700_000_000_000;

function sessionRecord(ref: SessionRef, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    ...ref,
    subjectId: null,
    createdAt: NOW,
    lastActivityAt: NOW,
    nextSeq: 1,
    itemTtlSeconds: null,
    legalHold: false,
    ...overrides,
  };
}

function storedItem(seq: number, expiresAt: number | null = null): StoredItem {
  return {
    seq,
    dekId: randomUUID(),
    expiresAt,
    createdAt: NOW,
    // Binary on purpose: zero bytes, 0xff and invalid UTF-8 must survive.
    ciphertext: Buffer.concat([Buffer.from([0, 0xff, 0xc3, 0x28]), randomBytes(28)]),
  };
}

function dataKey(ref: SessionRef, overrides: Partial<DataKeyRecord> = {}): DataKeyRecord {
  return {
    ...ref,
    dekId: randomUUID(),
    subjectId: 'subject-1',
    generation: 1,
    firstSeq: 1,
    kekId: 'k1',
    wrappedKey: Buffer.concat([Buffer.from([0, 0xff]), randomBytes(58)]),
    state: 'active',
    createdAt: NOW,
    destroyedAt: null,
    ...overrides,
  };
}

function operation(dekId: string): HistoryOperationRecord {
  return { operationId: `op-${randomUUID()}`, dekId, digest: randomBytes(32), createdAt: NOW };
}

const seqsOf = (items: StoredItem[]) => items.map((item) => item.seq);

describe.skipIf(!redisUp)('Redis storage adapter', () => {
  let redis: RedisTestStorage;
  let ref: SessionRef;
  const extraStorages: RedisSessionStorage[] = [];

  beforeEach(async () => {
    redis = await createRedisTestStorage({ expiryBackstopSeconds: 60 });
    ref = { tenantId: 'tenant-a', sessionId: `s-${randomUUID()}` };
  });
  afterEach(async () => {
    await Promise.all(extraStorages.splice(0).map((storage) => storage.close()));
    await redis.cleanup();
  });

  /** A second storage on the same keys, as another process would have. */
  function secondStorage(options: { maxConflictRetries?: number } = {}): RedisSessionStorage {
    const storage = new RedisSessionStorage({
      url: REDIS_URL,
      keyPrefix: redis.keyPrefix,
      ...options,
    });
    extraStorages.push(storage);
    return storage;
  }

  async function createSession(target: SessionRef = ref, overrides: Partial<SessionRecord> = {}) {
    await redis.storage.transaction(sessionRecord(target, overrides), (scope) =>
      scope.session.insertIfAbsent(sessionRecord(target, overrides)),
    );
  }

  /** Reserves positions and inserts the items at them, as an append does. */
  async function append(expiries: Array<number | null>, target: SessionRef = ref) {
    return redis.storage.transaction(target, async (scope) => {
      const first = (await scope.session.reserveSequence(expiries.length, NOW))!;
      const items = expiries.map((expiresAt, index) => storedItem(first + index, expiresAt));
      await scope.items.insertMany(items);
      return items;
    });
  }

  const sessionKeyNames = () =>
    ['session', 'items', 'keys', 'ops'].map(
      (kind) => `${redis.keyPrefix}{${redisSessionTag(ref)}}:${kind}`,
    );
  const pttls = () => Promise.all(sessionKeyNames().map((name) => redis.client.pttl(name)));
  /** KEYS of the commit script: the four above and the expiry index. */
  const commitKeyNames = () => [
    ...sessionKeyNames(),
    `${redis.keyPrefix}{${redisSessionTag(ref)}}:expiry`,
  ];

  async function fillAllFourKeys(expiresAt: number | null) {
    const key = dataKey(ref);
    await redis.storage.transaction(ref, async (scope) => {
      await scope.dataKeys.insertIfAbsent(key);
      await scope.historyOperations.insertIfAbsent(operation(key.dekId));
      const first = (await scope.session.reserveSequence(1, NOW))!;
      await scope.items.insertMany([storedItem(first, expiresAt)]);
    });
  }

  describe('key layout', () => {
    it('keeps every key of a session under one brace-free hash tag, even for ids with braces', async () => {
      const awkward: SessionRef = { tenantId: 't{1}:x', sessionId: '{s}:{2}' };
      await createSession(awkward);
      const key = dataKey(awkward);
      await redis.storage.transaction(key, (scope) => scope.dataKeys.insertIfAbsent(key));
      await append([null], awkward);
      await redis.storage.transaction(awkward, (scope) =>
        scope.historyOperations.insertIfAbsent(operation(key.dekId)),
      );

      const tag = redisSessionTag(awkward);
      expect(tag).not.toMatch(/[{}]/);
      const sessionKeys = (await keysUnderPrefix(redis.client, redis.keyPrefix)).filter(
        (name) => !name.startsWith(`${redis.keyPrefix}dek:`),
      );
      expect(sessionKeys.toSorted()).toEqual(
        ['items', 'keys', 'ops', 'session'].map((kind) => `${redis.keyPrefix}{${tag}}:${kind}`),
      );
      for (const name of sessionKeys) {
        // Exactly one hash tag, so Redis Cluster hashes only the tag: one slot per session.
        expect(name.match(/[{}]/g)).toEqual(['{', '}']);
      }
    });

    it('points a data key id at the tag of the session that owns it', async () => {
      await createSession();
      const key = dataKey(ref);
      await redis.storage.transaction(key, (scope) => scope.dataKeys.insertIfAbsent(key));

      expect(await redis.client.get(`${redis.keyPrefix}dek:${key.dekId}`)).toBe(
        redisSessionTag(ref),
      );
    });

    it('gives two refs that join to the same string different tags', () => {
      expect(redisSessionTag({ tenantId: 'a.b', sessionId: 'c' })).not.toBe(
        redisSessionTag({ tenantId: 'a', sessionId: 'b.c' }),
      );
    });
  });

  describe('round trips', () => {
    it('reads back a session, its items, keys and operations byte for byte', async () => {
      await createSession(ref, { subjectId: 'subject-1', itemTtlSeconds: 3600, legalHold: true });
      const key = dataKey(ref);
      const op = operation(key.dekId);
      const items = await redis.storage.transaction(ref, async (scope) => {
        await scope.dataKeys.insertIfAbsent(key);
        await scope.historyOperations.insertIfAbsent(op);
        const first = (await scope.session.reserveSequence(2, NOW + 5))!;
        const rows = [storedItem(first, NOW + 60_000), storedItem(first + 1)];
        await scope.items.insertMany(rows);
        return rows;
      });

      const read = await redis.storage.read(ref, async (scope) => ({
        session: await scope.session.find(),
        items: await scope.items.listVisible(NOW, 10),
        byId: await scope.dataKeys.findById(key.dekId),
        active: await scope.dataKeys.findActive(),
        generation: await scope.dataKeys.maxGeneration(),
        op: await scope.historyOperations.find(op.operationId),
      }));

      expect(read.session).toEqual(
        sessionRecord(ref, {
          subjectId: 'subject-1',
          itemTtlSeconds: 3600,
          legalHold: true,
          nextSeq: 3,
          lastActivityAt: NOW + 5,
        }),
      );
      expect(read.items).toEqual(items);
      expect(read.byId).toEqual(key);
      expect(read.active).toEqual(key);
      expect(read.generation).toBe(1);
      expect(read.op).toEqual(op);
    });

    it('reports nothing for a session that was never written', async () => {
      const read = await redis.storage.read(ref, async (scope) => ({
        session: await scope.session.find(),
        items: await scope.items.listVisible(NOW, 10),
        active: await scope.dataKeys.findActive(),
        generation: await scope.dataKeys.maxGeneration(),
        op: await scope.historyOperations.find('op-1'),
      }));

      expect(read).toEqual({
        session: undefined,
        items: [],
        active: undefined,
        generation: 0,
        op: undefined,
      });
    });

    it("finds a key by id only in its own session's unit of work, so a copied ciphertext is caught", async () => {
      const other: SessionRef = { tenantId: 'tenant-a', sessionId: `s-${randomUUID()}` };
      await createSession(other);
      const otherKey = dataKey(other);
      await redis.storage.transaction(otherKey, (scope) => scope.dataKeys.insertIfAbsent(otherKey));

      const own = await redis.storage.read(other, (scope) =>
        scope.dataKeys.findById(otherKey.dekId),
      );
      const elsewhere = await redis.storage.read(ref, (scope) =>
        scope.dataKeys.findById(otherKey.dekId),
      );

      expect(own).toMatchObject({ tenantId: other.tenantId, sessionId: other.sessionId });
      expect(elsewhere).toBeUndefined();
    });

    it('finds no key behind a pointer whose commit never happened', async () => {
      const dekId = randomUUID();
      await redis.client.set(`${redis.keyPrefix}dek:${dekId}`, redisSessionTag(ref));

      expect(
        await redis.storage.read(ref, (scope) => scope.dataKeys.findById(dekId)),
      ).toBeUndefined();
    });

    it('returns the newest active key and the highest generation of any state', async () => {
      await createSession();
      const first = dataKey(ref, { generation: 1 });
      const second = dataKey(ref, { generation: 2, firstSeq: 50 });
      const retired = await redis.storage.transaction(ref, async (scope) => {
        await scope.dataKeys.insertIfAbsent(first);
        await scope.dataKeys.insertIfAbsent(second);
        return scope.dataKeys.retireActiveBelow(2);
      });
      await redis.storage.transaction(
        dataKey(ref, { generation: 3, state: 'destroyed' }),
        (scope) =>
          scope.dataKeys.insertIfAbsent(dataKey(ref, { generation: 3, state: 'destroyed' })),
      );

      const read = await redis.storage.read(ref, async (scope) => ({
        active: await scope.dataKeys.findActive(),
        generation: await scope.dataKeys.maxGeneration(),
        first: await scope.dataKeys.findById(first.dekId),
      }));
      expect(retired).toBe(1);
      expect(read.active?.dekId).toBe(second.dekId);
      expect(read.generation).toBe(3);
      expect(read.first?.state).toBe('retiring');
    });

    it('destroys every key of a session: state destroyed, wrapped bytes wiped', async () => {
      await createSession();
      const keys = [dataKey(ref, { generation: 1 }), dataKey(ref, { generation: 2 })];
      await redis.storage.transaction(ref, async (scope) => {
        for (const key of keys) await scope.dataKeys.insertIfAbsent(key);
      });

      const destroyed = await redis.storage.transaction(ref, (scope) =>
        scope.dataKeys.destroyAll(NOW + 1),
      );

      const after = await redis.storage.read(ref, (scope) =>
        scope.dataKeys.findById(keys[0].dekId),
      );
      expect(destroyed).toBe(2);
      expect(after).toMatchObject({ state: 'destroyed', destroyedAt: NOW + 1 });
      expect(after?.wrappedKey.length).toBe(0);
    });
  });

  describe('reads of items', () => {
    it('reads only one window of a long history for a small limit', async () => {
      await createSession();
      await append(Array.from({ length: 10_000 }, () => null));
      const monitor = await redis.client.monitor();
      const commands: string[][] = [];
      monitor.on('monitor', (_time: string, args: string[]) => commands.push(args));
      const marker = `done-${randomUUID()}`;

      const newest = await redis.storage.read(ref, (scope) => scope.items.listVisible(NOW, 20));
      // MONITOR lists commands in execution order: once the marker shows, the read is logged.
      await redis.client.echo(marker);
      await expect.poll(() => commands.some((args) => args.includes(marker))).toBe(true);
      monitor.disconnect();

      expect(seqsOf(newest)).toEqual(Array.from({ length: 20 }, (_, i) => 9981 + i));
      const itemReads = commands.filter((args) => args.some((arg) => arg.endsWith(':items')));
      expect(itemReads).toHaveLength(1);
      expect(itemReads[0].map((arg) => arg.toUpperCase())).toEqual(
        expect.arrayContaining(['ZRANGE', 'BYSCORE', 'REV', 'LIMIT', '20']),
      );
    });

    it('skips expired items and keeps scanning until the newest visible ones are found', async () => {
      await createSession();
      // 1-30 never expire, 31-100 expired (100 at exactly NOW: expiry is inclusive).
      await append([
        ...Array.from({ length: 30 }, () => null),
        ...Array.from({ length: 69 }, () => NOW - 1),
        NOW,
      ]);

      const newest = await redis.storage.read(ref, (scope) => scope.items.listVisible(NOW, 10));

      expect(seqsOf(newest)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    });

    it('returns fewer than the limit when the visible history is shorter', async () => {
      await createSession();
      await append([NOW - 1, null, NOW + 1, NOW - 5]);

      const newest = await redis.storage.read(ref, (scope) => scope.items.listVisible(NOW, 10));

      expect(seqsOf(newest)).toEqual([2, 3]);
    });

    it('pages through (afterSeq, throughSeq] in ascending order without expired items', async () => {
      await createSession();
      await append(Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? NOW - 1 : null)));

      const page = await redis.storage.read(ref, (scope) =>
        scope.items.listVisiblePage(NOW, 5, 30, 6),
      );
      const tail = await redis.storage.read(ref, (scope) =>
        scope.items.listVisiblePage(NOW, 26, 30, 100),
      );

      // Seqs 1, 4, 7, ... (i % 3 === 0) are expired.
      expect(seqsOf(page)).toEqual([6, 8, 9, 11, 12, 14]);
      expect(seqsOf(tail)).toEqual([27, 29, 30]);
    });
  });

  describe('expiry backstop', () => {
    it('leaves a session without items to live forever', async () => {
      await createSession();

      expect(await redis.client.pttl(sessionKeyNames()[0])).toBe(-1);
    });

    it('expires all keys of a session the backstop after its last item expires', async () => {
      await createSession();
      const expiresAt = Date.now() + 120_000;
      await fillAllFourKeys(expiresAt);

      const expected = expiresAt + 60_000 - Date.now();
      for (const pttl of await pttls()) {
        expect(pttl).toBeGreaterThan(expected - 5_000);
        expect(pttl).toBeLessThanOrEqual(expected);
      }
    });

    it('removes the expiry once an item without expiry is appended', async () => {
      await createSession();
      await fillAllFourKeys(Date.now() + 120_000);

      await append([null]);

      expect(await pttls()).toEqual([-1, -1, -1, -1]);
    });

    it('never expires a session under legal hold', async () => {
      await createSession(ref, { legalHold: true });

      await fillAllFourKeys(Date.now() + 120_000);

      expect(await pttls()).toEqual([-1, -1, -1, -1]);
    });
  });

  describe('units of work', () => {
    it('lets a unit of work read its own buffered writes', async () => {
      const seen = await redis.storage.transaction(ref, async (scope) => {
        const created = await scope.session.insertIfAbsent(sessionRecord(ref));
        const again = await scope.session.insertIfAbsent(sessionRecord(ref));
        const first = await scope.session.reserveSequence(3, NOW);
        const second = await scope.session.reserveSequence(2, NOW);
        await scope.items.insertMany([storedItem(first!), storedItem(first! + 1)]);
        const items = await scope.items.listVisible(NOW, 10);
        const op = operation(randomUUID());
        const recorded = await scope.historyOperations.insertIfAbsent(op);
        const recordedAgain = await scope.historyOperations.insertIfAbsent(op);
        return {
          created,
          again,
          first,
          second,
          items: seqsOf(items),
          recorded,
          recordedAgain,
          found: await scope.historyOperations.find(op.operationId),
          session: await scope.session.find(),
        };
      });

      expect(seen).toMatchObject({
        created: true,
        again: false,
        first: 1,
        second: 4,
        items: [1, 2],
        recorded: true,
        recordedAgain: false,
      });
      expect(seen.found).toBeDefined();
      expect(seen.session?.nextSeq).toBe(6);
    });

    it('counts deletions over stored and buffered items alike', async () => {
      await createSession();
      await append([null, null, null]);

      const counts = await redis.storage.transaction(ref, async (scope) => {
        const first = (await scope.session.reserveSequence(2, NOW))!;
        await scope.items.insertMany([storedItem(first), storedItem(first + 1)]);
        const bySeq = await scope.items.deleteBySeq([1, 4, 99, 1]);
        const all = await scope.items.deleteAll();
        const afterAll = await scope.items.deleteAll();
        return { bySeq, all, afterAll, left: await scope.items.listVisible(NOW, 10) };
      });

      expect(counts).toEqual({ bySeq: 2, all: 3, afterAll: 0, left: [] });
      expect(await redisItemTamperer(redis.client, redis.keyPrefix).countItems(ref)).toBe(0);
    });

    it('refuses a second data key for a stored generation or id', async () => {
      await createSession();
      const key = dataKey(ref);
      await redis.storage.transaction(key, (scope) => scope.dataKeys.insertIfAbsent(key));
      const other: SessionRef = { tenantId: 'tenant-b', sessionId: ref.sessionId };
      await createSession(other);

      const sameGeneration = await redis.storage.transaction(dataKey(ref), (scope) =>
        scope.dataKeys.insertIfAbsent(dataKey(ref)),
      );
      const sameIdElsewhere = await redis.storage.transaction(
        dataKey(other, { dekId: key.dekId }),
        (scope) => scope.dataKeys.insertIfAbsent(dataKey(other, { dekId: key.dekId })),
      );

      expect(sameGeneration).toBe(false);
      expect(sameIdElsewhere).toBe(false);
      expect(
        await redis.storage.read(ref, (scope) => scope.dataKeys.findById(key.dekId)),
      ).toMatchObject({ tenantId: ref.tenantId });
    });

    it('discards every write of a unit of work that throws and rethrows its error', async () => {
      await createSession();
      const before = await redis.client.hgetall(
        `${redis.keyPrefix}{${redisSessionTag(ref)}}:session`,
      );
      const failure = new Error('work failed');
      const key = dataKey(ref);

      const outcome = redis.storage.transaction(ref, async (scope) => {
        const first = (await scope.session.reserveSequence(2, NOW + 9))!;
        await scope.items.insertMany([storedItem(first), storedItem(first + 1)]);
        await scope.dataKeys.insertIfAbsent(key);
        await scope.historyOperations.insertIfAbsent(operation(key.dekId));
        throw failure;
      });

      await expect(outcome).rejects.toBe(failure);
      const keys = await keysUnderPrefix(redis.client, redis.keyPrefix);
      expect(keys).toEqual([`${redis.keyPrefix}{${redisSessionTag(ref)}}:session`]);
      expect(
        await redis.client.hgetall(`${redis.keyPrefix}{${redisSessionTag(ref)}}:session`),
      ).toEqual(before);
    });

    it('commits nothing for a unit of work that only reads', async () => {
      await createSession();
      const sessionKey = `${redis.keyPrefix}{${redisSessionTag(ref)}}:session`;
      const versionBefore = await redis.client.hget(sessionKey, 'version');

      const found = await redis.storage.transaction(ref, (scope) => scope.session.find());

      expect(found?.nextSeq).toBe(1);
      expect(await redis.client.hget(sessionKey, 'version')).toBe(versionBefore);
    });

    it('refuses an item at a stored position (a counter behind its items) with IntegrityError, writing nothing', async () => {
      await createSession();
      await append([null]);

      const outcome = redis.storage.transaction(ref, async (scope) => {
        await scope.session.reserveSequence(1, NOW);
        await scope.items.insertMany([storedItem(1)]);
      });

      await expect(outcome).rejects.toBeInstanceOf(IntegrityError);
      await expect(outcome).rejects.toThrow(/sequence counter .* is behind its stored items/);
      const session = await redis.storage.read(ref, (scope) => scope.session.find());
      expect(session?.nextSeq).toBe(2);
      expect(await redisItemTamperer(redis.client, redis.keyPrefix).countItems(ref)).toBe(1);
    });
  });

  describe('concurrency', () => {
    it('retries conflicting commits: 20 racing appends from two processes all land', async () => {
      await createSession();
      const storages = [redis.storage, secondStorage()];

      const positions = await Promise.all(
        Array.from({ length: 20 }, (_, index) =>
          storages[index % 2].transaction(ref, async (scope) => {
            const seq = (await scope.session.reserveSequence(1, NOW))!;
            await scope.items.insertMany([storedItem(seq)]);
            return seq;
          }),
        ),
      );

      const stored = await redis.storage.read(ref, (scope) => scope.items.listVisible(NOW, 100));
      const session = await redis.storage.read(ref, (scope) => scope.session.find());
      expect(positions.toSorted((a, b) => a - b)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      expect(seqsOf(stored)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(session?.nextSeq).toBe(21);
    });

    it('reruns a unit whose on-demand read sees a commit made after its snapshot', async () => {
      await createSession();
      await append([null]);
      const other = secondStorage();
      let runs = 0;
      const counted: number[] = [];

      const cleared = await redis.storage.transaction(ref, async (scope) => {
        runs++;
        await scope.session.lockForWrite(NOW);
        if (runs === 1) {
          await other.transaction(ref, async (otherScope) => {
            const seq = (await otherScope.session.reserveSequence(1, NOW))!;
            await otherScope.items.insertMany([storedItem(seq)]);
          });
        }
        const count = await scope.items.deleteAll();
        counted.push(count);
        return count;
      });

      // The first run stopped at the read: it never saw a count from a mixed view.
      expect(runs).toBe(2);
      expect(counted).toEqual([2]);
      expect(cleared).toBe(2);
    });

    it('answers "applied" to a commit sent again after its reply was lost, applying it once', async () => {
      await createSession();
      const keys = commitKeyNames();
      const sessionKey = keys[0];
      const version = (await redis.client.hget(sessionKey, 'version'))!;
      const commit = (commitId: string) =>
        redis.client.eval(
          COMMIT_SCRIPT,
          5,
          ...keys,
          version,
          commitId,
          '0',
          COMMIT_OP.setSessionField,
          'next_seq',
          '2',
          COMMIT_OP.addItem,
          '1',
          packItem(storedItem(1)),
        );
      expect(await commit('commit-a')).toBe(1);
      // Another writer commits before the resend arrives.
      await redis.storage.transaction(ref, (scope) => scope.session.lockForWrite(NOW));
      const versionBefore = await redis.client.hget(sessionKey, 'version');

      const resent = await commit('commit-a');
      const stranger = await commit('commit-b');

      expect(resent).toBe(1);
      expect(stranger).toBe(0);
      expect(await redis.client.hget(sessionKey, 'version')).toBe(versionBefore);
      expect(await redis.client.zcard(keys[1])).toBe(1);
    });

    it('settles a commit whose reply was lost: applied, fenced off for good, or unknown', async () => {
      await createSession();
      const [sessionKey, ...otherKeys] = commitKeyNames();
      const version = () => redis.client.hget(sessionKey, 'version');
      const commit = (commitId: string, expected: string) =>
        redis.client.eval(
          COMMIT_SCRIPT,
          5,
          sessionKey,
          ...otherKeys,
          expected,
          commitId,
          '0',
          COMMIT_OP.setSessionField,
          'next_seq',
          '2',
          COMMIT_OP.addItem,
          '1',
          packItem(storedItem(1)),
        );
      const fence = (commitId: string, expected: string) =>
        redis.client.eval(FENCE_SCRIPT, 1, sessionKey, commitId, expected);
      const lockForWrite = () =>
        redis.storage.transaction(ref, (scope) => scope.session.lockForWrite(NOW));

      const applied = (await version())!;
      expect(await commit('applied', applied)).toBe(1);
      expect(await fence('applied', applied)).toBe(FENCE_REPLY.applied);

      const lost = (await version())!;
      expect(await fence('lost', lost)).toBe(FENCE_REPLY.notApplied);
      // The lost commit, resent late, now conflicts and writes nothing.
      expect(await commit('lost', lost)).toBe(0);
      expect(await redis.client.zcard(otherKeys[0])).toBe(1);

      const old = (await version())!;
      for (let i = 0; i < RECENT_COMMITS_KEPT + 1; i++) await lockForWrite();
      const before = await version();
      expect(await fence('pushed-out', old)).toBe(FENCE_REPLY.unknown);
      expect(await version()).toBe(before);
    });

    it('gives up with a retryable StorageUnavailableError after maxConflictRetries attempts', async () => {
      await createSession();
      const storage = secondStorage({ maxConflictRetries: 3 });
      let runs = 0;

      const outcome = storage.transaction(ref, async (scope) => {
        runs++;
        await scope.session.reserveSequence(1, NOW);
        // Another writer commits between this snapshot and its commit, every time.
        await redis.storage.transaction(ref, (otherScope) => otherScope.session.lockForWrite(NOW));
      });

      const error = await outcome.catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StorageUnavailableError);
      expect((error as StorageUnavailableError).retryable).toBe(true);
      expect((error as Error).message).toMatch(/kept conflicting with other writers/);
      expect(runs).toBe(3);
    });
  });

  describe('connection', () => {
    it('fails fast with a retryable StorageUnavailableError when Redis is unreachable', async () => {
      const storage = new RedisSessionStorage({ url: 'redis://127.0.0.1:1' });
      const started = Date.now();
      try {
        const readError = await storage
          .read(ref, (scope) => scope.session.find())
          .catch((caught: unknown) => caught);
        const writeError = await storage
          .transaction(sessionRecord(ref), (scope) =>
            scope.session.insertIfAbsent(sessionRecord(ref)),
          )
          .catch((caught: unknown) => caught);

        for (const error of [readError, writeError]) {
          expect(error).toBeInstanceOf(StorageUnavailableError);
          expect((error as StorageUnavailableError).retryable).toBe(true);
          expect((error as Error).message).toMatch(/^Redis is unreachable \(.+\); retry the call$/);
        }
        expect(Date.now() - started).toBeLessThan(5_000);
      } finally {
        await storage.close();
      }
    });

    it('leaves a host client open on close, and close is idempotent', async () => {
      const host = new Redis(REDIS_URL);
      try {
        const storage = new RedisSessionStorage({ client: host, keyPrefix: redis.keyPrefix });
        await storage.transaction(sessionRecord(ref), (scope) =>
          scope.session.insertIfAbsent(sessionRecord(ref)),
        );

        await storage.close();
        await storage.close();

        expect(host.status).toBe('ready');
        expect(await host.ping()).toBe('PONG');
      } finally {
        await host.quit();
      }
    });

    it('quits the client it created on close', async () => {
      const storage = new RedisSessionStorage({ url: REDIS_URL, keyPrefix: redis.keyPrefix });
      await storage.read(ref, (scope) => scope.session.find());

      await storage.close();
      await storage.close();

      await expect(storage.read(ref, (scope) => scope.session.find())).rejects.toBeInstanceOf(
        StorageUnavailableError,
      );
    });
  });

  describe('item tamperer', () => {
    it('rewrites raw members that the adapter then reads back', async () => {
      await createSession();
      await append([null, null, null]);
      const tamperer = redisItemTamperer(redis.client, redis.keyPrefix);
      const forged = Buffer.from('forged');
      const otherDekId = randomUUID();

      await tamperer.setCiphertext(ref, 1, forged);
      await tamperer.setDekId(ref, 1, otherDekId);
      await tamperer.setExpiresAt(ref, 2, NOW - 1);
      await tamperer.moveItem(ref, 1, 3);

      const visible = await redis.storage.read(ref, (scope) => scope.items.listVisible(NOW, 10));
      expect(seqsOf(visible)).toEqual([3]);
      expect(visible[0].ciphertext).toEqual(forged);
      expect(await tamperer.dekIdOf(ref, 3)).toBe(otherDekId);
      expect(await tamperer.ciphertextOf(ref, 3)).toEqual(forged);
      expect(await tamperer.countItems(ref)).toBe(2);
    });

    it('destroys the data keys of a session', async () => {
      await createSession();
      const key = dataKey(ref);
      await redis.storage.transaction(key, (scope) => scope.dataKeys.insertIfAbsent(key));

      await redisItemTamperer(redis.client, redis.keyPrefix).destroyKeys(ref);

      const found = await redis.storage.read(ref, (scope) => scope.dataKeys.findById(key.dekId));
      expect(found?.state).toBe('destroyed');
      expect(found?.wrappedKey.length).toBe(0);
    });
  });
});

describe('Redis storage options', () => {
  const fakeClient = {} as Redis;

  it.each([
    ['neither client nor url', {}, /pass `client`.*or `url`/],
    ['both client and url', { client: fakeClient, url: REDIS_URL }, /either `client` or `url`/],
    ['a key prefix with braces', { url: REDIS_URL, keyPrefix: 'nes{x}:' }, /keyPrefix/],
    ['an empty key prefix', { url: REDIS_URL, keyPrefix: '' }, /keyPrefix/],
    ['a key prefix over 40 characters', { url: REDIS_URL, keyPrefix: 'x'.repeat(41) }, /keyPrefix/],
    ['a non-redis url', { url: 'http://127.0.0.1:6379' }, /redis:\/\/ or rediss:\/\//],
    ['an unparsable url', { url: 'not a url' }, /not a valid URL/],
    ['a negative backstop', { url: REDIS_URL, expiryBackstopSeconds: -1 }, /expiryBackstop/],
    ['zero conflict retries', { url: REDIS_URL, maxConflictRetries: 0 }, /maxConflictRetries/],
    ['a zero command timeout', { url: REDIS_URL, commandTimeoutMs: 0 }, /commandTimeoutMs/],
    ['a fractional connect timeout', { url: REDIS_URL, connectTimeoutMs: 1.5 }, /connectTimeoutMs/],
    [
      "a connect timeout for a host's client",
      { client: fakeClient, connectTimeoutMs: 1000 },
      /connectTimeoutMs applies to `url` only/,
    ],
  ])('rejects %s with a ConfigurationError', (_case, options, message) => {
    const error = thrownBy(() => new RedisSessionStorage(options));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(message);
  });

  it('does not echo a password from an unusable url', () => {
    const error = thrownBy(() => new RedisSessionStorage({ url: 'http://user:hunter2@127.0.0.1' }));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).not.toContain('hunter2');
  });
});
