import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import {
  EncryptedSessionService,
  EnvKeyProvider,
  KeyRing,
  MemorySessionStorage,
  type KeyProvider,
  type SessionStorage,
} from '../../src/index.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { type KeyRingOptions } from '../../src/keys/key-ring.options.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { runSessionMigrations } from '../../src/storage/typeorm/migration-runner.js';
import { type SqlServerType } from '../../src/storage/typeorm/server-data-source.js';
import type { ItemTamperer } from './item-tamperer.js';
import { memoryItemTamperer } from './memory-tamperer.js';
import {
  SERVER_NAMES,
  createMigratedTestDatabase,
  sqlItemTamperer,
  type MigratedTestDatabase,
  type TestDatabaseOptions,
} from './sql-server-support.js';
import { newRootKeyEntry } from './test-keys.js';

/** Everything a session test needs, on one backend. */
export interface SessionHarness {
  readonly backend: string;
  readonly storage: SessionStorage;
  readonly provider: KeyProvider;
  readonly keyRing: KeyRing;
  readonly service: EncryptedSessionService;
  /** The SQL DataSource, for tests that tamper with rows directly. */
  readonly dataSource?: DataSource;
  /** The SQLite file, when there is one. */
  readonly databasePath?: string;
  /** Edits stored items directly in the backend, for the integrity suite. */
  readonly tamper: ItemTamperer;
  close(): Promise<void>;
}

export interface HarnessOptions {
  keyRing?: KeyRingOptions;
  provider?: KeyProvider;
}

/** Builds a harness on a backend; one per test file or test. */
export type HarnessFactory = (options?: HarnessOptions) => Promise<SessionHarness>;

/** Puts a harness together from a storage on any backend. */
export function assembleHarness(
  backend: string,
  storage: SessionStorage,
  options: HarnessOptions,
  extra: {
    tamper: ItemTamperer;
    dataSource?: DataSource;
    databasePath?: string;
    cleanup?: () => void | Promise<void>;
  },
): SessionHarness {
  const provider =
    options.provider ?? new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
  const keyRing = new KeyRing(storage, provider, options.keyRing);
  return {
    backend,
    storage,
    provider,
    keyRing,
    service: new EncryptedSessionService(storage, keyRing),
    dataSource: extra.dataSource,
    databasePath: extra.databasePath,
    tamper: extra.tamper,
    async close() {
      await storage.close();
      keyRing.clear();
      await extra.cleanup?.();
    },
  };
}

export const memoryHarness: HarnessFactory = async (options = {}) => {
  const storage = new MemorySessionStorage();
  return assembleHarness('memory', storage, options, { tamper: memoryItemTamperer(storage) });
};

export const sqliteHarness: HarnessFactory = async (options = {}) => {
  const directory = mkdtempSync(join(tmpdir(), 'nes-sqlite-'));
  const databasePath = join(directory, 'sessions.sqlite');
  const dataSource = await openSqliteDataSource({ path: databasePath, synchronous: 'NORMAL' });
  await runSessionMigrations(dataSource, dialectFor(dataSource));
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  return assembleHarness('sqlite', storage, options, {
    tamper: sqlItemTamperer(dataSource),
    dataSource,
    databasePath,
    cleanup: () => rmSync(directory, { recursive: true, force: true }),
  });
};

/** A user message item, as the agents SDK stores it. */
export const userMessage = (content: string) => ({ role: 'user' as const, content });
export const assistantMessage = (text: string) => ({
  role: 'assistant' as const,
  status: 'completed' as const,
  content: [{ type: 'output_text' as const, text }],
});

/**
 * A harness factory on a database server for one spec file: the first harness creates and
 * migrates a throwaway database, each later one gets its own storage and keys over it, and
 * `dispose` (in `afterAll`) drops the database.
 */
export function sqlServerHarness(type: SqlServerType): {
  factory: HarnessFactory;
  dispose: () => Promise<void>;
} {
  let database: Promise<MigratedTestDatabase> | undefined;
  return {
    factory: async (options = {}) => {
      database ??= createMigratedTestDatabase(type);
      const { dataSource, newStorage } = await database;
      return assembleHarness(SERVER_NAMES[type], newStorage(), options, {
        tamper: sqlItemTamperer(dataSource),
        dataSource,
      });
    },
    dispose: async () => {
      await (await database)?.dispose();
    },
  };
}

/**
 * A harness with a database of its own on a server, dropped when the harness closes: for
 * tests that scan every session of the store (KEK rotation), which must see only their own.
 */
export function isolatedSqlServerHarness(
  type: SqlServerType,
  databaseOptions: TestDatabaseOptions = {},
): HarnessFactory {
  return async (options = {}) => {
    const database = await createMigratedTestDatabase(type, 4, databaseOptions);
    return assembleHarness(SERVER_NAMES[type], database.newStorage(), options, {
      tamper: sqlItemTamperer(database.dataSource),
      dataSource: database.dataSource,
      cleanup: () => database.dispose(),
    });
  };
}
