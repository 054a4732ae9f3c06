import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect, createServer, type AddressInfo } from 'node:net';
import { Redis, type Cluster } from 'ioredis';
import { type SessionRef } from '../../src/index.js';
import {
  RedisSessionStorage,
  type RedisSessionStorageOptions,
} from '../../src/storage/redis/redis.session-storage.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import {
  packDataKey,
  packItem,
  packOperation,
  SESSION_FIELDS,
  unpackDataKey,
  unpackItem,
  unpackOperation,
} from '../../src/storage/redis/redis-record-codec.js';
import { TamperRefusedError, type ItemTamperer } from './item-tamperer.js';
import { LOCAL_SERVERS } from './service-availability.js';

export type { ItemTamperer } from './item-tamperer.js';

/** The Redis the integration specs use. */
export const REDIS_URL = process.env.NES_TEST_REDIS_URL ?? LOCAL_SERVERS.redis.url;

/**
 * A client that fails at once instead of queueing and retrying while the server is down. It
 * connects on `connect()`, not before.
 */
export function failFastRedis(url: string, connectTimeoutMs = 1000): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  return client;
}

/** True when Redis at `url` answers PING within about a second. */
export async function redisAvailable(url = REDIS_URL): Promise<boolean> {
  const client = failFastRedis(url);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * Whether a spec needing Redis can run. Outside CI a missing Redis skips the suite with a loud
 * warning; under CI (`CI=true`) it fails, so a broken service never passes as green.
 * Use with top-level await: `describe.skipIf(!(await redisReadyFor('...')))`.
 */
export async function redisReadyFor(suite: string): Promise<boolean> {
  const up = await redisAvailable();
  if (up) return true;
  if (process.env.CI === 'true') {
    throw new Error(
      `${suite} needs Redis at ${REDIS_URL} (NES_TEST_REDIS_URL), which did not answer PING; CI must provide it`,
    );
  }
  // oxlint-disable-next-line no-console -- a skipped suite must not pass unnoticed
  console.warn(
    `\n!!! SKIPPING ${suite}: no Redis at ${REDIS_URL}. Start one (redis-server) or set NES_TEST_REDIS_URL.\n`,
  );
  return false;
}

/** A Redis storage under a key prefix of its own, and a plain client to inspect or tamper. */
export interface RedisTestStorage {
  storage: RedisSessionStorage;
  keyPrefix: string;
  /** A separate client (not the storage's), for inspection and tampering. */
  client: Redis;
  /** Closes the storage, deletes every key under the prefix and quits the client. */
  cleanup(): Promise<void>;
}

/** Every key under `prefix`, found with SCAN (never KEYS, which blocks the server). */
export async function keysUnderPrefix(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

/** Deletes every key under `prefix` (UNLINK, 500 at a time). */
export async function deleteKeysUnderPrefix(client: Redis, prefix: string): Promise<void> {
  const keys = await keysUnderPrefix(client, prefix);
  for (let start = 0; start < keys.length; start += 500) {
    await client.unlink(...keys.slice(start, start + 500));
  }
}

/**
 * A fresh storage under a unique prefix. It creates its own client from {@link REDIS_URL}
 * unless `connection` names another url or a host client (which cleanup leaves open).
 */
export async function createRedisTestStorage(
  options: Omit<RedisSessionStorageOptions, 'client' | 'url' | 'keyPrefix'> = {},
  connection: Pick<RedisSessionStorageOptions, 'client' | 'url'> = { url: REDIS_URL },
): Promise<RedisTestStorage> {
  const keyPrefix = `nes-test-${randomUUID().slice(0, 8)}:`;
  const storage = new RedisSessionStorage({ ...options, ...connection, keyPrefix });
  const client = new Redis(REDIS_URL);
  return {
    storage,
    keyPrefix,
    client,
    async cleanup() {
      await storage.close();
      await deleteKeysUnderPrefix(client, keyPrefix);
      await client.quit();
    },
  };
}

/** An {@link ItemTamperer} that rewrites the raw Redis structures, re-packing members. */
export function redisItemTamperer(client: Redis | Cluster, keyPrefix: string): ItemTamperer {
  const layout = new RedisKeyLayout(keyPrefix);
  const itemsKey = (ref: SessionRef) => layout.forSession(ref).items;

  async function memberAt(ref: SessionRef, seq: number): Promise<Buffer> {
    const [member] = await client.zrangeBuffer(itemsKey(ref), seq, seq, 'BYSCORE');
    if (!member) throw new Error(`No item at seq ${seq} to tamper with`);
    return member;
  }

  /** Replaces the member at `seq` with a re-packed, changed copy (same score unless moved). */
  async function rewrite(
    ref: SessionRef,
    seq: number,
    change: (item: ReturnType<typeof unpackItem>) => void,
  ): Promise<void> {
    const member = await memberAt(ref, seq);
    const item = unpackItem(member);
    change(item);
    await client
      .multi()
      .zremrangebyscore(itemsKey(ref), item.seq, item.seq)
      .zrem(itemsKey(ref), member)
      .zadd(itemsKey(ref), item.seq, packItem(item))
      .exec();
  }

  return {
    ciphertextOf: async (ref, seq) => unpackItem(await memberAt(ref, seq)).ciphertext,
    setCiphertext: (ref, seq, ciphertext) =>
      rewrite(ref, seq, (item) => (item.ciphertext = Buffer.from(ciphertext))),
    dekIdOf: async (ref, seq) => unpackItem(await memberAt(ref, seq)).dekId,
    setDekId: (ref, seq, dekId) => rewrite(ref, seq, (item) => (item.dekId = dekId)),
    setExpiresAt: (ref, seq, expiresAt) =>
      rewrite(ref, seq, (item) => (item.expiresAt = expiresAt)),
    moveItem: (ref, fromSeq, toSeq) => rewrite(ref, fromSeq, (item) => (item.seq = toSeq)),
    deleteItem: async (ref, seq) => {
      await client.zremrangebyscore(itemsKey(ref), seq, seq);
    },
    countItems: (ref) => client.zcard(itemsKey(ref)),
    destroyKeys: async (ref) => {
      const keysKey = layout.forSession(ref).dataKeys;
      const packed = await client.hgetallBuffer(keysKey);
      for (const [dekId, value] of Object.entries(packed)) {
        const record = unpackDataKey(dekId, value);
        const destroyed = {
          ...record,
          state: 'destroyed' as const,
          wrappedKey: Buffer.alloc(0),
          destroyedAt: Date.now(),
        };
        await client.hset(keysKey, dekId, packDataKey(destroyed));
      }
    },
    async damageItem(ref, seq, damage) {
      // Members are packed bytes with fixed-width unsigned fields: only an out-of-range number
      // can be written; a value of another type has no encoding to be damaged into.
      if (damage.as !== 'beyond-2^53') {
        throw new TamperRefusedError('not-expressible', `Redis items hold no ${damage.as}`);
      }
      const member = await memberAt(ref, seq);
      const damaged = Buffer.from(member);
      const huge = 2n ** 60n;
      damaged.writeBigUInt64BE(huge, damage.field === 'seq' ? 0 : 44);
      await client
        .multi()
        .zrem(itemsKey(ref), member)
        // The score follows the member's seq, as the adapter itself would write it.
        .zadd(itemsKey(ref), damage.field === 'seq' ? huge.toString() : seq, damaged)
        .exec();
    },
    async setOperationDekId(ref, operationId, dekId) {
      const operationsKey = layout.forSession(ref).operations;
      const packed = await client.hgetBuffer(operationsKey, operationId);
      if (!packed) throw new Error(`No operation ${operationId} in session ${ref.sessionId}`);
      const record = unpackOperation(operationId, packed, ref.sessionId);
      await client.hset(operationsKey, operationId, packOperation({ ...record, dekId }));
    },
    async setNextSeq(ref, nextSeq) {
      await client.hset(layout.forSession(ref).session, SESSION_FIELDS.nextSeq, String(nextSeq));
    },
    async countActiveKeys(ref) {
      const packed = await client.hgetallBuffer(layout.forSession(ref).dataKeys);
      return Object.entries(packed).filter(
        ([dekId, value]) => unpackDataKey(dekId, value).state === 'active',
      ).length;
    },
    async deleteSessionRow(ref) {
      await client.del(layout.forSession(ref).session);
    },
  };
}

/** A port nothing listens on right now (bound, read and released). */
export async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A throwaway redis-server of its own (no persistence), e.g. with `--requirepass`. */
export interface PrivateRedis {
  readonly port: number;
  stop(): Promise<void>;
}

/** Starts `redis-server` on a free loopback port with extra arguments; resolves once it answers. */
export async function startPrivateRedis(extraArgs: string[] = []): Promise<PrivateRedis> {
  const port = await unusedPort();
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      ...extraArgs,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
  for (let attempt = 0; attempt < 100; attempt++) {
    // A bare TCP connect: the server may want a password before it answers anything.
    const listening = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket
        .once('connect', () => {
          socket.destroy();
          resolve(true);
        })
        .once('error', () => resolve(false));
      socket.once('close', () => undefined);
      setTimeout(() => socket.destroy(), 200).unref();
    });
    if (listening) return { port, stop };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await stop();
  throw new Error(`redis-server did not start on port ${port}`);
}
