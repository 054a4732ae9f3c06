/**
 * `nest-encrypted-sessions/typeorm`: the TypeORM adapter (SQLite, Postgres, MySQL/MariaDB),
 * its entity schemas and migrations for a host that runs them itself. `typeorm` is a peer
 * dependency; the database driver (`better-sqlite3`, `pg` or `mysql2`) is the host's to install.
 *
 * @packageDocumentation
 */
export {
  TypeOrmSessionStorage,
  sessionEntitySchemas,
  sessionMigrations,
  type SessionEntityDatabaseType,
  type SessionEntityOptions,
  type SqlServerDatabaseOptions,
  type SqliteSynchronous,
  type TypeOrmSessionStorageOptions,
} from './storage/typeorm/index.js';
