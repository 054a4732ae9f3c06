import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { ConfigurationError } from '../errors/index.js';
import { sqlServerStartupError, sqliteStartupError } from './storage-startup-errors.js';
import {
  MemorySessionStorage,
  RedisSessionStorage,
  TypeOrmSessionStorage,
  dialectFor,
  guardPostgresPoolErrors,
  openSqlServerDataSource,
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
  hostDataSource: DataSource | null,
): Promise<SessionStorage> {
  const runMigrations = options.runMigrations ?? true;
  if (hostDataSource) {
    if (options.storage !== undefined) {
      throw new ConfigurationError(
        "options.storage and dataSourceName both say where sessions go; give only one: dataSourceName for a host TypeORM DataSource, or options.storage for a store of the module's own",
      );
    }
    guardPostgresPoolErrors(hostDataSource);
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
  switch (storage.type) {
    case 'memory':
      logger.warn(
        'Sessions are kept in memory only: nothing survives a restart (tests and demos only)',
      );
      return new MemorySessionStorage();
    case 'redis': {
      const { type: _type, ...redisOptions } = storage;
      const redis = new RedisSessionStorage(redisOptions);
      try {
        // A url of the module's own: fail the start when it is wrong (a host's client: no-op).
        await redis.verifyConnection();
      } catch (error) {
        await redis.close();
        throw error;
      }
      logger.log(`Storing sessions in Redis under key prefix '${redis.keyPrefix}'`);
      return redis;
    }
    case 'postgres':
    case 'mysql':
    case 'mariadb': {
      const type = storage.type === 'postgres' ? 'postgres' : 'mysql';
      // The URL may carry a password: log the engine and host only.
      logger.log(`Storing sessions in ${type} at ${hostOf(storage.url)}`);
      const dataSource = await openSqlServerDataSource({ ...storage, type }).catch(
        (error: unknown) => {
          throw sqlServerStartupError(error, storage);
        },
      );
      return ownedTypeOrmStorage(dataSource, options, runMigrations);
    }
    case 'sqlite': {
      const path = storage.path ?? DEFAULT_SQLITE_PATH;
      logger.log(
        `Storing sessions in SQLite file ${path} (WAL, synchronous=${storage.synchronous ?? 'FULL'})`,
      );
      const dataSource = await openSqliteDataSource({
        path,
        synchronous: storage.synchronous,
        busyTimeoutMs: storage.busyTimeoutMs,
        cacheSizeKiB: storage.cacheSizeKiB,
      }).catch((error: unknown) => {
        throw sqliteStartupError(error, path);
      });
      return ownedTypeOrmStorage(dataSource, options, runMigrations);
    }
  }
}

/** Runs the migrations on a DataSource the module opened, closing it again if they fail. */
async function ownedTypeOrmStorage(
  dataSource: DataSource,
  options: EncryptedSessionModuleOptions,
  runMigrations: boolean,
): Promise<SessionStorage> {
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

/** `host:port` of a connection URL, without credentials. */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid URL)';
  }
}
