import type { MigrationInterface } from 'typeorm';
import { MAX_LEASE_NAME_BYTES } from '../../job-leases.js';
import type { SqlBackend } from '../sql-dialect.js';
import type { TableNames } from '../table-names.js';
import { tablesMigration, type TableDefinition } from './create-session-tables.migration.js';

/**
 * Column type of a job name and a lease owner per engine: compared byte for byte, as the ids
 * of the audit chains (Postgres "C", MySQL binary, SQLite's BINARY collation). Both are at most
 * {@link MAX_LEASE_NAME_BYTES} UTF-8 bytes, so at most as many characters.
 */
const LEASE_NAME_TYPES: Record<SqlBackend, string> = {
  postgres: `varchar(${MAX_LEASE_NAME_BYTES}) COLLATE "C"`,
  mysql: `varbinary(${MAX_LEASE_NAME_BYTES})`,
  sqlite: 'text',
};

/**
 * The job leases table: one row per job, kept after release (the token never goes back). A row
 * with token 0 is a job whose lease was never taken (acquire inserts it, then takes it).
 */
export function jobLeaseTableDefinitions(t: TableNames, backend: SqlBackend): TableDefinition[] {
  const name = LEASE_NAME_TYPES[backend];
  return [
    {
      name: t.jobLeases,
      body: `"job" ${name} NOT NULL PRIMARY KEY,
      "owner" ${name} NOT NULL,
      "token" bigint NOT NULL,
      "expires_at" bigint NOT NULL`,
      indexes: [],
    },
  ];
}

/** Builds the migration that adds the job leases table (after the audit checkpoints). */
export const createJobLeasesMigration = (prefix?: string): new () => MigrationInterface =>
  tablesMigration('CreateJobLeases1765200000000', prefix, jobLeaseTableDefinitions);
