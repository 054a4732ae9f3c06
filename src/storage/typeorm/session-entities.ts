import { EntitySchema, type EntitySchemaColumnOptions } from 'typeorm';
import { ConfigurationError } from '../../errors/index.js';
import { MYSQL_ID_BYTES } from './migrations/binary-ids.migration.js';
import { AUDIT_CHAIN_ID_LENGTH } from './migrations/create-audit-tables.migration.js';
import { MATTER_REF_LENGTH } from './migrations/create-legal-holds.migration.js';
import { MAX_LEASE_NAME_BYTES } from '../job-leases.js';
import { tableNamesFor } from './table-names.js';

/**
 * DataSource types the module's tables exist for.
 *
 * @publicApi
 */
export type SessionEntityDatabaseType = 'better-sqlite3' | 'postgres' | 'mysql' | 'mariadb';

/**
 * Options of {@link sessionEntitySchemas}.
 *
 * @publicApi
 */
export interface SessionEntityOptions {
  /** The host DataSource's `type`: column types differ per engine. */
  databaseType: SessionEntityDatabaseType;
  /** Table prefix, as given to the module. @default 'nes_' */
  tablePrefix?: string;
}

/** A session row as TypeORM reads it (bigints arrive as strings on Postgres and MySQL). */
export interface SessionRow {
  tenantId: string;
  sessionId: string;
  subjectId: string | null;
  createdAt: string | number;
  lastActivityAt: string | number;
  nextSeq: string | number;
  itemTtlSeconds: number | null;
  legalHold: boolean;
}

/** An item row: the envelope and the clear columns that index it. */
export interface ItemRow {
  tenantId: string;
  sessionId: string;
  seq: string | number;
  dekId: string;
  expiresAt: string | number | null;
  createdAt: string | number;
  ciphertext: Buffer;
}

/** A wrapped data key row. */
export interface DataKeyRow {
  dekId: string;
  tenantId: string;
  sessionId: string;
  subjectId: string | null;
  generation: number;
  firstSeq: string | number;
  kekId: string;
  wrappedKey: Buffer;
  state: string;
  createdAt: string | number;
  destroyedAt: string | number | null;
}

/** An applied history transaction row. */
export interface HistoryOperationRow {
  tenantId: string;
  sessionId: string;
  operationId: string;
  dekId: string;
  digest: Buffer;
  createdAt: string | number;
}

/** An audit record row (append-only). */
export interface AuditRecordRow {
  chainId: string;
  seq: string | number;
  tenantId: string;
  sessionId: string | null;
  eventId: string;
  eventTime: string | number;
  action: string;
  outcome: string;
  actorId: string;
  subjectRef: string | null;
  macKeyId: string;
  prevMac: Buffer;
  mac: Buffer;
  /** The event's canonical JSON, as its MAC covers it. */
  body: string;
}

/** A signed checkpoint row. */
export interface AuditCheckpointRow {
  tenantId: string;
  seq: string | number;
  checkpointId: string;
  checkpointTime: string | number;
  checkpoint: string;
  heads: string;
}

/** A job's lease row (token 0: never taken). */
export interface JobLeaseRow {
  job: string;
  owner: string;
  token: string | number;
  expiresAt: string | number;
}

/** A legal hold row (released ones are kept). */
export interface LegalHoldRow {
  holdId: string;
  tenantId: string;
  sessionId: string | null;
  subjectId: string | null;
  matterRef: string;
  placedAt: string | number;
  placedBy: string;
  releasedAt: string | number | null;
  releasedBy: string | null;
}

/** An erasure ledger row (pending until its receipt is stored). */
export interface ErasureLedgerRow {
  erasureId: string;
  tenantId: string;
  scope: string;
  subjectRef: string | null;
  sessionIds: string;
  createdAt: string | number;
  completedAt: string | number | null;
  receipt: string | null;
}

/** An audit chain head row. */
export interface AuditHeadRow {
  chainId: string;
  tenantId: string;
  seq: string | number;
  mac: Buffer;
  lastTime: string | number;
}

type Columns = Record<string, EntitySchemaColumnOptions>;

/** mysql2 returns VARBINARY as a Buffer; the row types promise strings. */
const utf8Text = {
  to: (value: unknown) => value,
  from: (value: unknown) => (Buffer.isBuffer(value) ? value.toString('utf8') : value),
};

const bigint = (name: string): EntitySchemaColumnOptions => ({ name, type: 'bigint' });

const nullable = (column: EntitySchemaColumnOptions): EntitySchemaColumnOptions => ({
  ...column,
  nullable: true,
});

/**
 * TypeORM entity schemas of the module's tables, for hosts that register them on their own
 * DataSource: to read them with repositories, or so that `migration:generate` sees the tables
 * as known. The schema itself comes from {@link sessionMigrations}; these mirror it and are
 * never meant for `synchronize` outside throwaway test databases. The module itself writes with
 * its own SQL and does not need them registered.
 *
 * @example
 * TypeOrmModule.forRoot({
 *   type: 'postgres', url,
 *   entities: [...hostEntities, ...sessionEntitySchemas({ databaseType: 'postgres' })],
 *   migrations: [...hostMigrations, ...sessionMigrations()],
 * })
 *
 * @publicApi
 */
export function sessionEntitySchemas(options: SessionEntityOptions): EntitySchema[] {
  const { databaseType } = options;
  if (!['better-sqlite3', 'postgres', 'mysql', 'mariadb'].includes(databaseType)) {
    throw new ConfigurationError(
      `sessionEntitySchemas: databaseType must be 'better-sqlite3', 'postgres', 'mysql' or 'mariadb'; got '${String(databaseType)}'`,
    );
  }
  const t = tableNamesFor(options.tablePrefix);
  const isPostgres = databaseType === 'postgres';
  const isMysql = databaseType === 'mysql' || databaseType === 'mariadb';
  // MySQL/MariaDB: binary ids, so they compare byte for byte (see binaryIdsMigration).
  const id = (name: string, primary = false): EntitySchemaColumnOptions =>
    isMysql
      ? { name, type: 'varbinary', length: MYSQL_ID_BYTES, primary, transformer: utf8Text }
      : { name, type: 'varchar', length: 191, primary };
  const binary = (name: string, large: boolean): EntitySchemaColumnOptions => ({
    name,
    type: isPostgres ? 'bytea' : isMysql && large ? 'longblob' : 'blob',
  });
  const dekId = (name: string, primary = false): EntitySchemaColumnOptions => ({
    name,
    type: 'char',
    length: 36,
    primary,
  });

  const sessionColumns: Columns = {
    tenantId: id('tenant_id', true),
    sessionId: id('session_id', true),
    subjectId: nullable(id('subject_id')),
    createdAt: bigint('created_at'),
    lastActivityAt: bigint('last_activity_at'),
    nextSeq: bigint('next_seq'),
    itemTtlSeconds: nullable({ name: 'item_ttl_seconds', type: 'integer' }),
    legalHold: {
      name: 'legal_hold',
      type: 'boolean',
      default: false,
      // MySQL/MariaDB store a boolean as tinyint(1); TypeORM 0.3 diffs the width unless it is given.
      ...(databaseType === 'mysql' || databaseType === 'mariadb' ? { width: 1 } : {}),
    },
  };
  const itemColumns: Columns = {
    tenantId: id('tenant_id', true),
    sessionId: id('session_id', true),
    seq: { ...bigint('seq'), primary: true },
    dekId: dekId('dek_id'),
    expiresAt: nullable(bigint('expires_at')),
    createdAt: bigint('created_at'),
    ciphertext: binary('ciphertext', true),
  };
  const dataKeyColumns: Columns = {
    dekId: dekId('dek_id', true),
    tenantId: id('tenant_id'),
    sessionId: id('session_id'),
    subjectId: nullable(id('subject_id')),
    generation: { name: 'generation', type: 'integer' },
    firstSeq: bigint('first_seq'),
    kekId: id('kek_id'),
    wrappedKey: binary('wrapped_key', false),
    state: { name: 'state', type: 'varchar', length: 16 },
    createdAt: bigint('created_at'),
    destroyedAt: nullable(bigint('destroyed_at')),
  };
  const operationColumns: Columns = {
    tenantId: id('tenant_id', true),
    sessionId: id('session_id', true),
    operationId: id('operation_id', true),
    dekId: dekId('dek_id'),
    digest: binary('digest', false),
    createdAt: bigint('created_at'),
  };

  // Chain ids are ASCII; Postgres compares and sorts them by bytes ("C"), MySQL as binary.
  const chainId = (primary: boolean): EntitySchemaColumnOptions =>
    isMysql
      ? {
          name: 'chain_id',
          type: 'varbinary',
          length: AUDIT_CHAIN_ID_LENGTH,
          primary,
          transformer: utf8Text,
        }
      : isPostgres
        ? {
            name: 'chain_id',
            type: 'varchar',
            length: AUDIT_CHAIN_ID_LENGTH,
            primary,
            collation: 'C',
          }
        : { name: 'chain_id', type: 'text', primary };
  const auditId = (name: string): EntitySchemaColumnOptions =>
    isMysql
      ? { name, type: 'varbinary', length: 1024, transformer: utf8Text }
      : { name, type: 'varchar', length: 256 };
  const mac = (name: string): EntitySchemaColumnOptions =>
    isMysql ? { name, type: 'varbinary', length: 32 } : binary(name, false);
  const auditRecordColumns: Columns = {
    chainId: chainId(true),
    seq: { ...bigint('seq'), primary: true },
    tenantId: id('tenant_id'),
    sessionId: nullable(id('session_id')),
    eventId: { name: 'event_id', type: 'char', length: 36 },
    eventTime: bigint('event_time'),
    action: { name: 'action', type: 'varchar', length: 64 },
    outcome: { name: 'outcome', type: 'varchar', length: 16 },
    actorId: auditId('actor_id'),
    subjectRef: nullable({ name: 'subject_ref', type: 'varchar', length: 64 }),
    macKeyId: auditId('mac_key_id'),
    prevMac: mac('prev_mac'),
    mac: mac('mac'),
    body: { name: 'body', type: isMysql ? 'longtext' : 'text' },
  };
  const checkpointColumns: Columns = {
    tenantId: id('tenant_id', true),
    seq: { ...bigint('seq'), primary: true },
    checkpointId: { name: 'checkpoint_id', type: 'char', length: 36 },
    checkpointTime: bigint('checkpoint_time'),
    checkpoint: { name: 'checkpoint', type: isMysql ? 'longtext' : 'text' },
    heads: { name: 'heads', type: isMysql ? 'longtext' : 'text' },
  };
  const auditHeadColumns: Columns = {
    chainId: chainId(true),
    tenantId: id('tenant_id'),
    seq: bigint('seq'),
    mac: mac('mac'),
    lastTime: bigint('last_time'),
  };

  // Job names and owners compare by their bytes, as chain ids (see createJobLeasesMigration).
  const leaseName = (name: string, primary = false): EntitySchemaColumnOptions =>
    isMysql
      ? {
          name,
          type: 'varbinary',
          length: MAX_LEASE_NAME_BYTES,
          primary,
          transformer: utf8Text,
        }
      : isPostgres
        ? { name, type: 'varchar', length: MAX_LEASE_NAME_BYTES, primary, collation: 'C' }
        : { name, type: 'text', primary };
  const jobLeaseColumns: Columns = {
    job: leaseName('job', true),
    owner: leaseName('owner'),
    token: bigint('token'),
    expiresAt: bigint('expires_at'),
  };

  // Hold and ledger ids compare and sort by their bytes (see createLegalHoldsMigration).
  const byteId = (name: string, primary = false): EntitySchemaColumnOptions =>
    isMysql
      ? { name, type: 'varbinary', length: MYSQL_ID_BYTES, primary, transformer: utf8Text }
      : isPostgres
        ? { name, type: 'varchar', length: 191, primary, collation: 'C' }
        : { name, type: 'text', primary };
  const longText = (name: string): EntitySchemaColumnOptions => ({
    name,
    type: isMysql ? 'longtext' : 'text',
  });
  const legalHoldColumns: Columns = {
    holdId: byteId('hold_id', true),
    tenantId: byteId('tenant_id'),
    sessionId: nullable(byteId('session_id')),
    subjectId: nullable(byteId('subject_id')),
    matterRef: { name: 'matter_ref', type: 'varchar', length: MATTER_REF_LENGTH },
    placedAt: bigint('placed_at'),
    placedBy: auditId('placed_by'),
    releasedAt: nullable(bigint('released_at')),
    releasedBy: nullable(auditId('released_by')),
  };
  const erasureLedgerColumns: Columns = {
    erasureId: byteId('erasure_id', true),
    tenantId: byteId('tenant_id'),
    scope: { name: 'scope', type: 'varchar', length: 16 },
    subjectRef: nullable({ name: 'subject_ref', type: 'varchar', length: 64 }),
    sessionIds: longText('session_ids'),
    createdAt: bigint('created_at'),
    completedAt: nullable(bigint('completed_at')),
    receipt: nullable(longText('receipt')),
  };

  return [
    new EntitySchema<SessionRow>({
      name: `${t.sessions}`,
      tableName: t.sessions,
      columns: sessionColumns,
      indices: [
        { name: `${t.sessions}_subject`, columns: ['tenantId', 'subjectId'] },
        // Replaces the first schema's `_activity` index on last activity alone. Postgres: ids
        // by "C" in the index (see idleSessionIndexDefinitions); TypeORM compares an index's
        // columns, not their collations.
        { name: `${t.sessions}_idle`, columns: ['lastActivityAt', 'tenantId', 'sessionId'] },
      ],
    }),
    new EntitySchema<ItemRow>({
      name: `${t.items}`,
      tableName: t.items,
      columns: itemColumns,
      indices: [
        // Replaces the first schema's `_expiry` index on expiry alone (see
        // expiryScanIndexDefinitions; Postgres: ids by "C" in the index).
        {
          name: `${t.items}_expiry_scan`,
          columns: ['expiresAt', 'tenantId', 'sessionId', 'seq'],
        },
        { name: `${t.items}_dek`, columns: ['dekId'] },
      ],
    }),
    new EntitySchema<DataKeyRow>({
      name: `${t.dataKeys}`,
      tableName: t.dataKeys,
      columns: dataKeyColumns,
      uniques: [
        { name: `${t.dataKeys}_generation`, columns: ['tenantId', 'sessionId', 'generation'] },
      ],
      indices: [
        { name: `${t.dataKeys}_subject`, columns: ['tenantId', 'subjectId'] },
        { name: `${t.dataKeys}_kek`, columns: ['kekId', 'state'] },
      ],
    }),
    new EntitySchema<HistoryOperationRow>({
      name: `${t.historyOperations}`,
      tableName: t.historyOperations,
      columns: operationColumns,
    }),
    new EntitySchema<AuditRecordRow>({
      name: t.auditRecords,
      tableName: t.auditRecords,
      columns: auditRecordColumns,
      indices: [
        { name: `${t.auditRecords}_session`, columns: ['tenantId', 'sessionId', 'eventTime'] },
        { name: `${t.auditRecords}_subject`, columns: ['tenantId', 'subjectRef', 'eventTime'] },
        { name: `${t.auditRecords}_actor`, columns: ['tenantId', 'actorId', 'eventTime'] },
      ],
    }),
    new EntitySchema<AuditHeadRow>({
      name: t.auditHeads,
      tableName: t.auditHeads,
      columns: auditHeadColumns,
      indices: [{ name: `${t.auditHeads}_tenant`, columns: ['tenantId', 'chainId'] }],
    }),
    new EntitySchema<AuditCheckpointRow>({
      name: t.auditCheckpoints,
      tableName: t.auditCheckpoints,
      columns: checkpointColumns,
    }),
    new EntitySchema<JobLeaseRow>({
      name: t.jobLeases,
      tableName: t.jobLeases,
      columns: jobLeaseColumns,
    }),
    new EntitySchema<LegalHoldRow>({
      name: t.legalHolds,
      tableName: t.legalHolds,
      columns: legalHoldColumns,
      indices: [
        { name: `${t.legalHolds}_session`, columns: ['tenantId', 'sessionId'] },
        { name: `${t.legalHolds}_subject`, columns: ['tenantId', 'subjectId'] },
      ],
    }),
    new EntitySchema<ErasureLedgerRow>({
      name: t.erasureLedger,
      tableName: t.erasureLedger,
      columns: erasureLedgerColumns,
    }),
  ];
}
