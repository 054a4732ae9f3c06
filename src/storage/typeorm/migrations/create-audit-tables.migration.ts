import type { MigrationInterface } from 'typeorm';
import type { SqlBackend } from '../sql-dialect.js';
import type { TableNames } from '../table-names.js';
import { MYSQL_ID_BYTES } from './binary-ids.migration.js';
import { tablesMigration, type TableDefinition } from './create-session-tables.migration.js';

/**
 * Characters of a chain id: `session.` + two base64url ids of at most 573 UTF-8 bytes each
 * (764 characters), with room to spare. Chain ids are ASCII.
 */
export const AUDIT_CHAIN_ID_LENGTH = 1600;
/** Characters of an actor id or key id in the trail (`MAX_AUDIT_ID_LENGTH`, 256). */
const AUDIT_ID_LENGTH = 256;

/** Column types of the audit tables per engine. */
const AUDIT_COLUMN_TYPES: Record<
  SqlBackend,
  { chainId: string; id: string; auditId: string; mac: string; body: string }
> = {
  postgres: {
    // "C": chain ids sort and compare by their bytes, as checkpoints list them.
    chainId: `varchar(${AUDIT_CHAIN_ID_LENGTH}) COLLATE "C"`,
    id: 'varchar(191)',
    auditId: `varchar(${AUDIT_ID_LENGTH})`,
    mac: 'bytea',
    body: 'text',
  },
  mysql: {
    // Binary: bytes compare and sort as bytes, with no padding or case folding.
    chainId: `varbinary(${AUDIT_CHAIN_ID_LENGTH})`,
    id: `varbinary(${MYSQL_ID_BYTES})`,
    auditId: `varbinary(${AUDIT_ID_LENGTH * 4})`,
    mac: 'varbinary(32)',
    body: 'longtext',
  },
  sqlite: {
    chainId: 'text',
    id: 'varchar(191)',
    auditId: `varchar(${AUDIT_ID_LENGTH})`,
    mac: 'blob',
    body: 'text',
  },
};

/**
 * The audit tables. Records are append-only, keyed by (chain, seq), with the indexes the access
 * report reads by (session, subject, actor, each within a tenant and by time). Heads hold each
 * chain's last seq and MAC, listed per tenant by chain id for checkpoints.
 */
export function auditTableDefinitions(t: TableNames, backend: SqlBackend): TableDefinition[] {
  const type = AUDIT_COLUMN_TYPES[backend];
  return [
    {
      name: t.auditRecords,
      body: `"chain_id" ${type.chainId} NOT NULL,
      "seq" bigint NOT NULL,
      "tenant_id" ${type.id} NOT NULL,
      "session_id" ${type.id},
      "event_id" char(36) NOT NULL,
      "event_time" bigint NOT NULL,
      "action" varchar(64) NOT NULL,
      "outcome" varchar(16) NOT NULL,
      "actor_id" ${type.auditId} NOT NULL,
      "subject_ref" varchar(64),
      "mac_key_id" ${type.auditId} NOT NULL,
      "prev_mac" ${type.mac} NOT NULL,
      "mac" ${type.mac} NOT NULL,
      "body" ${type.body} NOT NULL,
      PRIMARY KEY ("chain_id", "seq")`,
      indexes: [
        {
          name: `${t.auditRecords}_session`,
          columns: '"tenant_id", "session_id", "event_time"',
        },
        {
          name: `${t.auditRecords}_subject`,
          columns: '"tenant_id", "subject_ref", "event_time"',
        },
        { name: `${t.auditRecords}_actor`, columns: '"tenant_id", "actor_id", "event_time"' },
      ],
    },
    {
      name: t.auditHeads,
      body: `"chain_id" ${type.chainId} NOT NULL PRIMARY KEY,
      "tenant_id" ${type.id} NOT NULL,
      "seq" bigint NOT NULL,
      "mac" ${type.mac} NOT NULL,
      "last_time" bigint NOT NULL`,
      indexes: [{ name: `${t.auditHeads}_tenant`, columns: '"tenant_id", "chain_id"' }],
    },
  ];
}

/** The checkpoints table: a tenant's signed checkpoints by seq, with the heads each covers. */
export function checkpointTableDefinitions(t: TableNames, backend: SqlBackend): TableDefinition[] {
  const type = AUDIT_COLUMN_TYPES[backend];
  return [
    {
      name: t.auditCheckpoints,
      body: `"tenant_id" ${type.id} NOT NULL,
      "seq" bigint NOT NULL,
      "checkpoint_id" char(36) NOT NULL,
      "checkpoint_time" bigint NOT NULL,
      "checkpoint" ${type.body} NOT NULL,
      "heads" ${type.body} NOT NULL,
      PRIMARY KEY ("tenant_id", "seq")`,
      indexes: [],
    },
  ];
}

/**
 * Builds the migration that creates the audit trail's records and chain heads under a prefix
 * (after the session tables).
 */
export const createAuditTablesMigration = (prefix?: string): new () => MigrationInterface =>
  tablesMigration('CreateAuditTables1765000000000', prefix, auditTableDefinitions);

/** Builds the migration that adds the checkpoints table (after the audit tables). */
export const createAuditCheckpointsMigration = (prefix?: string): new () => MigrationInterface =>
  tablesMigration('CreateAuditCheckpoints1765100000000', prefix, checkpointTableDefinitions);
