import type { DataSource } from 'typeorm';
import { ConfigurationError } from '../../errors/index.js';

/** The SQL differences between the engines the TypeORM adapter runs on. */
export interface SqlDialect {
  /** Short backend name reported by the storage (`sqlite`, `postgres`, `mysql`). */
  readonly backend: string;
  /** Starts a transaction that holds the write lock from its first statement. */
  readonly beginWrite: string;
  /** Quotes an identifier. */
  quote(identifier: string): string;
  /** The placeholder for the n-th parameter (1-based). */
  param(index: number): string;
  /** Turns `INSERT INTO t (...) VALUES (...)` into an insert that skips duplicate keys. */
  insertIgnoringDuplicates(insert: string): string;
  /** Most parameters one statement may carry. */
  readonly maxParameters: number;
}

const sqliteDialect: SqlDialect = {
  backend: 'sqlite',
  // IMMEDIATE takes the write lock up front, so a writer waits (busy_timeout) instead of
  // failing when it upgrades from a read lock under contention.
  beginWrite: 'BEGIN IMMEDIATE',
  quote: (identifier) => `"${identifier}"`,
  param: () => '?',
  insertIgnoringDuplicates: (insert) => `${insert} ON CONFLICT DO NOTHING`,
  maxParameters: 32_766,
};

/**
 * The dialect for a DataSource, or an explanation of why it is not supported.
 * Postgres and MySQL/MariaDB follow in the production-storage work.
 */
export function dialectFor(dataSource: DataSource): SqlDialect {
  const type = dataSource.options.type;
  if (type === 'better-sqlite3') return sqliteDialect;
  throw new ConfigurationError(
    `DataSource type '${type}' is not supported yet; use 'better-sqlite3' (the embedded default)`,
  );
}
