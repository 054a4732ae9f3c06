import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import {
  RedisKeyLayout,
  RedisSessionStorage,
  TypeOrmSessionStorage,
  dialectFor,
  openSqlServerDataSource,
  openSqliteDataSource,
  runSessionMigrations,
  tableNamesFor,
  type SessionRef,
  type SessionStorage,
} from '../src/storage/index.js';
import { ITEM_HEADER_BYTES, unpackItem } from '../src/storage/redis/redis-record-codec.js';
import type { BenchBackend, ServerBackend } from './args.js';

/*
 * Throwaway stores on every backend, described by a serializable location so the many-writer
 * child processes can open the same store: a temp SQLite file, a database of its own on the
 * local Postgres or MySQL/MariaDB server, or a key prefix of its own on the local Redis.
 */

/** Where a throwaway store lives; plain data, so it can be handed to a child process. */
export type StoreLocation =
  | { readonly backend: 'sqlite'; readonly path: string }
  | { readonly backend: 'postgres' | 'mysql'; readonly url: string }
  | { readonly backend: 'redis'; readonly url: string; readonly keyPrefix: string };

/** Environment variables naming each server, and their defaults (the local servers). */
const URL_VARIABLES: Record<ServerBackend, string> = {
  postgres: 'NES_BENCH_POSTGRES_URL',
  mysql: 'NES_BENCH_MYSQL_URL',
  redis: 'NES_BENCH_REDIS_URL',
};
const DEFAULT_URLS: Record<ServerBackend, string> = {
  postgres: 'postgres://postgres@127.0.0.1:5432/postgres',
  mysql: 'mysql://root@127.0.0.1:3306/test',
  redis: 'redis://127.0.0.1:6379/0',
};

/**
 * Server URLs of the benchmark. For the SQL servers an admin connection: it creates and drops
 * the throwaway databases, whose URLs are this one with the database name swapped.
 */
export const SERVER_URLS: Record<ServerBackend, string> = {
  postgres: process.env[URL_VARIABLES.postgres] ?? DEFAULT_URLS.postgres,
  mysql: process.env[URL_VARIABLES.mysql] ?? DEFAULT_URLS.mysql,
  redis: process.env[URL_VARIABLES.redis] ?? DEFAULT_URLS.redis,
};

const SERVER_NAMES: Record<ServerBackend, string> = {
  postgres: 'PostgreSQL',
  mysql: 'MariaDB/MySQL',
  redis: 'Redis',
};

const DEFAULT_PORTS: Record<ServerBackend, number> = { postgres: 5432, mysql: 3306, redis: 6379 };

/** How to start each server on this machine class (no systemd). */
const START_COMMANDS: Record<ServerBackend, string> = {
  postgres: 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  mysql: 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd',
  redis:
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
};

/** A server the benchmark needs is down or refuses the admin connection. Exit status 1. */
export class ServerUnavailableError extends Error {
  override readonly name = 'ServerUnavailableError';
}

/** `host:port` (and the user, never the password) of a server URL, for messages. */
function describeServer(backend: ServerBackend): string {
  const url = new URL(SERVER_URLS[backend]);
  const user = url.username ? `${decodeURIComponent(url.username)}@` : '';
  return `${user}${url.hostname}:${url.port || DEFAULT_PORTS[backend]}`;
}

function unavailable(
  backend: ServerBackend,
  what: string,
  cause?: unknown,
  hint = `Start the server with:\n  ${START_COMMANDS[backend]}`,
): ServerUnavailableError {
  const reason = cause instanceof Error ? ` (${cause.message})` : '';
  return new ServerUnavailableError(
    `${SERVER_NAMES[backend]} ${what} at ${describeServer(backend)}${reason}. ` +
      `The benchmark connects through ${URL_VARIABLES[backend]} (default ${DEFAULT_URLS[backend]}). ${hint}`,
    { cause },
  );
}

/** True when something accepts TCP connections on host:port within `timeoutMs`. */
function portOpen(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/** A Redis client that fails at once instead of retrying while the server is down. */
function adminRedis(url: string): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  return client;
}

/**
 * Fails with a {@link ServerUnavailableError} naming the server and how to start it unless it
 * accepts connections and the admin connection works (one query).
 */
export async function checkServerReachable(backend: ServerBackend): Promise<void> {
  const url = new URL(SERVER_URLS[backend]);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!(await portOpen(host, Number(url.port || DEFAULT_PORTS[backend])))) {
    throw unavailable(backend, 'is not reachable');
  }
  try {
    if (backend === 'redis') {
      const client = adminRedis(SERVER_URLS.redis);
      try {
        await client.connect();
        await client.ping();
      } finally {
        client.disconnect();
      }
    } else {
      await adminQuery(backend, ['SELECT 1']);
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

async function adminQuery(backend: 'postgres' | 'mysql', statements: string[]): Promise<void> {
  const admin = await openSqlServerDataSource({
    type: backend,
    url: SERVER_URLS[backend],
    poolSize: 1,
    connectTimeoutMs: 5000,
  });
  try {
    for (const statement of statements) await admin.query(statement);
  } finally {
    await admin.destroy();
  }
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Every key under `prefix`, found with SCAN (never KEYS, which blocks the server). */
async function keysUnderPrefix(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return found;
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

/** A store made for one run; {@link ThrowawayStore.remove} deletes it (and is idempotent). */
export interface ThrowawayStore {
  readonly location: StoreLocation;
  remove(): Promise<void>;
}

function throwaway(location: StoreLocation, removeOnce: () => Promise<void>): ThrowawayStore {
  let removal: Promise<void> | undefined;
  const remove = () => {
    removal ??= removeOnce().finally(() => pendingRemovals.delete(remove));
    return removal;
  };
  pendingRemovals.add(remove);
  return { location, remove };
}

/**
 * Creates an empty store: a temp SQLite file path, `CREATE DATABASE nes_bench_<hex>` on a SQL
 * server (utf8mb4_bin on MySQL, as the module requires), or a fresh key prefix on Redis.
 * Tables come from {@link openStoreAt} with `migrate: true`.
 */
export async function createThrowawayStore(backend: BenchBackend): Promise<ThrowawayStore> {
  const hex = randomBytes(5).toString('hex');
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'nes-bench-'));
    return throwaway({ backend, path: join(dir, 'sessions.db') }, async () =>
      rmSync(dir, { recursive: true, force: true }),
    );
  }
  if (backend === 'redis') {
    const keyPrefix = `nes-bench-${hex}:`;
    return throwaway({ backend, url: SERVER_URLS.redis, keyPrefix }, async () => {
      const client = adminRedis(SERVER_URLS.redis);
      try {
        await client.connect();
        const keys = await keysUnderPrefix(client, keyPrefix);
        for (let start = 0; start < keys.length; start += 500) {
          await client.unlink(...keys.slice(start, start + 500));
        }
      } finally {
        client.disconnect();
      }
    });
  }
  const name = `nes_bench_${hex}`;
  try {
    await adminQuery(backend, [
      backend === 'postgres'
        ? `CREATE DATABASE "${name}"`
        : `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    ]);
  } catch (error) {
    throw unavailable(backend, `did not create the benchmark database ${name}`, error);
  }
  return throwaway({ backend, url: withDatabase(SERVER_URLS[backend], name) }, () =>
    adminQuery(backend, [
      backend === 'postgres'
        ? `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`
        : `DROP DATABASE IF EXISTS \`${name}\``,
    ]),
  );
}

// ---------------------------------------------------------------------------------------------

/** A storage opened on a store, plus raw reads behind its back to check what it stored. */
export interface OpenStore {
  readonly storage: SessionStorage;
  /** Stored items of the session, expired or not. */
  countRows(ref: SessionRef): Promise<number>;
  /** Stored items of the session whose expiry is at or before `now` (still physically there). */
  countExpiredRows(ref: SessionRef, now: number): Promise<number>;
  /** Bytes of the stored ciphertexts of the session (SQL: the ciphertext column). */
  sumCiphertextBytes(ref: SessionRef): Promise<number>;
  /**
   * Redis only: `MEMORY USAGE <items key> SAMPLES 0` (every member counted), the session's item
   * ZSET as it sits in Redis memory; undefined on the SQL backends.
   */
  readonly itemsMemoryBytes: ((ref: SessionRef) => Promise<number>) | undefined;
  /** Closes the storage (and its connections). */
  close(): Promise<void>;
}

/** Options of {@link openStoreAt}. */
export interface OpenStoreOptions {
  /** Run the module's migrations first (the process that created the store does). */
  readonly migrate: boolean;
  /** Pooled connections of a SQL server DataSource. */
  readonly poolSize: number;
  /** SQLite only: how long a writer waits for another process's lock. */
  readonly busyTimeoutMs?: number;
}

/** Opens the module's storage on a store created by {@link createThrowawayStore}. */
export async function openStoreAt(
  location: StoreLocation,
  options: OpenStoreOptions,
): Promise<OpenStore> {
  if (location.backend === 'redis') return openRedisStore(location);
  const dataSource =
    location.backend === 'sqlite'
      ? await openSqliteDataSource({
          path: location.path,
          synchronous: 'FULL',
          ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
        })
      : await openSqlServerDataSource({
          type: location.backend,
          url: location.url,
          poolSize: options.poolSize,
        });
  try {
    if (options.migrate) await runSessionMigrations(dataSource, dialectFor(dataSource));
    return sqlStore(dataSource);
  } catch (error) {
    await dataSource.destroy().catch(() => undefined);
    throw error;
  }
}

const sessionParams = (ref: SessionRef) => [ref.tenantId, ref.sessionId];

function sqlStore(dataSource: DataSource): OpenStore {
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
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
    storage,
    countRows: (ref) =>
      scalar(`SELECT COUNT(*) FROM ${items} WHERE ${ofSession}`, sessionParams(ref)),
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
    close: () => storage.close(),
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

async function openRedisStore(
  location: Extract<StoreLocation, { backend: 'redis' }>,
): Promise<OpenStore> {
  const storage = new RedisSessionStorage({ url: location.url, keyPrefix: location.keyPrefix });
  // A client of its own for the raw reads, so they never queue behind the storage's commands.
  const client = adminRedis(location.url);
  try {
    await client.connect();
  } catch (error) {
    await storage.close();
    client.disconnect();
    throw error;
  }
  const layout = new RedisKeyLayout(location.keyPrefix);
  const itemsKey = (ref: SessionRef) => layout.forSession(ref).items;
  return {
    storage,
    countRows: (ref) => client.zcard(itemsKey(ref)),
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
    async close() {
      try {
        await storage.close();
      } finally {
        client.disconnect();
      }
    },
  };
}
