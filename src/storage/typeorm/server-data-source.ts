import { DataSource, type DataSourceOptions } from 'typeorm';
import { ConfigurationError } from '../../errors/index.js';
import { checkSchemaName } from './table-names.js';

/** The database servers the module can open a DataSource for by itself. */
export type SqlServerType = 'postgres' | 'mysql';

/**
 * Options of a database server connection the module opens (and closes) itself.
 *
 * @publicApi
 */
export interface SqlServerDatabaseOptions {
  /** `postgres` (PostgreSQL) or `mysql` (MySQL and MariaDB, through mysql2). */
  type: SqlServerType;
  /**
   * Connection URL, e.g. `postgres://user:pass@host:5432/db` or `mysql://user:pass@host:3306/db`.
   * Keep the password in a secret store; the module never logs the URL.
   */
  url: string;
  /** Most pooled connections this process opens. @default 10 */
  poolSize?: number;
  /** How long to wait for a connection, in ms. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * Postgres schema holding the tables (it must exist; the role needs USAGE and CREATE on it).
   * Every table, index and the migration record go there. @default the connection's
   * search_path (usually `public`)
   */
  schema?: string;
  /** TLS settings passed to the driver (`true` for the system CAs). @default none */
  ssl?: boolean | Record<string, unknown>;
}

const URL_SCHEMES: Record<SqlServerType, readonly string[]> = {
  postgres: ['postgres:', 'postgresql:'],
  mysql: ['mysql:', 'mariadb:'],
};

/** Throws a ConfigurationError that says what is wrong with the options, without the URL. */
export function checkSqlServerOptions(options: SqlServerDatabaseOptions): void {
  const { type, url, poolSize, connectTimeoutMs, schema } = options;
  if (schema !== undefined) {
    if (type !== 'postgres') {
      throw new ConfigurationError(
        `options.storage.schema applies to Postgres only; for ${type}, name the database in the URL instead`,
      );
    }
    checkSchemaName(schema);
  }
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    // The URL may hold a password: never echo it.
    throw new ConfigurationError(
      `options.storage.url is not a valid URL; expected e.g. ${type}://user:password@host:port/database`,
    );
  }
  if (!URL_SCHEMES[type].includes(scheme)) {
    throw new ConfigurationError(
      `options.storage.url must start with ${URL_SCHEMES[type].map((s) => `${s}//`).join(' or ')} for storage type '${type}'`,
    );
  }
  if (poolSize !== undefined && (!Number.isSafeInteger(poolSize) || poolSize < 1)) {
    throw new ConfigurationError('options.storage.poolSize must be a whole number, at least 1');
  }
  if (
    connectTimeoutMs !== undefined &&
    (!Number.isSafeInteger(connectTimeoutMs) || connectTimeoutMs < 1)
  ) {
    throw new ConfigurationError(
      'options.storage.connectTimeoutMs must be a positive whole number',
    );
  }
}

/**
 * Opens (initializes) a pooled TypeORM DataSource on Postgres or MySQL/MariaDB. The caller owns
 * it and must `destroy()` it. Broken connections are dropped from the pool and replaced on the
 * next call, so the module recovers from a server restart on its own.
 */
export async function openSqlServerDataSource(
  options: SqlServerDatabaseOptions,
): Promise<DataSource> {
  checkSqlServerOptions(options);
  const poolSize = options.poolSize ?? 10;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const common = {
    url: options.url,
    poolSize,
    // Schema comes from the module's migrations, never from entity sync.
    synchronize: false,
    logging: false,
  } as const;
  const dataSourceOptions: DataSourceOptions =
    options.type === 'postgres'
      ? {
          ...common,
          type: 'postgres',
          schema: options.schema,
          ssl: options.ssl,
          connectTimeoutMS: connectTimeoutMs,
          extra: { keepAlive: true },
        }
      : {
          ...common,
          type: 'mysql',
          charset: 'utf8mb4_bin',
          ssl: options.ssl as never,
          connectTimeout: connectTimeoutMs,
          extra: { enableKeepAlive: true },
        };
  const dataSource = await new DataSource(dataSourceOptions).initialize();
  guardPostgresPoolErrors(dataSource);
  return dataSource;
}

/** The part of a pg Pool the guard uses. */
interface PgPoolEvents {
  on(event: 'connect', listener: (client: PgClientEvents) => void): unknown;
}
interface PgClientEvents {
  on(event: 'error', listener: (error: Error) => void): unknown;
}

const guardedPools = new WeakSet<object>();

/**
 * Keeps a Postgres connection that dies right as it is handed out from crashing the process.
 * pg's pool passes a new client to TypeORM, which attaches its error listener a tick later; a
 * termination (`pg_terminate_backend`, a server restart) arriving in that gap is an 'error'
 * event with no listener, which Node turns into an uncaught exception. A listener on every
 * new client closes the gap; the failing query still gets its error and the pool still
 * drops the client. Safe to call more than once; does nothing on other engines.
 */
export function guardPostgresPoolErrors(dataSource: DataSource): void {
  if (dataSource.options.type !== 'postgres') return;
  const driver = dataSource.driver as unknown as { master?: PgPoolEvents; slaves?: PgPoolEvents[] };
  for (const pool of [driver.master, ...(driver.slaves ?? [])]) {
    if (!pool || guardedPools.has(pool)) continue;
    guardedPools.add(pool);
    pool.on('connect', (client) => {
      client.on('error', () => undefined);
    });
  }
}
