import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { DataSource } from 'typeorm';
import { type SessionStorage } from '../../src/index.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { type SqliteSynchronous } from '../../src/storage/typeorm/sqlite-data-source.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import {
  openSqlServerDataSource,
  type SqlServerType,
} from '../../src/storage/typeorm/server-data-source.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { runSessionMigrations } from '../../src/storage/typeorm/migration-runner.js';
import type { ItemTamperer } from './item-tamperer.js';
import {
  REDIS_URL,
  deleteKeysUnderPrefix,
  failFastRedis,
  redisAvailable,
  redisItemTamperer,
} from './redis-support.js';
import { requireService } from './service-availability.js';
import { createTestDatabase, sqlItemTamperer, sqlServerUp } from './sql-server-support.js';

/*
 * Throwaway stores on every backend, described by plain data so that child processes open the
 * same store as their parent: a temp SQLite file, a database of its own on a SQL server, or a
 * key prefix of its own on Redis. The benchmark builds on this file too, so it (and what it
 * imports) must not import vitest.
 */

/** Where a throwaway store lives; plain data, so it can be handed to a child process. */
export type StoreLocation =
  | {
      readonly type: 'sqlite';
      readonly path: string;
      /**
       * PRAGMA synchronous of every connection to the file. Unset: the opener's default, FULL in
       * {@link openStoreAt} and NORMAL in `child-storage.mjs`.
       */
      readonly synchronous?: SqliteSynchronous;
    }
  | { readonly type: SqlServerType; readonly url: string }
  | { readonly type: 'redis'; readonly url: string; readonly keyPrefix: string };

/** A backend a throwaway store can live on. */
export type StoreType = StoreLocation['type'];

/** Where {@link createThrowawayStore} makes the store, and what it calls it. */
export interface ThrowawayStoreOptions {
  /**
   * The server: for the SQL servers an admin connection, which creates and drops the database.
   * @default SERVER_ADMIN_URLS[type] or REDIS_URL (the test servers)
   */
  readonly serverUrl?: string;
  /**
   * Start of the temp folder's name, of the database's (`-` becoming `_`) or of the key prefix,
   * before random hex digits.
   * @default 'nes-test'
   */
  readonly namePrefix?: string;
}

/** A store made for one run. */
export interface ThrowawayStore {
  readonly location: StoreLocation;
  /** Deletes the temp folder, drops the database or unlinks every key under the prefix. Idempotent. */
  remove(): Promise<void>;
}

function removedOnce(location: StoreLocation, removeOnce: () => Promise<void>): ThrowawayStore {
  let removal: Promise<void> | undefined;
  return { location, remove: () => (removal ??= removeOnce()) };
}

/**
 * Creates an empty store: a path in a fresh temp folder, `CREATE DATABASE` on a SQL server
 * (see `createTestDatabase`), or a fresh key prefix on Redis. {@link openStoreAt} with
 * `migrate: true` creates the tables.
 */
export async function createThrowawayStore(
  type: StoreType,
  { serverUrl, namePrefix = 'nes-test' }: ThrowawayStoreOptions = {},
): Promise<ThrowawayStore> {
  if (type === 'sqlite') {
    const directory = mkdtempSync(join(tmpdir(), `${namePrefix}-`));
    return removedOnce({ type, path: join(directory, 'sessions.sqlite') }, async () =>
      rmSync(directory, { recursive: true, force: true }),
    );
  }
  if (type === 'redis') {
    const url = serverUrl ?? REDIS_URL;
    const keyPrefix = `${namePrefix}-${randomBytes(5).toString('hex')}:`;
    return removedOnce({ type, url, keyPrefix }, async () => {
      const client = failFastRedis(url);
      try {
        await client.connect();
        await deleteKeysUnderPrefix(client, keyPrefix);
      } finally {
        client.disconnect();
      }
    });
  }
  const database = await createTestDatabase(type, {
    adminUrl: serverUrl,
    namePrefix: namePrefix.replaceAll('-', '_'),
  });
  return removedOnce({ type, url: database.url }, () => database.drop());
}

/** How {@link openStoreAt} opens a store. */
export interface OpenStoreOptions {
  /** Run the module's migrations first (the process that created the store does). @default false */
  readonly migrate?: boolean;
  /** Pooled connections of a SQL server's DataSource. @default 2 */
  readonly poolSize?: number;
  /** SQLite only: how long a writer waits for another connection's lock. */
  readonly busyTimeoutMs?: number;
}

/** The module's storage on a store, and the raw access to check or edit what it stored. */
export interface OpenStore {
  readonly storage: SessionStorage;
  /** Edits and counts stored records directly in the backend. */
  readonly tamper: ItemTamperer;
  /** The SQL backends' DataSource (closed with the storage); undefined on Redis. */
  readonly dataSource: DataSource | undefined;
  /** Redis: a client of its own, so raw reads never queue behind the storage's commands. */
  readonly redis: Redis | undefined;
  /** Closes the storage and the raw client. */
  close(): Promise<void>;
}

/** Opens the module's storage on a store made by {@link createThrowawayStore}. */
export async function openStoreAt(
  location: StoreLocation,
  { migrate = false, poolSize = 2, busyTimeoutMs }: OpenStoreOptions = {},
): Promise<OpenStore> {
  if (location.type === 'redis') return openRedisStore(location);
  const dataSource =
    location.type === 'sqlite'
      ? await openSqliteDataSource({
          path: location.path,
          synchronous: location.synchronous,
          busyTimeoutMs,
        })
      : await openSqlServerDataSource({ type: location.type, url: location.url, poolSize });
  try {
    if (migrate) await runSessionMigrations(dataSource, dialectFor(dataSource));
  } catch (error) {
    await dataSource.destroy().catch(() => undefined);
    throw error;
  }
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  return {
    storage,
    tamper: sqlItemTamperer(dataSource),
    dataSource,
    redis: undefined,
    close: () => storage.close(),
  };
}

async function openRedisStore(
  location: Extract<StoreLocation, { type: 'redis' }>,
): Promise<OpenStore> {
  const storage = new RedisSessionStorage({ url: location.url, keyPrefix: location.keyPrefix });
  const client = failFastRedis(location.url);
  try {
    await client.connect();
  } catch (error) {
    await storage.close();
    throw error;
  }
  return {
    storage,
    tamper: redisItemTamperer(client, location.keyPrefix),
    dataSource: undefined,
    redis: client,
    async close() {
      try {
        await storage.close();
      } finally {
        client.disconnect();
      }
    },
  };
}

/** A migrated throwaway store, open in this process. */
export interface OpenThrowawayStore extends OpenStore {
  readonly location: StoreLocation;
  /** Closes the store and removes it. */
  dispose(): Promise<void>;
}

/** {@link createThrowawayStore}, then {@link openStoreAt} with the migrations. */
export async function openThrowawayStore(
  type: StoreType,
  options: ThrowawayStoreOptions & Omit<OpenStoreOptions, 'migrate'> = {},
): Promise<OpenThrowawayStore> {
  const store = await createThrowawayStore(type, options);
  let opened: OpenStore;
  try {
    opened = await openStoreAt(store.location, { ...options, migrate: true });
  } catch (error) {
    await store.remove().catch(() => undefined);
    throw error;
  }
  return {
    ...opened,
    location: store.location,
    async dispose() {
      try {
        await opened.close();
      } finally {
        await store.remove();
      }
    },
  };
}

/**
 * Every backend with whether a spec can run on it now (see `requireService`: outside CI a
 * missing server skips, under `CI=true` it fails). Call with top-level await.
 */
export async function storeBackendsUnderTest(): Promise<
  Array<{ readonly name: string; readonly type: StoreType; readonly available: boolean }>
> {
  return [
    { name: 'sqlite', type: 'sqlite', available: true },
    { name: 'postgres', type: 'postgres', available: await sqlServerUp('postgres') },
    { name: 'mariadb', type: 'mysql', available: await sqlServerUp('mysql') },
    {
      name: 'redis',
      type: 'redis',
      available: requireService(
        'Redis',
        await redisAvailable(),
        `start it with: redis-server --daemonize yes (or set NES_TEST_REDIS_URL)`,
      ),
    },
  ];
}
