import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { ConfigurationError } from '../errors/index.js';
import { sqlServerStartupError, sqliteStartupError } from './storage-startup-errors.js';
import { MemorySessionStorage, type SessionStorage } from '../storage/index.js';
import {
  TypeOrmSessionStorage,
  dialectFor,
  guardPostgresPoolErrors,
  openSqlServerDataSource,
  openSqliteDataSource,
  runSessionMigrations,
} from '../storage/typeorm/index.js';
import type { ResolvedStorage } from './resolve-module-options.js';

const logger = new Logger('EncryptedSessionModule');

/**
 * Builds the storage the resolved options name: a host DataSource, a host's own storage, the
 * module's own SQLite file (the default), a database server, Redis or memory. Migrations run on
 * SQL stores unless switched off. The Redis adapter is loaded only when named (ioredis is an
 * optional package).
 */
export async function createSessionStorage(
  storage: ResolvedStorage,
  hostDataSource: DataSource | null,
): Promise<SessionStorage> {
  switch (storage.type) {
    case 'instance':
      return storage.instance;
    case 'hostDataSource': {
      if (!hostDataSource) {
        throw new ConfigurationError(
          "options.storage type 'hostDataSource' needs dataSourceName beside the options",
        );
      }
      guardPostgresPoolErrors(hostDataSource);
      if (storage.runMigrations) {
        const applied = await runSessionMigrations(
          hostDataSource,
          dialectFor(hostDataSource),
          storage.tablePrefix,
        );
        if (applied.length > 0)
          logger.log(`Applied migrations on the host DataSource: ${applied.join(', ')}`);
      }
      return new TypeOrmSessionStorage({
        dataSource: hostDataSource,
        tablePrefix: storage.tablePrefix,
      });
    }
    case 'memory':
      logger.warn(
        'Sessions are kept in memory only: nothing survives a restart (tests and demos only)',
      );
      return new MemorySessionStorage();
    case 'redis': {
      const { RedisSessionStorage } = await import('../storage/redis/index.js');
      const { type: _type, ...redisOptions } = storage;
      const redis = new RedisSessionStorage(redisOptions);
      try {
        // A url of the module's own: fail the start when it is wrong.
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
      return ownedTypeOrmStorage(dataSource, storage);
    }
    case 'sqlite': {
      const { path } = storage;
      logger.log(
        `Storing sessions in SQLite file ${path} (WAL, synchronous=${storage.synchronous})`,
      );
      const dataSource = await openSqliteDataSource({
        path,
        synchronous: storage.synchronous,
        busyTimeoutMs: storage.busyTimeoutMs,
        cacheSizeKiB: storage.cacheSizeKiB,
      }).catch((error: unknown) => {
        throw sqliteStartupError(error, path);
      });
      return ownedTypeOrmStorage(dataSource, storage);
    }
  }
}

/** Runs the migrations on a DataSource the module opened, closing it again if they fail. */
async function ownedTypeOrmStorage(
  dataSource: DataSource,
  tables: { readonly tablePrefix: string; readonly runMigrations: boolean },
): Promise<SessionStorage> {
  try {
    if (tables.runMigrations) {
      const applied = await runSessionMigrations(
        dataSource,
        dialectFor(dataSource),
        tables.tablePrefix,
      );
      if (applied.length > 0) logger.log(`Applied migrations: ${applied.join(', ')}`);
    }
  } catch (error) {
    await dataSource.destroy();
    throw error;
  }
  return new TypeOrmSessionStorage({
    dataSource,
    tablePrefix: tables.tablePrefix,
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
