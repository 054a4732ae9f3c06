import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dialectFor } from '../sql-dialect.js';
import { tableNamesFor, type TableNames } from '../table-names.js';

/**
 * Bytes an id column holds on MySQL/MariaDB: ids are at most 191 UTF-16 code units, which is
 * at most 573 UTF-8 bytes; 764 (191 four-byte characters) leaves room for any id the first
 * schema's `varchar(191)` could hold. The widest key, (tenant, session, operation), is
 * 3 x 764 = 2,292 bytes, under InnoDB's 3,072-byte limit for DYNAMIC rows.
 */
export const MYSQL_ID_BYTES = 764;

/** The id columns of each table, and whether each may be NULL. */
function idColumns(t: TableNames): Array<[table: string, columns: Array<[string, boolean]>]> {
  return [
    [
      t.sessions,
      [
        ['tenant_id', false],
        ['session_id', false],
        ['subject_id', true],
      ],
    ],
    [
      t.items,
      [
        ['tenant_id', false],
        ['session_id', false],
      ],
    ],
    [
      t.dataKeys,
      [
        ['tenant_id', false],
        ['session_id', false],
        ['subject_id', true],
        ['kek_id', false],
      ],
    ],
    [
      t.historyOperations,
      [
        ['tenant_id', false],
        ['session_id', false],
        ['operation_id', false],
      ],
    ],
  ];
}

/**
 * The DDL that turns the id columns into `VARBINARY` on MySQL/MariaDB (none elsewhere).
 *
 * Why binary columns: `utf8mb4_bin` is a PAD SPACE collation on MariaDB and on MySQL 8, so
 * 'acme ' and 'acme' were one tenant. The NO PAD binary collations differ
 * per server (`utf8mb4_nopad_bin` exists only on MariaDB, `utf8mb4_0900_bin` only on MySQL),
 * while `VARBINARY` compares bytes, with no padding, case or normalisation, on both. The
 * conversion keeps the stored UTF-8 bytes; string parameters compare as their UTF-8 bytes.
 */
export function binaryIdsSql(t: TableNames): string[] {
  return idColumns(t).map(
    ([table, columns]) =>
      `ALTER TABLE "${table}" ${columns
        .map(
          ([column, isNullable]) =>
            `MODIFY "${column}" varbinary(${MYSQL_ID_BYTES}) ${isNullable ? 'NULL' : 'NOT NULL'}`,
        )
        .join(', ')}`,
  );
}

/**
 * Builds the migration that makes ids compare byte for byte on MySQL/MariaDB. Postgres
 * (deterministic collations compare equal only when the bytes are equal) and SQLite (BINARY
 * collation) already do, so it changes nothing there.
 */
export function binaryIdsMigration(prefix?: string): new () => MigrationInterface {
  const tables = tableNamesFor(prefix);
  return class BinaryIds1764000000000 implements MigrationInterface {
    readonly name = 'BinaryIds1764000000000';

    async up(queryRunner: QueryRunner): Promise<void> {
      const dialect = dialectFor(queryRunner.connection);
      if (dialect.backend !== 'mysql') return;
      for (const statement of binaryIdsSql(tables)) await queryRunner.query(dialect.sql(statement));
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      const dialect = dialectFor(queryRunner.connection);
      if (dialect.backend !== 'mysql') return;
      for (const [table, columns] of idColumns(tables)) {
        await queryRunner.query(
          dialect.sql(
            `ALTER TABLE "${table}" ${columns
              .map(
                ([column, isNullable]) =>
                  `MODIFY "${column}" varchar(191) COLLATE utf8mb4_bin ${isNullable ? 'NULL' : 'NOT NULL'}`,
              )
              .join(', ')}`,
          ),
        );
      }
    }
  };
}
