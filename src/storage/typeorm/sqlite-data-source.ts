import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DataSource } from 'typeorm';
import { ConfigurationError } from '../../errors/index.js';

/**
 * How SQLite waits for the disk at each commit (PRAGMA synchronous) in WAL mode.
 *
 * @publicApi
 */
export type SqliteSynchronous = 'FULL' | 'NORMAL';

/** Options of the module's own embedded SQLite database. */
export interface SqliteDatabaseOptions {
  /** Path of the database file; its folder is created if missing. */
  path: string;
  /**
   * `FULL`: every commit waits for the disk; nothing committed is lost on power failure.
   * `NORMAL`: faster; in WAL mode a power failure may lose the last commits, an app crash loses
   * nothing.
   * @default 'FULL'
   */
  synchronous?: SqliteSynchronous;
  /** How long a writer waits for another process's lock before failing, in ms. @default 5000 */
  busyTimeoutMs?: number;
  /** SQLite page cache of the connection, in KiB. @default 8192 */
  cacheSizeKiB?: number;
}

/**
 * Opens (initializes) a TypeORM DataSource on a better-sqlite3 file in WAL mode. The caller owns
 * it and must `destroy()` it.
 */
export async function openSqliteDataSource(options: SqliteDatabaseOptions): Promise<DataSource> {
  const database = resolve(options.path);
  mkdirSync(dirname(database), { recursive: true });
  const synchronous = options.synchronous ?? 'FULL';
  const cacheSizeKiB = options.cacheSizeKiB ?? 8192;
  if (!Number.isSafeInteger(cacheSizeKiB) || cacheSizeKiB < 64) {
    throw new ConfigurationError('SQLite cacheSizeKiB must be a whole number of KiB, at least 64');
  }
  const dataSource = new DataSource({
    type: 'better-sqlite3',
    database,
    enableWAL: true,
    timeout: options.busyTimeoutMs ?? 5000,
    prepareDatabase: (db: { pragma(source: string): unknown }) => {
      db.pragma(`synchronous = ${synchronous}`);
      // Negative cache_size means KiB. better-sqlite3 builds with 16 MiB per connection;
      // appends and newest-first reads touch few pages, so a smaller cache costs nothing.
      db.pragma(`cache_size = -${cacheSizeKiB}`);
    },
    // Schema comes from the module's migrations, never from entity sync.
    synchronize: false,
    logging: false,
  });
  return dataSource.initialize();
}
