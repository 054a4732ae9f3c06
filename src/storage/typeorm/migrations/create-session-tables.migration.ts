import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dialectFor, type SqlBackend } from '../sql-dialect.js';
import { quotedTable, schemaOf, tableNamesFor, type TableNames } from '../table-names.js';

/** Column types that differ between the engines. */
interface ColumnTypes {
  /** Item ciphertext: up to the largest item an agent may store. */
  readonly largeBinary: string;
  /** Wrapped keys and digests: a few hundred bytes. */
  readonly smallBinary: string;
  readonly falseBoolean: string;
  /** Table options (MySQL: InnoDB, and a binary collation so ids compare exactly). */
  readonly tableOptions: string;
}

const COLUMN_TYPES: Record<SqlBackend, ColumnTypes> = {
  sqlite: {
    largeBinary: 'blob',
    smallBinary: 'blob',
    falseBoolean: 'boolean NOT NULL DEFAULT 0',
    tableOptions: '',
  },
  postgres: {
    largeBinary: 'bytea',
    smallBinary: 'bytea',
    falseBoolean: 'boolean NOT NULL DEFAULT false',
    tableOptions: '',
  },
  mysql: {
    largeBinary: 'longblob',
    smallBinary: 'blob',
    falseBoolean: 'boolean NOT NULL DEFAULT 0',
    // utf8mb4_bin: 'Session-A' and 'session-a' are two sessions, as on the other engines.
    tableOptions: ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin',
  },
};

/** An index: MySQL declares it inside CREATE TABLE (it has no CREATE INDEX IF NOT EXISTS). */
export interface IndexDefinition {
  readonly name: string;
  readonly columns: string;
}

export interface TableDefinition {
  readonly name: string;
  readonly body: string;
  readonly indexes: readonly IndexDefinition[];
}

/** An index a later migration adds to a table an earlier one created. */
export interface AddedIndexDefinition extends IndexDefinition {
  /** The table's unqualified name. */
  readonly table: string;
  /**
   * An index of the table the new one makes redundant (its columns lead the new one's): dropped
   * once the new one exists, and created again on the way down.
   */
  readonly replaces?: IndexDefinition;
}

/**
 * An id column in an index that orders by its bytes, as the scans' statements do: Postgres's
 * id columns take the database's collation, so the index names "C"; MySQL's binary and
 * SQLite's BINARY ids sort by bytes already.
 */
export const indexedByBytes = (backend: SqlBackend, column: string): string =>
  backend === 'postgres' ? `"${column}" COLLATE "C"` : `"${column}"`;

/**
 * The first schema: sessions, items, data keys and applied history operations. Indexes serve
 * latest-N of a session (the items primary key, scanned newest first), expiry scans, and
 * subject and root-key lookups.
 */
export function sessionTableDefinitions(t: TableNames, backend: SqlBackend): TableDefinition[] {
  const types = COLUMN_TYPES[backend];
  return [
    {
      name: t.sessions,
      body: `"tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "subject_id" varchar(191),
      "created_at" bigint NOT NULL,
      "last_activity_at" bigint NOT NULL,
      "next_seq" bigint NOT NULL,
      "item_ttl_seconds" integer,
      "legal_hold" ${types.falseBoolean},
      PRIMARY KEY ("tenant_id", "session_id")`,
      indexes: [
        { name: `${t.sessions}_subject`, columns: '"tenant_id", "subject_id"' },
        { name: `${t.sessions}_activity`, columns: '"last_activity_at"' },
      ],
    },
    {
      name: t.items,
      body: `"tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "seq" bigint NOT NULL,
      "dek_id" char(36) NOT NULL,
      "expires_at" bigint,
      "created_at" bigint NOT NULL,
      "ciphertext" ${types.largeBinary} NOT NULL,
      PRIMARY KEY ("tenant_id", "session_id", "seq")`,
      indexes: [
        { name: `${t.items}_expiry`, columns: '"expires_at"' },
        { name: `${t.items}_dek`, columns: '"dek_id"' },
      ],
    },
    {
      name: t.dataKeys,
      body: `"dek_id" char(36) NOT NULL PRIMARY KEY,
      "tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "subject_id" varchar(191),
      "generation" integer NOT NULL,
      "first_seq" bigint NOT NULL,
      "kek_id" varchar(191) NOT NULL,
      "wrapped_key" ${types.smallBinary} NOT NULL,
      "state" varchar(16) NOT NULL,
      "created_at" bigint NOT NULL,
      "destroyed_at" bigint,
      CONSTRAINT "${t.dataKeys}_generation" UNIQUE ("tenant_id", "session_id", "generation")`,
      indexes: [
        { name: `${t.dataKeys}_subject`, columns: '"tenant_id", "subject_id"' },
        { name: `${t.dataKeys}_kek`, columns: '"kek_id", "state"' },
      ],
    },
    {
      name: t.historyOperations,
      body: `"tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "operation_id" varchar(191) NOT NULL,
      "dek_id" char(36) NOT NULL,
      "digest" ${types.smallBinary} NOT NULL,
      "created_at" bigint NOT NULL,
      PRIMARY KEY ("tenant_id", "session_id", "operation_id")`,
      indexes: [],
    },
  ];
}

/**
 * The DDL for one engine, written so it can run again over tables that exist (a host that ran
 * the exported migration with its own runner, then starts the module with migrations on).
 */
export function createSessionTablesSql(t: TableNames, backend: SqlBackend): string[] {
  return createTablesSql(t, backend, sessionTableDefinitions(t, backend));
}

/** CREATE TABLE and CREATE INDEX statements for `definitions`, each skipped when it exists. */
export function createTablesSql(
  t: TableNames,
  backend: SqlBackend,
  definitions: readonly TableDefinition[],
): string[] {
  const statements: string[] = [];
  const tableOptions = COLUMN_TYPES[backend].tableOptions;
  for (const table of definitions) {
    const name = quotedTable(t, table.name);
    if (backend === 'mysql') {
      const indexes = table.indexes.map(
        (index) => `,\n      KEY "${index.name}" (${index.columns})`,
      );
      statements.push(
        `CREATE TABLE IF NOT EXISTS ${name} (\n      ${table.body}${indexes.join('')}\n    )${tableOptions}`,
      );
      continue;
    }
    statements.push(`CREATE TABLE IF NOT EXISTS ${name} (\n      ${table.body}\n    )`);
    for (const index of table.indexes) {
      statements.push(
        // Postgres creates an index in its table's schema: the name needs no qualifier.
        `CREATE INDEX IF NOT EXISTS "${index.name}" ON ${name} (${index.columns})`,
      );
    }
  }
  return statements;
}

/**
 * Builds the migration that creates the module's tables under a prefix, for whichever engine
 * the DataSource runs (SQLite, Postgres, MySQL/MariaDB). Hosts that run migrations themselves
 * add it to their DataSource's `migrations` list (see `sessionMigrations`).
 */
export function createSessionTablesMigration(prefix?: string): new () => MigrationInterface {
  tableNamesFor(prefix); // refuses a bad prefix now, not at the first run
  return class CreateSessionTables1763700000000 implements MigrationInterface {
    readonly name = 'CreateSessionTables1763700000000';

    async up(queryRunner: QueryRunner): Promise<void> {
      const dialect = dialectFor(queryRunner.connection);
      const tables = tableNamesFor(prefix, schemaOf(queryRunner.connection));
      for (const statement of createSessionTablesSql(tables, dialect.backend)) {
        await queryRunner.query(dialect.sql(statement));
      }
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      const dialect = dialectFor(queryRunner.connection);
      const tables = tableNamesFor(prefix, schemaOf(queryRunner.connection));
      for (const table of [
        tables.historyOperations,
        tables.dataKeys,
        tables.items,
        tables.sessions,
      ]) {
        await queryRunner.query(dialect.sql(`DROP TABLE IF EXISTS ${quotedTable(tables, table)}`));
      }
    }
  };
}

/**
 * A migration that creates the tables `definitionsOf` names and adds the indexes
 * `addedIndexesOf` names to existing tables (each skipped when it exists, so it runs again
 * harmlessly; an index one of them replaces is dropped after it). On the way down it puts the
 * replaced indexes back and drops the added ones, then the tables, newest first.
 */
export function tablesMigration(
  name: string,
  prefix: string | undefined,
  definitionsOf: (t: TableNames, backend: SqlBackend) => TableDefinition[],
  addedIndexesOf: (t: TableNames, backend: SqlBackend) => AddedIndexDefinition[] = () => [],
): new () => MigrationInterface {
  tableNamesFor(prefix); // refuses a bad prefix now, not at the first run
  return class implements MigrationInterface {
    readonly name = name;

    async up(queryRunner: QueryRunner): Promise<void> {
      const dialect = dialectFor(queryRunner.connection);
      const tables = tableNamesFor(prefix, schemaOf(queryRunner.connection));
      const definitions = definitionsOf(tables, dialect.backend);
      for (const statement of createTablesSql(tables, dialect.backend, definitions)) {
        await queryRunner.query(dialect.sql(statement));
      }
      for (const index of addedIndexesOf(tables, dialect.backend)) {
        await createIndex(queryRunner, tables, index.table, index);
        if (index.replaces) await dropIndex(queryRunner, tables, index.table, index.replaces);
      }
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      const dialect = dialectFor(queryRunner.connection);
      const tables = tableNamesFor(prefix, schemaOf(queryRunner.connection));
      for (const index of addedIndexesOf(tables, dialect.backend).toReversed()) {
        if (index.replaces) await createIndex(queryRunner, tables, index.table, index.replaces);
        await dropIndex(queryRunner, tables, index.table, index);
      }
      for (const table of definitionsOf(tables, dialect.backend).toReversed()) {
        await queryRunner.query(
          dialect.sql(`DROP TABLE IF EXISTS ${quotedTable(tables, table.name)}`),
        );
      }
    }
  };
}

/** Creates an index on an existing table unless one by its name exists. */
async function createIndex(
  queryRunner: QueryRunner,
  tables: TableNames,
  table: string,
  index: IndexDefinition,
): Promise<void> {
  const dialect = dialectFor(queryRunner.connection);
  const on = `${quotedTable(tables, table)} (${index.columns})`;
  if (dialect.backend === 'mysql') {
    // MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB has): look first.
    if (await mysqlIndexExists(queryRunner, table, index.name)) return;
    await queryRunner.query(dialect.sql(`CREATE INDEX "${index.name}" ON ${on}`));
    return;
  }
  // Postgres creates an index in its table's schema: the name needs no qualifier.
  await queryRunner.query(dialect.sql(`CREATE INDEX IF NOT EXISTS "${index.name}" ON ${on}`));
}

/** Drops an index of a table if it exists. */
async function dropIndex(
  queryRunner: QueryRunner,
  tables: TableNames,
  table: string,
  index: IndexDefinition,
): Promise<void> {
  const dialect = dialectFor(queryRunner.connection);
  if (dialect.backend === 'mysql') {
    // Nor DROP INDEX IF EXISTS.
    if (!(await mysqlIndexExists(queryRunner, table, index.name))) return;
    await queryRunner.query(
      dialect.sql(`DROP INDEX "${index.name}" ON ${quotedTable(tables, table)}`),
    );
    return;
  }
  // Postgres: the index lives in its table's schema.
  await queryRunner.query(dialect.sql(`DROP INDEX IF EXISTS ${quotedTable(tables, index.name)}`));
}

/** Whether a MySQL/MariaDB table of the current database has an index by this name. */
async function mysqlIndexExists(
  queryRunner: QueryRunner,
  table: string,
  name: string,
): Promise<boolean> {
  const rows = (await queryRunner.query(
    'SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ? LIMIT 1',
    [table, name],
  )) as unknown[];
  return rows.length > 0;
}
