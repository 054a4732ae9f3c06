// The TypeORM adapter (SQLite, Postgres, MySQL/MariaDB) as the module layer uses it.
export { runSessionMigrations } from './migration-runner.js';
export { sessionMigrations } from './migrations/index.js';
export {
  sessionEntitySchemas,
  type SessionEntityDatabaseType,
  type SessionEntityOptions,
} from './session-entities.js';
export { dialectFor } from './sql-dialect.js';
export {
  openSqliteDataSource,
  type SqliteDatabaseOptions,
  type SqliteSynchronous,
} from './sqlite-data-source.js';
export {
  checkSqlServerOptions,
  guardPostgresPoolErrors,
  openSqlServerDataSource,
  type SqlServerDatabaseOptions,
  type SqlServerType,
} from './server-data-source.js';
export { DEFAULT_TABLE_PREFIX, tableNamesFor } from './table-names.js';
export {
  TypeOrmSessionStorage,
  type TypeOrmSessionStorageOptions,
} from './typeorm.session-storage.js';
