import type { DataSource } from 'typeorm';
import { ConfigurationError } from '../../errors/index.js';

/** Names of the module's tables under a configurable prefix. */
export interface TableNames {
  readonly sessions: string;
  readonly items: string;
  readonly dataKeys: string;
  readonly historyOperations: string;
  /** Append-only audit records, one row per event. */
  readonly auditRecords: string;
  /** Each audit chain's last seq and MAC. */
  readonly auditHeads: string;
  /** Signed checkpoints of each tenant's trail. */
  readonly auditCheckpoints: string;
  /** Each scheduled job's lease: owner, fencing token, expiry. */
  readonly jobLeases: string;
  /** Legal holds, placed and released (released ones are kept). */
  readonly legalHolds: string;
  /** What each erasure destroyed, pending until its receipt is stored. */
  readonly erasureLedger: string;
  readonly schemaMigrations: string;
  /** Postgres schema holding the tables; undefined for the connection's search_path. */
  readonly schema?: string;
}

/** Default prefix of every table the module creates. */
export const DEFAULT_TABLE_PREFIX = 'nes_';

const PREFIX_PATTERN = /^[a-z][a-z0-9_]{0,19}$/;

/**
 * Table names for a prefix. The prefix goes into SQL unquoted-safe, so it is restricted to
 * lowercase letters, digits and underscores.
 */
export function tableNamesFor(prefix: string = DEFAULT_TABLE_PREFIX, schema?: string): TableNames {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new ConfigurationError(
      `Invalid table prefix '${prefix}': use 1-20 lowercase letters, digits or underscores, starting with a letter (default '${DEFAULT_TABLE_PREFIX}')`,
    );
  }
  return {
    sessions: `${prefix}sessions`,
    items: `${prefix}items`,
    dataKeys: `${prefix}data_keys`,
    historyOperations: `${prefix}history_operations`,
    auditRecords: `${prefix}audit_records`,
    auditHeads: `${prefix}audit_heads`,
    auditCheckpoints: `${prefix}audit_checkpoints`,
    jobLeases: `${prefix}job_leases`,
    legalHolds: `${prefix}legal_holds`,
    erasureLedger: `${prefix}erasure_ledger`,
    schemaMigrations: `${prefix}schema_migrations`,
    schema: schema === undefined ? undefined : checkSchemaName(schema),
  };
}

const SCHEMA_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Throws a ConfigurationError unless the name is a plain Postgres identifier. */
export function checkSchemaName(schema: string): string {
  if (typeof schema !== 'string' || !SCHEMA_PATTERN.test(schema)) {
    throw new ConfigurationError(
      `Invalid Postgres schema name for the session tables: use 1-63 letters, digits or underscores, starting with a letter or underscore (options.storage.schema, or the host DataSource's schema)`,
    );
  }
  return schema;
}

/**
 * The Postgres schema a DataSource's tables live in (its `schema` option), or undefined for
 * other engines and for a DataSource without one (the connection's search_path decides).
 */
export function schemaOf(dataSource: DataSource): string | undefined {
  if (dataSource.options.type !== 'postgres') return undefined;
  const schema = (dataSource.options as { schema?: string }).schema;
  return schema === undefined ? undefined : checkSchemaName(schema);
}

/** A table's name quoted for SQL (double quotes), qualified by the schema when there is one. */
export function quotedTable(tables: TableNames, name: string): string {
  return tables.schema === undefined ? `"${name}"` : `"${tables.schema}"."${name}"`;
}
