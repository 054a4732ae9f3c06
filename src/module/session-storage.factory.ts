import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import {
  MemorySessionStorage,
  TypeOrmSessionStorage,
  dialectFor,
  openSqliteDataSource,
  runSessionMigrations,
  type SessionStorage,
} from '../storage/index.js';
import {
  DEFAULT_SQLITE_PATH,
  type EncryptedSessionModuleOptions,
} from './encrypted-session-module-options.interface.js';

const logger = new Logger('EncryptedSessionModule');

/**
 * Builds the storage the options name: a host DataSource when one was named, else the
 * module's own SQLite file (the default) or memory. Migrations run unless switched off.
 */
export async function createSessionStorage(
  options: EncryptedSessionModuleOptions,
  hostDataSource: DataSource | undefined,
): Promise<SessionStorage> {
  const runMigrations = options.runMigrations ?? true;
  if (hostDataSource) {
    if (runMigrations) {
      const applied = await runSessionMigrations(
        hostDataSource,
        dialectFor(hostDataSource),
        options.tablePrefix,
      );
      if (applied.length > 0)
        logger.log(`Applied migrations on the host DataSource: ${applied.join(', ')}`);
    }
    return new TypeOrmSessionStorage({
      dataSource: hostDataSource,
      tablePrefix: options.tablePrefix,
    });
  }
  const storage = options.storage ?? { type: 'sqlite' };
  if (storage.type === 'memory') {
    logger.warn(
      'Sessions are kept in memory only: nothing survives a restart (tests and demos only)',
    );
    return new MemorySessionStorage();
  }
  const path = storage.path ?? DEFAULT_SQLITE_PATH;
  logger.log(
    `Storing sessions in SQLite file ${path} (WAL, synchronous=${storage.synchronous ?? 'FULL'})`,
  );
  const dataSource = await openSqliteDataSource({
    path,
    synchronous: storage.synchronous,
    busyTimeoutMs: storage.busyTimeoutMs,
    cacheSizeKiB: storage.cacheSizeKiB,
  });
  try {
    if (runMigrations) {
      const applied = await runSessionMigrations(
        dataSource,
        dialectFor(dataSource),
        options.tablePrefix,
      );
      if (applied.length > 0) logger.log(`Applied migrations: ${applied.join(', ')}`);
    }
  } catch (error) {
    await dataSource.destroy();
    throw error;
  }
  return new TypeOrmSessionStorage({
    dataSource,
    tablePrefix: options.tablePrefix,
    ownsDataSource: true,
  });
}
