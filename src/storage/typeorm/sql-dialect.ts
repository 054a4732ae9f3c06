import type { DataSource } from 'typeorm';
import { ConfigurationError } from '../../errors/index.js';
import { NETWORK_ERROR_CODES } from '../../errors/network-errors.js';

/** The SQL engines the TypeORM adapter runs on. */
export type SqlBackend = 'sqlite' | 'postgres' | 'mysql';

/** The SQL differences between the engines the TypeORM adapter runs on. */
export interface SqlDialect {
  /** Short backend name reported by the storage. */
  readonly backend: SqlBackend;
  /**
   * Statements that start a transaction in which a locked row is read as committed now, not as
   * of an earlier snapshot (READ COMMITTED on servers; SQLite takes the write lock up front).
   */
  readonly beginWrite: readonly string[];
  /**
   * Whether units of work must run one at a time in this process: TypeORM shares one
   * connection for better-sqlite3, while the servers hand each unit its own pooled connection.
   */
  readonly oneConnection: boolean;
  /**
   * Rewrites a statement written with double-quoted identifiers for this engine (MySQL quotes
   * with backticks). Statements never contain double quotes anywhere else.
   */
  sql(statement: string): string;
  /** The placeholder for the n-th parameter (1-based). */
  param(index: number): string;
  /** Turns `INSERT INTO t (...) VALUES (...)` into an insert that skips duplicate keys. */
  insertIgnoringDuplicates(insert: string): string;
  /** Most parameters one statement may carry. */
  readonly maxParameters: number;
  /**
   * The database's own clock in epoch ms, as an SQL expression: job leases are timed by it, so
   * replicas whose clocks disagree still agree on who holds a lease.
   */
  readonly nowMs: string;
  /**
   * How the sequence counter is advanced and read back in one statement, if the engine can:
   * `returning` (Postgres `UPDATE ... RETURNING`), `last-insert-id` (MySQL's
   * `LAST_INSERT_ID(expr)`), or `read-back` (a second SELECT under the row lock).
   */
  readonly sequenceReadBack: 'returning' | 'last-insert-id' | 'read-back';
  /**
   * Why an error means "try again later" (a lost connection, a lock timeout, a deadlock), or
   * undefined for errors a retry would not fix.
   */
  transientReason(error: unknown): string | undefined;
  /** Whether the server refused a statement as larger than it accepts (MySQL max_allowed_packet). */
  isPacketTooLarge(error: unknown): boolean;
  /** Whether the error is a duplicate key on the primary key of `table` (and nothing else). */
  isPrimaryKeyViolation(error: unknown, table: string): boolean;
}

const SQLITE_BUSY_CODES = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_LOCKED']);

/**
 * Postgres SQLSTATEs a retry can fix: connection exceptions (08), serialization failure and
 * deadlock (40001, 40P01), too many connections (53300), lock timeout (55P03), the server
 * going away or terminating the backend (57P01-57P05).
 */
const POSTGRES_TRANSIENT_STATES = new Set([
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '40001',
  '40P01',
  '53300',
  '55P03',
  '57P01',
  '57P02',
  '57P03',
  '57P05',
]);

/** pg reports a dropped socket with these messages and no code. */
const POSTGRES_CONNECTION_MESSAGES = [
  'Connection terminated',
  'connection error',
  'not queryable',
  'timeout exceeded when trying to connect',
  'Connection ended',
];

const MYSQL_TRANSIENT_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN',
  'ER_CONNECTION_KILLED',
  'ER_QUERY_INTERRUPTED',
  'ER_CLIENT_INTERACTION_TIMEOUT',
  'ER_SERVER_GONE_ERROR',
]);

const MYSQL_CONNECTION_MESSAGES = [
  'connection is in closed state',
  'Connection lost',
  'Pool is closed',
];

interface DriverErrorShape {
  code?: unknown;
  message?: unknown;
}

/** The driver's own error behind TypeORM's QueryFailedError, or the error itself. */
function driverErrorOf(error: unknown): DriverErrorShape {
  if (typeof error !== 'object' || error === null) return {};
  const wrapped = (error as { driverError?: unknown }).driverError;
  return (typeof wrapped === 'object' && wrapped !== null ? wrapped : error) as DriverErrorShape;
}

const textOf = (value: unknown): string => (typeof value === 'string' ? value : '');

/**
 * TypeORM releases a Postgres query runner by itself when its connection reports an error
 * between two statements; the next statement then fails with this. Nothing was committed.
 */
const RELEASED_RUNNER_ERROR = 'QueryRunnerAlreadyReleasedError';

const nameOf = (error: unknown): string =>
  typeof error === 'object' && error !== null ? textOf((error as { name?: unknown }).name) : '';

function codeAndMessage(error: unknown): { code: string; message: string } {
  const driverError = driverErrorOf(error);
  const outer = (typeof error === 'object' && error !== null ? error : {}) as DriverErrorShape;
  return {
    code: textOf(driverError.code) || textOf(outer.code),
    message: `${textOf(driverError.message)} ${textOf(outer.message)}`,
  };
}

const sqliteDialect: SqlDialect = {
  backend: 'sqlite',
  // IMMEDIATE takes the write lock up front, so a writer waits (busy_timeout) instead of
  // failing when it upgrades from a read lock under contention.
  beginWrite: ['BEGIN IMMEDIATE'],
  oneConnection: true,
  sql: (statement) => statement,
  param: () => '?',
  insertIgnoringDuplicates: (insert) => `${insert} ON CONFLICT DO NOTHING`,
  maxParameters: 32_766,
  // 'subsec' (SQLite 3.42+; better-sqlite3 12 bundles a newer one): ms, not whole seconds.
  nowMs: "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
  sequenceReadBack: 'read-back',
  transientReason(error) {
    const { code } = codeAndMessage(error);
    return SQLITE_BUSY_CODES.has(code) ? code : undefined;
  },
  // better-sqlite3 reports the extended result code; statements insert into one table each.
  isPrimaryKeyViolation: (error) => codeAndMessage(error).code === 'SQLITE_CONSTRAINT_PRIMARYKEY',
  isPacketTooLarge: () => false,
};

const postgresDialect: SqlDialect = {
  backend: 'postgres',
  // Explicit, so a server or role defaulting to SERIALIZABLE does not change the locking.
  beginWrite: ['BEGIN ISOLATION LEVEL READ COMMITTED'],
  oneConnection: false,
  sql: (statement) => statement,
  param: (index) => `$${index}`,
  insertIgnoringDuplicates: (insert) => `${insert} ON CONFLICT DO NOTHING`,
  maxParameters: 65_535,
  // clock_timestamp(), not now(): the time of the statement's step, not of its transaction.
  nowMs: '(extract(epoch from clock_timestamp()) * 1000)::bigint',
  sequenceReadBack: 'returning',
  transientReason(error) {
    const { code, message } = codeAndMessage(error);
    if (POSTGRES_TRANSIENT_STATES.has(code) || NETWORK_ERROR_CODES.has(code)) return code;
    if (nameOf(error) === RELEASED_RUNNER_ERROR) return 'connection lost';
    return POSTGRES_CONNECTION_MESSAGES.find((fragment) => message.includes(fragment))
      ? 'connection lost'
      : undefined;
  },
  isPacketTooLarge: () => false,
  isPrimaryKeyViolation(error, table) {
    // unique_violation on the primary key constraint, which Postgres names `<table>_pkey`.
    const driverError = driverErrorOf(error) as DriverErrorShape & { constraint?: unknown };
    return driverError.code === '23505' && driverError.constraint === `${table}_pkey`;
  },
};

const mysqlDialect: SqlDialect = {
  backend: 'mysql',
  // InnoDB's default REPEATABLE READ would read the rows locked later in the transaction as of
  // its first read; the next statement gets READ COMMITTED only, the host's default stays.
  beginWrite: ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED', 'START TRANSACTION'],
  oneConnection: false,
  sql: (statement) => statement.replaceAll('"', '`'),
  param: () => '?',
  insertIgnoringDuplicates: (insert) => insert.replace(/^INSERT INTO/, 'INSERT IGNORE INTO'),
  maxParameters: 65_535,
  // From UTC, so the session's time zone (and its daylight-saving hour that repeats) plays no part.
  nowMs: "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(3)) DIV 1000)",
  sequenceReadBack: 'last-insert-id',
  transientReason(error) {
    const { code, message } = codeAndMessage(error);
    if (MYSQL_TRANSIENT_CODES.has(code) || NETWORK_ERROR_CODES.has(code)) return code;
    return MYSQL_CONNECTION_MESSAGES.find((fragment) => message.includes(fragment))
      ? 'connection lost'
      : undefined;
  },
  isPacketTooLarge: (error) => codeAndMessage(error).code === 'ER_NET_PACKET_TOO_LARGE',
  isPrimaryKeyViolation(error) {
    // MariaDB names the key 'PRIMARY', MySQL 8 '<table>.PRIMARY'.
    const { code, message } = codeAndMessage(error);
    return code === 'ER_DUP_ENTRY' && /for key '(?:[^']*\.)?PRIMARY'/.test(message);
  },
};

/** The dialect for a DataSource, or an explanation of why it is not supported. */
export function dialectFor(dataSource: DataSource): SqlDialect {
  const type = dataSource.options.type;
  if (type === 'better-sqlite3') return sqliteDialect;
  if (type === 'postgres') return postgresDialect;
  if (type === 'mysql' || type === 'mariadb') return mysqlDialect;
  throw new ConfigurationError(
    `DataSource type '${type}' is not supported; use 'better-sqlite3' (the embedded default), 'postgres', 'mysql' or 'mariadb'`,
  );
}
