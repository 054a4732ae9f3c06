import type { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import { type SessionRef } from '../src/storage/index.js';
import { RedisKeyLayout } from '../src/storage/redis/redis-keys.js';
import { dialectFor } from '../src/storage/typeorm/sql-dialect.js';
import { tableNamesFor } from '../src/storage/typeorm/table-names.js';
import { ITEM_HEADER_BYTES, unpackItem } from '../src/storage/redis/redis-record-codec.js';
import { failFastRedis } from '../test/support/redis-support.js';
import { LOCAL_SERVERS, portOpen } from '../test/support/service-availability.js';
import { adminQuery } from '../test/support/sql-server-support.js';
import {
  createThrowawayStore,
  type OpenStore,
  type StoreLocation,
  type ThrowawayStore,
} from '../test/support/throwaway-store.js';
import type { BenchBackend, ServerBackend } from './args.js';

/*
 * The benchmark's throwaway stores (`test/support/throwaway-store.ts`) on the servers named by
 * its own environment variables, removed again on Ctrl-C, and the raw reads that check and size
 * what a session stored.
 */

/** Environment variables naming each server (default: the local servers). */
const URL_VARIABLES: Record<ServerBackend, string> = {
  postgres: 'NES_BENCH_POSTGRES_URL',
  mysql: 'NES_BENCH_MYSQL_URL',
  redis: 'NES_BENCH_REDIS_URL',
};

/**
 * Server URLs of the benchmark. For the SQL servers an admin connection: it creates and drops
 * the throwaway databases, whose URLs are this one with the database name swapped.
 */
export const SERVER_URLS: Record<ServerBackend, string> = {
  postgres: process.env[URL_VARIABLES.postgres] ?? LOCAL_SERVERS.postgres.url,
  mysql: process.env[URL_VARIABLES.mysql] ?? LOCAL_SERVERS.mysql.url,
  redis: process.env[URL_VARIABLES.redis] ?? LOCAL_SERVERS.redis.url,
};

/** A server the benchmark needs is down or refuses the admin connection. Exit status 1. */
export class ServerUnavailableError extends Error {
  override readonly name = 'ServerUnavailableError';
}

/** `host:port` (and the user, never the password) of a server URL, for messages. */
function describeServer(backend: ServerBackend): string {
  const url = new URL(SERVER_URLS[backend]);
  const user = url.username ? `${decodeURIComponent(url.username)}@` : '';
  return `${user}${url.hostname}:${url.port || LOCAL_SERVERS[backend].port}`;
}

function unavailable(
  backend: ServerBackend,
  what: string,
  cause?: unknown,
  hint = `Start the server with:\n  ${LOCAL_SERVERS[backend].start}`,
): ServerUnavailableError {
  const reason = cause instanceof Error ? ` (${cause.message})` : '';
  return new ServerUnavailableError(
    `${LOCAL_SERVERS[backend].name} ${what} at ${describeServer(backend)}${reason}. ` +
      `The benchmark connects through ${URL_VARIABLES[backend]} (default ${LOCAL_SERVERS[backend].url}). ${hint}`,
    { cause },
  );
}

/**
 * Fails with a {@link ServerUnavailableError} naming the server and how to start it unless it
 * accepts connections and the admin connection works (one query).
 */
export async function checkServerReachable(backend: ServerBackend): Promise<void> {
  const url = new URL(SERVER_URLS[backend]);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!(await portOpen(Number(url.port || LOCAL_SERVERS[backend].port), host, 2000))) {
    throw unavailable(backend, 'is not reachable');
  }
  try {
    if (backend === 'redis') {
      const client = failFastRedis(SERVER_URLS.redis, 2000);
      try {
        await client.connect();
        await client.ping();
      } finally {
        client.disconnect();
      }
    } else {
      await adminQuery(backend, ['SELECT 1'], SERVER_URLS[backend]);
    }
  } catch (error) {
    throw unavailable(
      backend,
      'refused the admin connection',
      error,
      backend === 'redis'
        ? `Check the password and database number in ${URL_VARIABLES[backend]}.`
        : `Check the user, password and database in ${URL_VARIABLES[backend]}: the benchmark needs a user that may create and drop databases.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup on Ctrl-C: removals still pending when the process is interrupted run before it exits.

const pendingRemovals = new Set<() => Promise<void>>();

/**
 * On SIGINT or SIGTERM, runs the removals of every store still alive (best effort) and exits
 * with 130. Call once in a process that creates stores.
 */
export function removeStoresOnSignal(): void {
  process.once('SIGINT', removeStoresAndExit);
  process.once('SIGTERM', removeStoresAndExit);
}

function removeStoresAndExit(signal: NodeJS.Signals): void {
  process.stderr.write(`[bench] ${signal}: removing ${pendingRemovals.size} throwaway store(s)\n`);
  void Promise.allSettled([...pendingRemovals].map((remove) => remove())).finally(() =>
    process.exit(130),
  );
}

/**
 * An empty store for one run (see `createThrowawayStore`): a temp SQLite file, a database
 * `nes_bench_<hex>` on a SQL server or a key prefix `nes-bench-<hex>:` on Redis, each on the
 * benchmark's servers and removed on Ctrl-C if still there. `sqlite` gives every connection's
 * PRAGMA synchronous (many-writer children included).
 */
export async function createBenchStore(
  backend: BenchBackend,
  sqlite: { synchronous: 'FULL' | 'NORMAL' } = { synchronous: 'FULL' },
): Promise<ThrowawayStore> {
  let store: ThrowawayStore;
  try {
    store = await createThrowawayStore(backend, {
      serverUrl: backend === 'sqlite' ? undefined : SERVER_URLS[backend],
      namePrefix: 'nes-bench',
    });
  } catch (error) {
    if (backend === 'postgres' || backend === 'mysql') {
      throw unavailable(backend, 'did not create a benchmark database', error);
    }
    throw error;
  }
  const remove = () => store.remove().finally(() => pendingRemovals.delete(remove));
  pendingRemovals.add(remove);
  const location: StoreLocation =
    store.location.type === 'sqlite' ? { ...store.location, ...sqlite } : store.location;
  return { location, remove };
}

// ---------------------------------------------------------------------------------------------

/** Raw reads of what one session stored, behind the storage's back. */
export interface StoredItemReads {
  /** Stored items of the session whose expiry is at or before `now` (still physically there). */
  countExpiredRows(ref: SessionRef, now: number): Promise<number>;
  /** Bytes of the stored ciphertexts of the session (SQL: the ciphertext column). */
  sumCiphertextBytes(ref: SessionRef): Promise<number>;
  /**
   * Redis only: `MEMORY USAGE <items key> SAMPLES 0` (every member counted), the session's item
   * ZSET as it sits in Redis memory; undefined on the SQL backends.
   */
  readonly itemsMemoryBytes: ((ref: SessionRef) => Promise<number>) | undefined;
}

/** {@link StoredItemReads} on an open store at `location`. */
export function storedItemReads(location: StoreLocation, store: OpenStore): StoredItemReads {
  if (location.type === 'redis' && store.redis) return redisReads(store.redis, location.keyPrefix);
  if (store.dataSource) return sqlReads(store.dataSource);
  throw new Error(`no raw access to the ${location.type} store`);
}

const sessionParams = (ref: SessionRef) => [ref.tenantId, ref.sessionId];

function sqlReads(dataSource: DataSource): StoredItemReads {
  const dialect = dialectFor(dataSource);
  const items = `"${tableNamesFor().items}"`;
  const p = (index: number) => dialect.param(index);
  const ofSession = `"tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`;
  // Bytes, not characters: LENGTH of a bytea is bytes too, but octet_length says so outright.
  const byteLength = dialect.backend === 'postgres' ? 'octet_length' : 'LENGTH';
  const scalar = async (statement: string, params: unknown[]): Promise<number> => {
    const rows: Record<string, unknown>[] = await dataSource.query(dialect.sql(statement), params);
    return Number(Object.values(rows[0] ?? {})[0] ?? 0);
  };
  return {
    countExpiredRows: (ref, now) =>
      scalar(
        `SELECT COUNT(*) FROM ${items} WHERE ${ofSession} AND "expires_at" IS NOT NULL AND "expires_at" <= ${p(3)}`,
        [...sessionParams(ref), now],
      ),
    sumCiphertextBytes: (ref) =>
      scalar(
        `SELECT COALESCE(SUM(${byteLength}("ciphertext")), 0) FROM ${items} WHERE ${ofSession}`,
        sessionParams(ref),
      ),
    itemsMemoryBytes: undefined,
  };
}

/** Members of a ZSET, a page at a time (a whole 20,000-item history is ~22 MB at once). */
async function forEachMember(
  client: Redis,
  key: string,
  visit: (member: Buffer) => void,
): Promise<void> {
  const page = 1000;
  for (let start = 0; ; start += page) {
    const members = await client.zrangeBuffer(key, start, start + page - 1);
    members.forEach(visit);
    if (members.length < page) return;
  }
}

function redisReads(client: Redis, keyPrefix: string): StoredItemReads {
  const layout = new RedisKeyLayout(keyPrefix);
  const itemsKey = (ref: SessionRef) => layout.forSession(ref).items;
  return {
    async countExpiredRows(ref, now) {
      let expired = 0;
      await forEachMember(client, itemsKey(ref), (member) => {
        const { expiresAt } = unpackItem(member);
        if (expiresAt !== null && expiresAt <= now) expired++;
      });
      return expired;
    },
    async sumCiphertextBytes(ref) {
      let bytes = 0;
      await forEachMember(client, itemsKey(ref), (member) => {
        bytes += member.length - ITEM_HEADER_BYTES;
      });
      return bytes;
    },
    itemsMemoryBytes: async (ref) =>
      Number(await client.call('MEMORY', 'USAGE', itemsKey(ref), 'SAMPLES', '0')),
  };
}
