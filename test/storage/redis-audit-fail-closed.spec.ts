import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditTrail, auditChainOf } from '../../src/audit/index.js';
import {
  AuditWriteError,
  EncryptedSessionService,
  StorageUnavailableError,
  runAs,
  type SessionRef,
} from '../../src/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import type { SessionStorage } from '../../src/storage/storage.ports.js';
import { appendWithAudit, chainOf, recordsAfter } from '../support/audit-records.js';
import {
  REDIS_URL,
  createRedisTestStorage,
  failFastRedis,
  redisItemTamperer,
  redisReadyFor,
  startPrivateRedis,
  type PrivateRedis,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { newSessionRecord } from '../support/session-records.js';
import { assembleHarness, userMessage } from '../support/session-harness.js';

/*
 * Fail closed on Redis, with real refusals of a real server (no mock): an audit key of another
 * type than the module writes there, and a server out of memory under `noeviction`. The change
 * and its audit record are one commit script: when Redis refuses the record, the operation
 * fails with AuditWriteError and nothing of it is stored. Redis being unreachable stays a
 * retryable StorageUnavailableError.
 */

const up = await redisReadyFor('Redis audit fail-closed spec');

const CANARY = 'canary-redis-audit-body-5c1e';

/** An audit unit of its own (a read's event) on the session's chain; returns what it threw. */
async function auditAlone(storage: SessionStorage, ref: SessionRef, body = 'x') {
  const chain = chainOf(ref.tenantId, ref.sessionId);
  return storage
    .audit!.transaction(chain, async (writes) => {
      await writes.append(recordsAfter(chain, await writes.lockHead(chain.chainId), 1, body));
    })
    .then(
      () => undefined,
      (error: unknown) => error,
    );
}

/** What the session holds, read through `storage`: its items' seqs, counter and chain seq. */
async function storedState(storage: SessionStorage, ref: SessionRef) {
  const chain = chainOf(ref.tenantId, ref.sessionId);
  return {
    items: await storage.read(ref, async (scope) =>
      (await scope.items.listVisible(0, 100)).map((stored) => stored.seq),
    ),
    nextSeq: (await storage.read(ref, (scope) => scope.session.find()))!.nextSeq,
    chainSeq: (await storage.audit!.findHead(chain))?.seq ?? 0,
  };
}

/** Checks an error is the fail-closed AuditWriteError, and that it leaks nothing. */
function expectFailedClosed(error: unknown, keyPrefix: string, ref: SessionRef) {
  expect(error).toBeInstanceOf(AuditWriteError);
  const { message, code } = error as AuditWriteError;
  expect(code).toBe('AUDIT_WRITE_FAILED');
  expect(message).toMatch(/nothing of it was stored/);
  for (const secret of [CANARY, keyPrefix, ref.sessionId]) expect(message).not.toContain(secret);
}

describe.skipIf(!up)('Redis: an audit key of another type fails the change closed', () => {
  let redis: RedisTestStorage;
  let layout: RedisKeyLayout;
  let ref: SessionRef;
  const extraStorages: RedisSessionStorage[] = [];

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    layout = new RedisKeyLayout(redis.keyPrefix);
    ref = { tenantId: `fail-closed-${randomUUID()}`, sessionId: `s-${randomUUID()}` };
    await redis.storage.transaction(ref, (scope) =>
      scope.session.insertIfAbsent(newSessionRecord(ref)),
    );
    const failed = await appendWithAudit(redis.storage, ref);
    if (failed) throw failed;
  });
  afterEach(async () => {
    await Promise.all(extraStorages.splice(0).map((storage) => storage.close()));
    await redis.cleanup();
  });

  /** A storage of its own on the same keys, as a fresh process reads them. */
  function freshStorage(): RedisSessionStorage {
    const storage = new RedisSessionStorage({ url: REDIS_URL, keyPrefix: redis.keyPrefix });
    extraStorages.push(storage);
    return storage;
  }

  const chainKeys = () => layout.forAuditChain(chainOf(ref.tenantId, ref.sessionId));

  it('the records key a string: AuditWriteError, the item not stored, the key not overwritten', async () => {
    const before = await storedState(freshStorage(), ref);
    expect(before).toEqual({ items: [1], nextSeq: 2, chainSeq: 1 });
    const { records } = chainKeys();
    await redis.client.del(records);
    await redis.client.set(records, 'overwritten');

    expectFailedClosed(await appendWithAudit(redis.storage, ref, CANARY), redis.keyPrefix, ref);
    expectFailedClosed(await auditAlone(redis.storage, ref, CANARY), redis.keyPrefix, ref);
    expect(await storedState(freshStorage(), ref)).toEqual(before);
    expect(await redis.client.get(records)).toBe('overwritten');
  });

  it('an access-report index a string: refused before the commit writes anything', async () => {
    // The index is written after the records in the script: without the type check up front,
    // the item and the record would stay stored when its ZADD failed.
    const before = await storedState(freshStorage(), ref);
    const { byTime } = chainKeys();
    await redis.client.del(byTime);
    await redis.client.set(byTime, 'overwritten');

    expectFailedClosed(await appendWithAudit(redis.storage, ref, CANARY), redis.keyPrefix, ref);
    expectFailedClosed(await auditAlone(redis.storage, ref, CANARY), redis.keyPrefix, ref);
    expect(await storedState(freshStorage(), ref)).toEqual(before);
    expect(await redis.client.zcard(chainKeys().records)).toBe(1);
  });

  it('through the session service: addItems rejects, and a fresh session reads no new item', async () => {
    const harness = assembleHarness(
      'redis',
      redis.storage,
      {},
      {
        tamper: redisItemTamperer(redis.client, redis.keyPrefix),
      },
    );
    const trail = () =>
      new AuditTrail(redis.storage.audit, new KeyRingAuditKeys(harness.keyRing, 86_400_000), {
        requireActor: true,
        reads: 'group-commit',
      });
    const sessions = new EncryptedSessionService(
      redis.storage,
      harness.keyRing,
      undefined,
      trail(),
    );
    const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };
    const sessionId = `visit-${randomUUID()}`;
    await runAs(actor, async () => {
      const session = await sessions.open(sessionId, { tenantId: 'clinic' });
      await session.addItems([userMessage('kept')]);
    });
    const { records } = layout.forAuditChain(auditChainOf({ tenantId: 'clinic', sessionId }));
    const saved = await redis.client.dumpBuffer(records);
    await redis.client.del(records);
    await redis.client.set(records, 'overwritten');

    const error = await runAs(actor, async () => {
      const session = await sessions.open(sessionId, { tenantId: 'clinic' });
      return session.addItems([userMessage(CANARY)]).then(
        () => undefined,
        (caught: unknown) => caught,
      );
    });
    expectFailedClosed(error, redis.keyPrefix, { tenantId: 'clinic', sessionId });

    // The trail repaired, a fresh process reads the session: the refused item is not there.
    await redis.client.restore(records, 0, saved, 'REPLACE');
    const fresh = freshStorage();
    // The same root key, as the next process of the app has it.
    const freshHarness = assembleHarness(
      'redis',
      fresh,
      { provider: harness.provider },
      {
        tamper: redisItemTamperer(redis.client, redis.keyPrefix),
      },
    );
    const freshSessions = new EncryptedSessionService(
      fresh,
      freshHarness.keyRing,
      undefined,
      new AuditTrail(fresh.audit, new KeyRingAuditKeys(freshHarness.keyRing, 86_400_000), {
        requireActor: true,
        reads: 'group-commit',
      }),
    );
    const items = await runAs(actor, async () =>
      (await freshSessions.open(sessionId, { tenantId: 'clinic' })).getItems(),
    );
    expect(items).toEqual([userMessage('kept')]);
  });
});

/** A redis-server of the test's own, a fail-fast client on it and a storage over that client. */
interface OwnRedis {
  readonly server: PrivateRedis;
  readonly client: Redis;
  readonly storage: RedisSessionStorage;
}

describe.skipIf(!up)(
  'Redis out of memory (a server of its own, maxmemory under noeviction)',
  () => {
    let own: OwnRedis | undefined;

    afterEach(async () => {
      await own?.storage.close();
      own?.client.disconnect();
      // Nothing to restore on the shared Redis: this server is the test's own, and stops here.
      await own?.server.stop();
      own = undefined;
    });

    async function startOwnRedis(): Promise<OwnRedis> {
      const server = await startPrivateRedis(['--maxmemory-policy', 'noeviction']);
      const client = failFastRedis(`redis://127.0.0.1:${server.port}`);
      own = {
        server,
        client,
        storage: new RedisSessionStorage({ client, keyPrefix: 'nes:', commandTimeoutMs: 2000 }),
      };
      await client.connect();
      return own;
    }

    it('OOM refuses the commit: AuditWriteError, nothing stored; once memory is back, it commits', async () => {
      const { client, storage } = await startOwnRedis();
      const ref = { tenantId: 'oom', sessionId: 'session-1' };
      await storage.transaction(ref, (scope) =>
        scope.session.insertIfAbsent(newSessionRecord(ref)),
      );
      expect(await appendWithAudit(storage, ref)).toBeUndefined();
      const before = await storedState(storage, ref);

      await client.config('SET', 'maxmemory', '1');
      try {
        const error = await appendWithAudit(storage, ref, CANARY);
        expectFailedClosed(error, 'nes:', ref);
        expect(String((error as Error).cause)).toMatch(/OOM/);
        expectFailedClosed(await auditAlone(storage, ref, CANARY), 'nes:', ref);
        expect(await storedState(storage, ref)).toEqual(before);
      } finally {
        await client.config('SET', 'maxmemory', '0');
      }
      expect(await appendWithAudit(storage, ref)).toBeUndefined();
      expect(await storedState(storage, ref)).toEqual({ items: [1, 2], nextSeq: 3, chainSeq: 2 });
    });

    it('Redis unreachable stays a retryable StorageUnavailableError, not AuditWriteError', async () => {
      const { server, storage } = await startOwnRedis();
      const ref = { tenantId: 'down', sessionId: 'session-1' };
      await storage.transaction(ref, (scope) =>
        scope.session.insertIfAbsent(newSessionRecord(ref)),
      );
      await server.stop();
      expect(await appendWithAudit(storage, ref)).toBeInstanceOf(StorageUnavailableError);
      expect(await auditAlone(storage, ref)).toBeInstanceOf(StorageUnavailableError);
    });
  },
);
