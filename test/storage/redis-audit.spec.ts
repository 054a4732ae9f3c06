import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IntegrityError,
  StorageUnavailableError,
  type SessionRef,
  type StoredItem,
} from '../../src/index.js';
import type { AuditStorage, SessionStorage } from '../../src/storage/storage.ports.js';
import type { AuditChainRef, StoredAuditRecord } from '../../src/storage/storage.records.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import {
  AUDIT_COMMIT_SCRIPT,
  AUDIT_FENCE_REPLY,
  AUDIT_FENCE_SCRIPT,
} from '../../src/storage/redis/redis-audit-scripts.js';
import type { RedisAuditStorage } from '../../src/storage/redis/redis-audit-storage.js';
import { RedisKeyLayout, type RedisAuditChainKeys } from '../../src/storage/redis/redis-keys.js';
import {
  packAuditHead,
  packAuditRecord,
  unpackAuditRecord,
} from '../../src/storage/redis/redis-record-codec.js';
import { describeAuditStorageContract } from './audit-storage-contract.js';
import { describeLeaseStorageContract } from './lease-storage-contract.js';
import { loopbackClusterForSuite, redisClusterHarness } from '../support/redis-cluster-support.js';
import { RedisFaultProxy } from '../support/redis-fault-proxy.js';
import {
  REDIS_URL,
  createRedisTestStorage,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { chainOf, recordsAfter } from '../support/audit-records.js';

const up = await redisReadyFor('Redis audit storage spec');

const NOW = 1_767_000_000_000;
const appendAlone = (audit: AuditStorage, chain: AuditChainRef, count = 1, label = 'alone') =>
  audit.transaction(chain, async (writes) => {
    const records = recordsAfter(chain, await writes.lockHead(chain.chainId), count, label);
    await writes.append(records);
    return records;
  });

const createSession = (storage: SessionStorage, ref: SessionRef) =>
  storage.transaction(ref, (scope) =>
    scope.session.insertIfAbsent({
      ...ref,
      subjectId: null,
      createdAt: NOW,
      lastActivityAt: NOW,
      nextSeq: 1,
      itemTtlSeconds: 60,
      legalHold: false,
    }),
  );

async function wholeChain(audit: AuditStorage, chain: AuditChainRef): Promise<StoredAuditRecord[]> {
  const all: StoredAuditRecord[] = [];
  for (;;) {
    const page = await audit.readChain(chain, all.at(-1)?.seq ?? 0, 4);
    all.push(...page);
    if (page.length < 4) return all;
  }
}

const bodies = (records: readonly StoredAuditRecord[]) =>
  records.map((record) => (JSON.parse(record.body) as { note: string }).note);

/** The `{hash tag}` of a key name. */
const tagOf = (key: string) => key.slice(key.indexOf('{'), key.indexOf('}') + 1);

const item = (seq: number, expiresAt: number): StoredItem => ({
  seq,
  dekId: randomUUID(),
  expiresAt,
  createdAt: NOW,
  ciphertext: randomBytes(24),
});

describe.skipIf(!up)('Redis audit storage', () => {
  let redis: RedisTestStorage;
  let layout: RedisKeyLayout;
  let ref: SessionRef;
  let chain: AuditChainRef;
  let keys: RedisAuditChainKeys;
  const extraStorages: RedisSessionStorage[] = [];

  beforeEach(async () => {
    redis = await createRedisTestStorage({ expiryBackstopSeconds: 60 });
    layout = new RedisKeyLayout(redis.keyPrefix);
    ref = { tenantId: `tenant-${randomUUID()}`, sessionId: `s-${randomUUID()}` };
    chain = chainOf(ref.tenantId, ref.sessionId);
    keys = layout.forAuditChain(chain);
  });
  afterEach(async () => {
    await Promise.all(extraStorages.splice(0).map((storage) => storage.close()));
    await redis.cleanup();
  });

  /** A second storage on the same keys, as another process would have. */
  function secondStorage(): RedisSessionStorage {
    const storage = new RedisSessionStorage({ url: REDIS_URL, keyPrefix: redis.keyPrefix });
    extraStorages.push(storage);
    return storage;
  }

  const audit = () => redis.storage.audit;
  /** Runs the audit commit script as the adapter sends it. */
  function commit(commitId: string, expectedHead: Buffer, records: StoredAuditRecord[]) {
    return redis.client.eval(
      AUDIT_COMMIT_SCRIPT,
      3,
      keys.records,
      keys.head,
      keys.fenced,
      commitId,
      expectedHead,
      packAuditHead(chain, records.at(-1)!),
      String(records.length),
      '',
      ...records.flatMap((record) => [String(record.seq), packAuditRecord(record)]),
    );
  }
  const fence = (commitId: string, first: StoredAuditRecord) =>
    redis.client.eval(
      AUDIT_FENCE_SCRIPT,
      2,
      keys.records,
      keys.fenced,
      commitId,
      packAuditRecord(first),
    );

  describe('keys', () => {
    it("keeps a session's chain in the session's hash slot, the control chain and index in the tenant's", () => {
      const sessionKeys = layout.forSession(ref);
      expect(tagOf(keys.records)).toBe(tagOf(sessionKeys.session));
      expect(tagOf(keys.head)).toBe(tagOf(sessionKeys.session));
      const control = layout.forAuditChain(chainOf(ref.tenantId, null));
      const index = layout.auditIndex(ref.tenantId);
      expect(tagOf(control.head)).toBe(tagOf(index.chains));
      expect(tagOf(index.locations)).toBe(tagOf(index.chains));
      expect(tagOf(index.chains)).not.toBe(tagOf(sessionKeys.session));
      // An empty tenant id still gets a hash tag: `{}` would hash the whole key name.
      expect(tagOf(layout.auditIndex('').chains)).not.toBe('{}');
    });

    it('gives audit keys no expiry when a session write sets the expiry of its own keys', async () => {
      await createSession(redis.storage, ref);
      await redis.storage.transaction(ref, async (scope) => {
        const first = (await scope.session.reserveSequence(1, NOW))!;
        await scope.items.insertMany([item(first, Date.now() + 60_000)]);
        await scope.audit!.append(recordsAfter(chain, await scope.audit!.lockHead(chain.chainId)));
      });
      // Another write later re-applies the expiry to the session's keys.
      await redis.storage.transaction(ref, async (scope) => {
        await scope.session.lockForWrite(NOW);
        const head = await scope.audit!.lockHead(chain.chainId);
        await scope.audit!.append(recordsAfter(chain, head));
      });
      const sessionKeys = layout.forSession(ref);
      expect(await redis.client.pttl(sessionKeys.session)).toBeGreaterThan(0);
      expect(await redis.client.pttl(sessionKeys.items)).toBeGreaterThan(0);
      expect(await redis.client.pttl(keys.records)).toBe(-1);
      expect(await redis.client.pttl(keys.head)).toBe(-1);
      const index = layout.auditIndex(ref.tenantId);
      expect(await redis.client.pttl(index.chains)).toBe(-1);
      expect(await redis.client.pttl(index.locations)).toBe(-1);
    });

    it("keeps the chain when Redis drops the session's expired keys", async () => {
      await createSession(redis.storage, ref);
      const written = await appendAlone(audit(), chain, 2);
      await redis.client.del(...Object.values(layout.forSession(ref)));
      expect(await wholeChain(audit(), chain)).toEqual(written);
      expect(await audit().listHeads(ref.tenantId, '', 10)).toHaveLength(1);
    });

    it('appends in a unit of its own without creating or bumping the session hash', async () => {
      const sessionKey = layout.forSession(ref).session;
      await appendAlone(audit(), chain);
      expect(await redis.client.exists(sessionKey)).toBe(0);
      await createSession(redis.storage, ref);
      const version = await redis.client.hget(sessionKey, 'version');
      await appendAlone(audit(), chain);
      expect(await redis.client.hget(sessionKey, 'version')).toBe(version);
    });
  });

  describe('conflicts', () => {
    it('a unit run again after a session conflict writes only its last run', async () => {
      await createSession(redis.storage, ref);
      const other = secondStorage();
      let runs = 0;
      await redis.storage.transaction(ref, async (scope) => {
        runs++;
        await scope.session.lockForWrite(NOW);
        const head = await scope.audit!.lockHead(chain.chainId);
        await scope.audit!.append(recordsAfter(chain, head, 2, `run-${runs}`));
        // Another process commits to the session between this run's reads and its commit.
        if (runs === 1)
          await other.transaction(ref, (otherScope) => otherScope.session.lockForWrite(NOW));
      });
      expect(runs).toBe(2);
      const stored = await wholeChain(audit(), chain);
      expect(stored.map((record) => record.seq)).toEqual([1, 2]);
      expect(bodies(stored)).toEqual(['run-2', 'run-2']);
    });

    it("a unit run again after another unit moved the chain's head continues the new head", async () => {
      await createSession(redis.storage, ref);
      const other = secondStorage();
      let runs = 0;
      await redis.storage.transaction(ref, async (scope) => {
        runs++;
        await scope.session.lockForWrite(NOW);
        const head = await scope.audit!.lockHead(chain.chainId);
        await scope.audit!.append(recordsAfter(chain, head, 1, `run-${runs}`));
        if (runs === 1) await appendAlone(other.audit, chain, 1, 'other');
      });
      expect(runs).toBe(2);
      const stored = await wholeChain(audit(), chain);
      expect(bodies(stored)).toEqual(['other', 'run-2']);
      expect(stored[1].prevMac).toEqual(stored[0].mac);
    });

    it('an audit unit of its own re-runs after a conflict and writes its last run only', async () => {
      const other = secondStorage();
      let runs = 0;
      await audit().transaction(chain, async (writes) => {
        runs++;
        const head = await writes.lockHead(chain.chainId);
        await writes.append(recordsAfter(chain, head, 2, `run-${runs}`));
        if (runs === 1) await appendAlone(other.audit, chain, 1, 'other');
      });
      expect(runs).toBe(2);
      expect(bodies(await wholeChain(audit(), chain))).toEqual(['other', 'run-2', 'run-2']);
    });

    it("an audit unit does not make a concurrent session writer conflict when it leaves the writer's chain alone", async () => {
      await createSession(redis.storage, ref);
      const control = chainOf(ref.tenantId, null);
      let runs = 0;
      await redis.storage.transaction(ref, async (scope) => {
        runs++;
        await scope.session.lockForWrite(NOW);
        await appendAlone(audit(), control);
        await appendAlone(audit(), chainOf(ref.tenantId, 'another-session'));
      });
      expect(runs).toBe(1);
    });
  });

  describe('the tenant index', () => {
    it('skips an indexed chain that has no record yet (a first commit that failed)', async () => {
      const chains = ['a', 'b', 'c', 'd'].map((sessionId) => chainOf(ref.tenantId, sessionId));
      await (audit() as RedisAuditStorage).registerChains([chains[0], chains[2]]);
      await appendAlone(audit(), chains[1]);
      await appendAlone(audit(), chains[3]);
      const firstPage = await audit().listHeads(ref.tenantId, '', 1);
      const rest = await audit().listHeads(ref.tenantId, firstPage[0].chainId, 5);
      expect([...firstPage, ...rest].map((head) => head.chainId)).toEqual([
        chains[1].chainId,
        chains[3].chainId,
      ]);
    });

    it('refuses a chain id already used by another session of the tenant, writing nothing', async () => {
      await appendAlone(audit(), chain);
      const reused = { ...chain, sessionId: 'someone-else' };
      await expect(appendAlone(audit(), reused)).rejects.toThrow(/already a chain of another/);
      expect(await redis.client.exists(layout.forAuditChain(reused).head)).toBe(0);
    });

    it('lists the same heads from a second storage, chain ids compared as bytes', async () => {
      const ids = ['\u{1F600}', '\uFEFFbom', 'z', '\u00e9'];
      for (const sessionId of ids) await appendAlone(audit(), chainOf(ref.tenantId, sessionId));
      const listed = await secondStorage().audit.listHeads(ref.tenantId, '', 10);
      const expected = ids
        .map((sessionId) => chainOf(ref.tenantId, sessionId).chainId)
        .toSorted((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect(listed.map((head) => head.chainId)).toEqual(expected);
    });
  });

  describe('stored values', () => {
    it('reads back any Unicode and ids up to 256 characters byte for byte', async () => {
      const long = { ...chainOf(ref.tenantId, 'é'.repeat(256)), chainId: '\uFEFF'.repeat(256) };
      const [record] = recordsAfter(long, undefined);
      const odd = {
        ...record,
        actorId: '\u2028\u2029\u0000',
        subjectRef: 'r',
        body: '{"text":"\u2028 \uD83D\uDE00 \u0000"}',
      };
      await audit().transaction(long, async (writes) => {
        await writes.lockHead(long.chainId);
        await writes.append([odd]);
      });
      expect(await audit().readChain(long, 0, 5)).toEqual([odd]);
      expect((await audit().listHeads(ref.tenantId, '', 5))[0].chainId).toBe(long.chainId);
    });

    it('refuses a lone surrogate (UTF-8 cannot carry it) before anything is stored', async () => {
      await expect(
        audit().transaction(chain, async (writes) => {
          const [record] = recordsAfter(chain, await writes.lockHead(chain.chainId));
          await writes.append([{ ...record, body: '{"x":"\uD800"}' }]);
        }),
      ).rejects.toThrow(/well-formed Unicode/);
      expect(await audit().findHead(chain)).toBeUndefined();
      expect(await audit().listHeads(ref.tenantId, '', 5)).toEqual([]);
    });

    const damages: Array<{
      name: string;
      damage: (written: StoredAuditRecord[]) => Promise<unknown>;
      reads: Array<'readChain' | 'findHead' | 'lockHead' | 'listHeads'>;
      reason: RegExp;
    }> = [
      {
        name: 'a truncated record',
        damage: async (written) => {
          const member = packAuditRecord(written[1]);
          await redis.client.zrem(keys.records, member);
          await redis.client.zadd(keys.records, 2, member.subarray(0, member.length - 3));
        },
        reads: ['readChain'],
        reason: /audit record .*truncated/,
      },
      {
        name: 'a record with an unknown format byte',
        damage: async (written) => {
          const member = packAuditRecord(written[0]);
          await redis.client.zrem(keys.records, member);
          await redis.client.zadd(
            keys.records,
            1,
            Buffer.concat([Buffer.of(9), member.subarray(1)]),
          );
        },
        reads: ['readChain'],
        reason: /unknown format/,
      },
      {
        name: 'a record with trailing bytes',
        damage: async (written) => {
          const member = packAuditRecord(written[0]);
          await redis.client.zrem(keys.records, member);
          await redis.client.zadd(keys.records, 1, Buffer.concat([member, Buffer.of(0)]));
        },
        reads: ['readChain'],
        reason: /trailing bytes/,
      },
      {
        name: 'a body that is not UTF-8',
        damage: async (written) => {
          const member = packAuditRecord(written[0]);
          await redis.client.zrem(keys.records, member);
          const damaged = Buffer.from(member);
          damaged[damaged.length - 1] = 0xff;
          await redis.client.zadd(keys.records, 1, damaged);
        },
        reads: ['readChain'],
        reason: /body not UTF-8/,
      },
      {
        name: 'a record re-scored away from its seq',
        damage: (written) => redis.client.zadd(keys.records, 7, packAuditRecord(written[1])),
        reads: ['readChain'],
        reason: /score differs from its seq/,
      },
      {
        name: 'a truncated head',
        damage: async () => {
          const head = (await redis.client.getBuffer(keys.head))!;
          await redis.client.set(keys.head, head.subarray(0, 12));
        },
        reads: ['findHead', 'lockHead', 'listHeads'],
        reason: /audit chain head .*truncated/,
      },
      {
        name: "another chain's head copied over it",
        damage: async (written) => {
          const elsewhere = chainOf(ref.tenantId, 'elsewhere');
          await redis.client.set(
            keys.head,
            packAuditHead(elsewhere, { ...written[1], chainId: elsewhere.chainId }),
          );
        },
        reads: ['findHead', 'lockHead', 'listHeads'],
        reason: /chain_id of another chain/,
      },
      {
        name: 'a head of the wrong type',
        damage: async () => {
          await redis.client.del(keys.head);
          await redis.client.hset(keys.head, 'seq', '2');
        },
        reads: ['findHead', 'lockHead', 'listHeads'],
        reason: /WRONGTYPE/,
      },
      {
        name: 'an index entry with a damaged location',
        damage: () =>
          redis.client.hset(layout.auditIndex(ref.tenantId).locations, chain.chainId, 'x'),
        reads: ['listHeads'],
        reason: /index entry .*location/,
      },
    ];

    for (const { name, damage, reads, reason } of damages) {
      it(`raises IntegrityError for ${name}: ${reads.join(', ')}`, async () => {
        const written = await appendAlone(audit(), chain, 2);
        await damage(written);
        const attempts = {
          readChain: () => audit().readChain(chain, 0, 10),
          findHead: () => audit().findHead(chain),
          listHeads: () => audit().listHeads(ref.tenantId, '', 10),
          lockHead: () =>
            audit().transaction(chain, async (writes) => {
              await writes.lockHead(chain.chainId);
            }),
        };
        for (const read of reads) {
          const error = await attempts[read]().catch((caught: unknown) => caught);
          expect(error, read).toBeInstanceOf(IntegrityError);
          expect((error as Error).message, read).toMatch(reason);
        }
      });
    }

    it('returns a record of another chain as stored, for the verifier to name', async () => {
      const written = await appendAlone(audit(), chain, 1);
      const stranger = { ...written[0], chainId: 'another-chain' };
      await redis.client.zadd(keys.records, 2, packAuditRecord({ ...stranger, seq: 2 }));
      const [, second] = await audit().readChain(chain, 0, 5);
      expect(second.chainId).toBe('another-chain');
    });

    it('refuses to append past a head that was deleted while records remain, writing nothing', async () => {
      await createSession(redis.storage, ref);
      await appendAlone(audit(), chain, 2);
      await redis.client.del(keys.head);
      const before = await redis.client.zrangeBuffer(keys.records, 0, -1);
      await expect(appendAlone(audit(), chain)).rejects.toThrow(/run past its head/);
      const sessionUnit = redis.storage.transaction(ref, async (scope) => {
        await scope.session.lockForWrite(NOW);
        await scope.audit!.append(recordsAfter(chain, await scope.audit!.lockHead(chain.chainId)));
      });
      await expect(sessionUnit).rejects.toBeInstanceOf(IntegrityError);
      expect(await redis.client.zrangeBuffer(keys.records, 0, -1)).toEqual(before);
      expect(await redis.client.exists(keys.head)).toBe(0);
      expect(
        (await redis.client.zrangeBuffer(keys.records, 0, -1)).map(
          (member) => unpackAuditRecord(member, 'test').seq,
        ),
      ).toEqual([1, 2]);
    });
  });

  describe('lost replies of an audit commit', () => {
    it('answers "applied" to a commit sent again after its reply was lost, applying it once', async () => {
      const records = recordsAfter(chain, undefined, 2);
      expect(await commit('c1', Buffer.alloc(0), records)).toBe(1);
      // Another unit appends before the resend arrives.
      await appendAlone(audit(), chain);
      expect(await commit('c1', Buffer.alloc(0), records)).toBe(1);
      expect(await fence('c1', records[0])).toBe(AUDIT_FENCE_REPLY.applied);
      expect((await wholeChain(audit(), chain)).map((record) => record.seq)).toEqual([1, 2, 3]);
    });

    it('fences off a lost commit for good: sent late, it writes nothing', async () => {
      const records = recordsAfter(chain, undefined, 1);
      expect(await fence('lost', records[0])).toBe(AUDIT_FENCE_REPLY.notApplied);
      expect(await commit('lost', Buffer.alloc(0), records)).toBe(0);
      expect(await audit().findHead(chain)).toBeUndefined();
      expect(await redis.client.pttl(keys.fenced)).toBeGreaterThan(0);
    });

    it('an unreachable Redis fails an audit unit with a retryable StorageUnavailableError', async () => {
      const storage = new RedisSessionStorage({ url: 'redis://127.0.0.1:1' });
      try {
        const error = await appendAlone(storage.audit, chain).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(StorageUnavailableError);
      } finally {
        await storage.close();
      }
    });
  });
});

/** The audit commit (and fence) scripts; ioredis sends them as EVALSHA, EVAL after NOSCRIPT. */
const SCRIPT_REQUEST = /\r\nevalsha\r\n|\r\neval\r\n/i;

describe.skipIf(!up)('Redis audit commits in flight when the connection breaks', () => {
  let proxy: RedisFaultProxy;
  let redis: RedisTestStorage;
  let chain: AuditChainRef;

  beforeEach(async () => {
    const target = new URL(REDIS_URL);
    proxy = await RedisFaultProxy.start({
      host: target.hostname,
      port: Number(target.port || 6379),
    });
    redis = await createRedisTestStorage(
      { commandTimeoutMs: 400 },
      { url: proxy.url(Number(target.pathname.slice(1) || 0)) },
    );
    chain = chainOf(`tenant-${randomUUID()}`, 's1');
    // The chain exists and is indexed, so the next script sent is the audit commit itself.
    await appendAlone(redis.storage.audit, chain);
  });
  afterEach(async () => {
    await redis.cleanup();
    await proxy.close();
  });

  const killFaultedServerSide = () =>
    redis.client.call('CLIENT', 'KILL', 'ADDR', proxy.upstreamAddr);

  it('a commit whose reply was lost settles as applied, once', async () => {
    const armed = proxy.arm(SCRIPT_REQUEST, 'drop-replies');
    const call = appendAlone(redis.storage.audit, chain, 1, 'lost-reply');
    await armed;
    await killFaultedServerSide();

    await expect(call).resolves.toHaveLength(1);
    expect(bodies(await wholeChain(redis.storage.audit, chain))).toEqual(['alone', 'lost-reply']);
  }, 10_000);

  it('a commit that never reached Redis is fenced off: nothing was written, and it never will be', async () => {
    const armed = proxy.arm(SCRIPT_REQUEST, 'hold-requests');
    const call = appendAlone(redis.storage.audit, chain, 1, 'held');
    await armed;
    await killFaultedServerSide();

    const error = await call.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect((error as Error).message).toMatch(/nothing was written; retry/);
    await appendAlone(redis.storage.audit, chain, 1, 'next');
    expect(bodies(await wholeChain(redis.storage.audit, chain))).toEqual(['alone', 'next']);
  }, 10_000);
});

describe.skipIf(!up)('Redis audit storage on a Redis Cluster', () => {
  const cluster = loopbackClusterForSuite();

  const clusterHarness = redisClusterHarness(cluster);

  describeAuditStorageContract('redis cluster', clusterHarness);
  // The replica: a second Cluster client under the same key prefix.
  describeLeaseStorageContract('redis cluster', clusterHarness, async (harness) => {
    const client = cluster.client();
    const keyPrefix = (harness.storage as RedisSessionStorage).keyPrefix;
    const replica = new RedisSessionStorage({ client, keyPrefix });
    return { leases: replica.leases, close: async () => client.disconnect() };
  });

  it("commits session units with their records in each session's slot, and lists heads on every master", async () => {
    const harness = await clusterHarness();
    const client = cluster.client();
    try {
      const { storage } = harness;
      const layout = new RedisKeyLayout((storage as RedisSessionStorage).keyPrefix);
      const tenantId = `tenant-${randomUUID()}`;
      // Two sessions on each master: ids are drawn until every master has its share.
      const ranges = await client.cluster('SLOTS');
      const ownerOf = (slot: number) =>
        ranges.find(([first, last]) => slot >= first && slot <= last)![2][1];
      const perOwner = new Map<number, number>();
      const refs: SessionRef[] = [];
      while (refs.length < 2 * ranges.length) {
        const candidate = { tenantId, sessionId: `s-${randomUUID()}` };
        const owner = ownerOf(
          await client.cluster('KEYSLOT', layout.forSession(candidate).session),
        );
        if ((perOwner.get(owner) ?? 0) >= 2) continue;
        perOwner.set(owner, (perOwner.get(owner) ?? 0) + 1);
        refs.push(candidate);
      }
      const written = new Map<string, StoredAuditRecord[]>();
      for (const sessionRef of refs) {
        const sessionChain = chainOf(tenantId, sessionRef.sessionId);
        await createSession(storage, sessionRef);
        const records = await storage.transaction(sessionRef, async (scope) => {
          const first = (await scope.session.reserveSequence(1, NOW))!;
          await scope.items.insertMany([item(first, Date.now() + 60_000)]);
          const head = await scope.audit!.lockHead(sessionChain.chainId);
          const appended = recordsAfter(sessionChain, head, 2);
          await scope.audit!.append(appended);
          return appended;
        });
        written.set(sessionChain.chainId, records);
      }
      const control = chainOf(tenantId, null);
      written.set(control.chainId, await appendAlone(storage.audit!, control, 1));

      const heads = await storage.audit!.listHeads(tenantId, '', 100);
      expect(heads.map((head) => head.chainId)).toEqual(
        [...written.keys()].toSorted((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      );
      for (const [chainId, records] of written) {
        const head = heads.find((candidate) => candidate.chainId === chainId)!;
        expect(head.seq).toBe(records.length);
        expect(head.mac).toEqual(records.at(-1)!.mac);
      }

      for (const sessionRef of refs) {
        const headKey = layout.forAuditChain(chainOf(tenantId, sessionRef.sessionId)).head;
        const slot = await client.cluster('KEYSLOT', headKey);
        expect(slot).toBe(await client.cluster('KEYSLOT', layout.forSession(sessionRef).session));
        expect(await client.pttl(headKey)).toBe(-1);
        expect(await client.pttl(layout.forSession(sessionRef).items)).toBeGreaterThan(0);
      }
    } finally {
      client.disconnect();
      await harness.close();
    }
  });
});
