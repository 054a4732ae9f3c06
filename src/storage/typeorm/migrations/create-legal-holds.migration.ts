import type { MigrationInterface } from 'typeorm';
import type { SqlBackend } from '../sql-dialect.js';
import type { TableNames } from '../table-names.js';
import { MYSQL_ID_BYTES } from './binary-ids.migration.js';
import {
  indexedByBytes,
  tablesMigration,
  type AddedIndexDefinition,
  type TableDefinition,
} from './create-session-tables.migration.js';

/** Characters of a hold's matter reference (`LegalHoldRecord.matterRef`). */
export const MATTER_REF_LENGTH = 191;
/** Characters of an actor id (`MAX_AUDIT_ID_LENGTH`, 256): who placed or released a hold. */
const ACTOR_ID_LENGTH = 256;

/** Column types of the hold and ledger tables per engine. */
const HOLD_COLUMN_TYPES: Record<SqlBackend, { id: string; actorId: string; text: string }> = {
  postgres: {
    // "C": ids compare and sort by their bytes, whatever the database's collation, so the
    // primary key serves the lists in hold id order.
    id: 'varchar(191) COLLATE "C"',
    actorId: `varchar(${ACTOR_ID_LENGTH})`,
    text: 'text',
  },
  mysql: {
    // Binary: no padding, case folding or normalisation (see binaryIdsMigration).
    id: `varbinary(${MYSQL_ID_BYTES})`,
    actorId: `varbinary(${ACTOR_ID_LENGTH * 4})`,
    text: 'longtext',
  },
  sqlite: {
    // The BINARY collation compares bytes.
    id: 'text',
    actorId: `varchar(${ACTOR_ID_LENGTH})`,
    text: 'text',
  },
};

/**
 * The legal holds (on a session or on a subject, looked up by either within a tenant; released
 * ones are kept, for the record) and the erasure ledger (read by id only).
 */
export function legalHoldTableDefinitions(t: TableNames, backend: SqlBackend): TableDefinition[] {
  const type = HOLD_COLUMN_TYPES[backend];
  return [
    {
      name: t.legalHolds,
      body: `"hold_id" ${type.id} NOT NULL PRIMARY KEY,
      "tenant_id" ${type.id} NOT NULL,
      "session_id" ${type.id},
      "subject_id" ${type.id},
      "matter_ref" varchar(${MATTER_REF_LENGTH}) NOT NULL,
      "placed_at" bigint NOT NULL,
      "placed_by" ${type.actorId} NOT NULL,
      "released_at" bigint,
      "released_by" ${type.actorId}`,
      indexes: [
        { name: `${t.legalHolds}_session`, columns: '"tenant_id", "session_id"' },
        { name: `${t.legalHolds}_subject`, columns: '"tenant_id", "subject_id"' },
      ],
    },
    {
      name: t.erasureLedger,
      body: `"erasure_id" ${type.id} NOT NULL PRIMARY KEY,
      "tenant_id" ${type.id} NOT NULL,
      "scope" varchar(16) NOT NULL,
      "subject_ref" varchar(64),
      "session_ids" ${type.text} NOT NULL,
      "created_at" bigint NOT NULL,
      "completed_at" bigint,
      "receipt" ${type.text}`,
      indexes: [],
    },
  ];
}

/**
 * The index of the idle-session scan (`listIdleSessions`): sessions by last activity, then
 * tenant and session by their bytes, the scan's order, so a page is a range of it read in
 * order. Postgres: the sessions' id columns take the database's collation, so the index names
 * "C", as the scan's statement does; MySQL's binary and SQLite's BINARY ids sort by bytes.
 * It replaces the first schema's index on last activity alone, which its first column serves
 * as well: kept, the planners preferred that narrower one and sorted (Postgres), and every
 * touch of a session wrote both.
 */
export function idleSessionIndexDefinitions(
  t: TableNames,
  backend: SqlBackend,
): AddedIndexDefinition[] {
  const byBytes = (column: string) => indexedByBytes(backend, column);
  return [
    {
      table: t.sessions,
      name: `${t.sessions}_idle`,
      columns: `"last_activity_at", ${byBytes('tenant_id')}, ${byBytes('session_id')}`,
      replaces: { name: `${t.sessions}_activity`, columns: '"last_activity_at"' },
    },
  ];
}

/**
 * Builds the migration that adds the legal holds and the erasure ledger, and the sessions'
 * idle-scan index (after the job leases).
 */
export const createLegalHoldsMigration = (prefix?: string): new () => MigrationInterface =>
  tablesMigration(
    'CreateLegalHolds1765300000000',
    prefix,
    legalHoldTableDefinitions,
    idleSessionIndexDefinitions,
  );
