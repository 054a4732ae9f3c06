import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditTrail,
  auditChainOf,
  signingKeyIdOf,
  type AuditCheckpoint,
} from '../../src/audit/index.js';
import { AuditService, EncryptedSessionService, IntegrityError, runAs } from '../../src/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { RedisKeyLayout, redisTenantTag } from '../../src/storage/redis/redis-keys.js';
import { packAuditHead, packCheckpoint } from '../../src/storage/redis/redis-record-codec.js';
import type { StoredCheckpoint } from '../../src/storage/storage.records.js';
import { loopbackClusterForSuite } from '../support/redis-cluster-support.js';
import {
  REDIS_URL,
  createRedisTestStorage,
  redisItemTamperer,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { assembleHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

/*
 * Checkpoints on Redis: a tenant's signed checkpoints in a zset in the tenant's slot, appended
 * once per seq (a replica that loses the race for a seq hears false), read back defensively,
 * and driven end to end by AuditService.checkpoint() and verify().
 */

const up = await redisReadyFor('Redis audit checkpoints spec');

const checkpointOf = (tenantId: string, seq: number, note = 'x'): StoredCheckpoint => ({
  tenantId,
  seq,
  checkpointId: randomUUID(),
  time: 1_767_000_000_000 + seq,
  checkpoint: JSON.stringify({ seq, note, text: 'é\u2028' }),
  heads: JSON.stringify([[`s.${seq}`, seq, randomBytes(32).toString('base64url')]]),
});

/** A fresh Ed25519 signing key for checkpoints. */
function signer() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, keyId: signingKeyIdOf(publicKey) };
}

describe.skipIf(!up)('Redis audit checkpoints: storage', () => {
  let redis: RedisTestStorage;
  let layout: RedisKeyLayout;
  let tenantId: string;
  const extraStorages: RedisSessionStorage[] = [];

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    layout = new RedisKeyLayout(redis.keyPrefix);
    tenantId = `tenant-${randomUUID()}`;
  });
  afterEach(async () => {
    await Promise.all(extraStorages.splice(0).map((storage) => storage.close()));
    await redis.cleanup();
  });

  const audit = () => redis.storage.audit;
  const key = () => layout.auditCheckpoints(tenantId);

  it('stores checkpoints in the tenant slot and returns the highest seq, byte for byte', async () => {
    expect(await audit().latestCheckpoint(tenantId)).toBeUndefined();
    const first = checkpointOf(tenantId, 1);
    const second = checkpointOf(tenantId, 2);
    expect(await audit().appendCheckpoint(first)).toBe(true);
    expect(await audit().latestCheckpoint(tenantId)).toEqual(first);
    expect(await audit().appendCheckpoint(second)).toBe(true);
    expect(await audit().latestCheckpoint(tenantId)).toEqual(second);
    // The tenant's hash tag, as its chain index and control chain: one slot on a Cluster.
    expect(key()).toContain(`{${redisTenantTag(tenantId)}}`);
    expect(key().startsWith(redis.keyPrefix)).toBe(true);
    expect(await redis.client.zcard(key())).toBe(2);
    // Another tenant sees none of them.
    expect(await audit().latestCheckpoint(`${tenantId}-other`)).toBeUndefined();
  });

  it('refuses a seq already taken (false) and never overwrites it', async () => {
    const stored = checkpointOf(tenantId, 1, 'first');
    expect(await audit().appendCheckpoint(stored)).toBe(true);
    expect(await audit().appendCheckpoint(checkpointOf(tenantId, 1, 'second'))).toBe(false);
    expect(await audit().appendCheckpoint(stored)).toBe(false);
    expect(await audit().latestCheckpoint(tenantId)).toEqual(stored);
    expect(await redis.client.zcard(key())).toBe(1);
  });

  it('a concurrent append of one seq from two storages: exactly one wins', async () => {
    const other = new RedisSessionStorage({ url: REDIS_URL, keyPrefix: redis.keyPrefix });
    extraStorages.push(other);
    const contenders = Array.from({ length: 8 }, (_, index) =>
      checkpointOf(tenantId, 1, `contender-${index}`),
    );
    const results = await Promise.all(
      contenders.map((checkpoint, index) =>
        (index % 2 === 0 ? audit() : other.audit).appendCheckpoint(checkpoint),
      ),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = contenders[results.indexOf(true)];
    expect(await audit().latestCheckpoint(tenantId)).toEqual(winner);
    expect(await redis.client.zcard(key())).toBe(1);
  });

  describe('a damaged stored checkpoint is an IntegrityError that says what to do', () => {
    const damages: Array<[string, (tenant: string) => Promise<void>, RegExp]> = [
      [
        'bytes that are no checkpoint',
        async () => {
          await redis.client.zadd(key(), 1, Buffer.from('not a checkpoint'));
        },
        /unknown format|truncated/,
      ],
      [
        'a checkpoint with trailing bytes',
        async (tenant) => {
          const packed = packCheckpoint(checkpointOf(tenant, 1));
          await redis.client.zadd(key(), 1, Buffer.concat([packed, Buffer.of(0)]));
        },
        /trailing bytes/,
      ],
      [
        'a checkpoint at a score that is not its seq',
        async (tenant) => {
          await redis.client.zadd(key(), 5, packCheckpoint(checkpointOf(tenant, 1)));
        },
        /score differs from its seq/,
      ],
      [
        "another tenant's checkpoint copied in",
        async () => {
          await redis.client.zadd(key(), 1, packCheckpoint(checkpointOf('someone-else', 1)));
        },
        /another tenant/,
      ],
      [
        'two checkpoints at one seq',
        async (tenant) => {
          await redis.client.zadd(key(), 2, packCheckpoint(checkpointOf(tenant, 2, 'a')));
          await redis.client.zadd(key(), 2, packCheckpoint(checkpointOf(tenant, 2, 'b')));
        },
        /two checkpoints at one seq/,
      ],
    ];
    it.each(damages)('%s', async (_name, damage, reason) => {
      await damage(tenantId);
      const error = await audit()
        .latestCheckpoint(tenantId)
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(IntegrityError);
      expect((error as Error).message).toMatch(reason);
      expect((error as Error).message).toMatch(/restore the tenant's checkpoints from a backup/);
      expect((error as Error).message).not.toContain(redis.keyPrefix);
    });

    it('a checkpoint key of another type', async () => {
      await redis.client.set(key(), 'overwritten');
      await expect(audit().latestCheckpoint(tenantId)).rejects.toBeInstanceOf(IntegrityError);
    });
  });
});

/** Sessions and the audit service over one trail on a Redis storage, signing checkpoints. */
interface RedisAuditRig {
  readonly harness: SessionHarness;
  readonly redis: RedisTestStorage;
  readonly sessions: EncryptedSessionService;
  readonly audit: AuditService;
  close(): Promise<void>;
}

/** Sessions and the audit service over `storage`, with a fresh checkpoint signing key. */
function auditOn(harness: SessionHarness, storage: RedisSessionStorage) {
  const trail = new AuditTrail(storage.audit, new KeyRingAuditKeys(harness.keyRing, 86_400_000), {
    requireActor: true,
    reads: 'group-commit',
    checkpointSigner: signer(),
  });
  return {
    sessions: new EncryptedSessionService(storage, harness.keyRing, undefined, trail),
    audit: new AuditService(trail),
  };
}

async function redisAuditRig(): Promise<RedisAuditRig> {
  const redis = await createRedisTestStorage();
  const harness = assembleHarness(
    'redis',
    redis.storage,
    {},
    {
      tamper: redisItemTamperer(redis.client, redis.keyPrefix),
      cleanup: () => redis.cleanup(),
    },
  );
  return { harness, redis, ...auditOn(harness, redis.storage), close: () => harness.close() };
}

describe.skipIf(!up)('Redis audit checkpoints: end to end', () => {
  let rig: RedisAuditRig;
  let tenantId: string;
  const actor = () => ({ type: 'user' as const, id: 'nurse-17', tenantId });

  beforeEach(async () => {
    rig = await redisAuditRig();
    tenantId = `clinic-${randomUUID()}`;
  });
  afterEach(() => rig.close());

  /** Two sessions with a few records each, and a checkpoint over them. */
  async function checkpointedTenant() {
    await runAs(actor(), async () => {
      for (const sessionId of ['a', 'b']) {
        const session = await rig.sessions.open(sessionId, { tenantId });
        await session.addItems([userMessage('one')]);
        await session.getItems();
      }
    });
    return runAs(actor(), () => rig.audit.checkpoint({ tenantId }));
  }
  const verify = (external?: AuditCheckpoint) =>
    runAs(actor(), () => rig.audit.verify({ tenantId, checkpoint: external }));
  const checkpointsKey = () => new RedisKeyLayout(rig.redis.keyPrefix).auditCheckpoints(tenantId);

  it('checkpoint() stores on Redis, linked to the one before; verify measures against it', async () => {
    const first = await checkpointedTenant();
    expect(first.chains).toBe(2);
    const next = await runAs(actor(), () => rig.audit.checkpoint({ tenantId }));
    expect(next.previousSignature).toBe(first.signature);
    expect(await rig.redis.client.zcard(checkpointsKey())).toBe(2);
    const result = await verify();
    expect(result.ok).toBe(true);
    expect(result.checkpoint).toEqual({ ok: true, checkpointId: next.checkpointId });
  });

  it('two replicas checkpointing at once: both succeed, with seqs 1 and 2', async () => {
    await checkpointedTenant();
    const [one, two] = await runAs(actor(), () =>
      Promise.all([rig.audit.checkpoint({ tenantId }), rig.audit.checkpoint({ tenantId })]),
    );
    expect(one.checkpointId).not.toBe(two.checkpointId);
    // The tenant's first checkpoint plus these two.
    expect(await rig.redis.client.zcard(checkpointsKey())).toBe(3);
    expect((await verify()).ok).toBe(true);
  });

  it('a cut tail: the chain ends before its checkpointed head', async () => {
    await checkpointedTenant();
    const chain = auditChainOf({ tenantId, sessionId: 'a' });
    const keys = new RedisKeyLayout(rig.redis.keyPrefix).forAuditChain(chain);
    const [kept] = await rig.redis.storage.audit.readChain(chain, 1, 1);
    await rig.redis.client.zremrangebyscore(keys.records, kept.seq + 1, '+inf');
    await rig.redis.client.set(keys.head, packAuditHead(chain, kept));
    const result = (await verify()).chains.find((entry) => entry.chainId === chain.chainId);
    expect(result).toMatchObject({ ok: false, reason: 'truncated', firstBadSeq: kept.seq + 1 });
  });

  it('a checkpoint edited in Redis: its signature no longer holds', async () => {
    await checkpointedTenant();
    const [member] = await rig.redis.client.zrangeBuffer(checkpointsKey(), 0, 0);
    const edited = Buffer.from(
      member.toString('latin1').replace('"chains":2', '"chains":1'),
      'latin1',
    );
    expect(edited.equals(member)).toBe(false);
    await rig.redis.client
      .multi()
      .zrem(checkpointsKey(), member)
      .zadd(checkpointsKey(), 1, edited)
      .exec();
    expect((await verify()).checkpoint).toMatchObject({
      ok: false,
      reason: 'checkpoint_signature',
    });
  });

  it("the newest checkpoint deleted: missing, against the sink's copy", async () => {
    await checkpointedTenant();
    const newest = await runAs(actor(), () => rig.audit.checkpoint({ tenantId }));
    await rig.redis.client.zremrangebyscore(checkpointsKey(), 2, 2);
    expect((await verify(newest)).checkpoint).toMatchObject({
      ok: false,
      reason: 'checkpoint_missing',
    });
  });
});

describe.skipIf(!up)('Redis audit checkpoints on a Redis Cluster', () => {
  const cluster = loopbackClusterForSuite();

  it("takes and verifies a checkpoint over sessions in many slots, stored in the tenant's slot", async () => {
    const client = cluster.client();
    const storage = new RedisSessionStorage({
      client,
      keyPrefix: `nes-${randomUUID().slice(0, 8)}:`,
    });
    const harness = assembleHarness(
      'redis-cluster',
      storage,
      {},
      {
        tamper: redisItemTamperer(client, storage.keyPrefix),
      },
    );
    try {
      const { sessions, audit } = auditOn(harness, storage);
      const tenantId = `clinic-${randomUUID()}`;
      const as = { type: 'user' as const, id: 'nurse-17', tenantId };
      const sessionIds = Array.from({ length: 6 }, (_, index) => `visit-${index}`);
      await runAs(as, async () => {
        for (const sessionId of sessionIds) {
          const session = await sessions.open(sessionId, { tenantId });
          await session.addItems([userMessage('one')]);
        }
      });
      const first = await runAs(as, () => audit.checkpoint({ tenantId }));
      expect(first.chains).toBe(sessionIds.length);
      const next = await runAs(as, () => audit.checkpoint({ tenantId }));
      expect(next.previousSignature).toBe(first.signature);
      const result = await runAs(as, () => audit.verify({ tenantId }));
      expect(result.ok).toBe(true);
      expect(result.checkpoint).toEqual({ ok: true, checkpointId: next.checkpointId });

      const layout = new RedisKeyLayout(storage.keyPrefix);
      expect(await client.cluster('KEYSLOT', layout.auditCheckpoints(tenantId))).toBe(
        await client.cluster('KEYSLOT', layout.auditIndex(tenantId).chains),
      );
      expect(await client.zcard(layout.auditCheckpoints(tenantId))).toBe(2);
    } finally {
      await harness.close();
      client.disconnect();
    }
  });
});
