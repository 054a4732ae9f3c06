import type { MigrationInterface, QueryRunner } from 'typeorm';
import { tableNamesFor, type TableNames } from '../table-names.js';

/** The first schema: sessions, items, data keys and applied history operations. */
function createSessionTablesSql(t: TableNames): string[] {
  return [
    `CREATE TABLE "${t.sessions}" (
      "tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "subject_id" varchar(191),
      "created_at" bigint NOT NULL,
      "last_activity_at" bigint NOT NULL,
      "next_seq" bigint NOT NULL,
      "item_ttl_seconds" integer,
      "legal_hold" boolean NOT NULL DEFAULT 0,
      PRIMARY KEY ("tenant_id", "session_id")
    )`,
    `CREATE INDEX "${t.sessions}_subject" ON "${t.sessions}" ("tenant_id", "subject_id")`,
    `CREATE INDEX "${t.sessions}_activity" ON "${t.sessions}" ("last_activity_at")`,
    // The primary key serves latest-N: a newest-first scan that stops after N visible rows.
    `CREATE TABLE "${t.items}" (
      "tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "seq" bigint NOT NULL,
      "dek_id" char(36) NOT NULL,
      "expires_at" bigint,
      "created_at" bigint NOT NULL,
      "ciphertext" blob NOT NULL,
      PRIMARY KEY ("tenant_id", "session_id", "seq")
    )`,
    `CREATE INDEX "${t.items}_expiry" ON "${t.items}" ("expires_at")`,
    `CREATE INDEX "${t.items}_dek" ON "${t.items}" ("dek_id")`,
    `CREATE TABLE "${t.dataKeys}" (
      "dek_id" char(36) NOT NULL PRIMARY KEY,
      "tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "subject_id" varchar(191),
      "generation" integer NOT NULL,
      "first_seq" bigint NOT NULL,
      "kek_id" varchar(191) NOT NULL,
      "wrapped_key" blob NOT NULL,
      "state" varchar(16) NOT NULL,
      "created_at" bigint NOT NULL,
      "destroyed_at" bigint,
      UNIQUE ("tenant_id", "session_id", "generation")
    )`,
    `CREATE INDEX "${t.dataKeys}_subject" ON "${t.dataKeys}" ("tenant_id", "subject_id")`,
    `CREATE INDEX "${t.dataKeys}_kek" ON "${t.dataKeys}" ("kek_id", "state")`,
    `CREATE TABLE "${t.historyOperations}" (
      "tenant_id" varchar(191) NOT NULL,
      "session_id" varchar(191) NOT NULL,
      "operation_id" varchar(191) NOT NULL,
      "dek_id" char(36) NOT NULL,
      "digest" blob NOT NULL,
      "created_at" bigint NOT NULL,
      PRIMARY KEY ("tenant_id", "session_id", "operation_id")
    )`,
  ];
}

/**
 * Builds the migration that creates the module's tables under a prefix. Hosts that run
 * migrations with their own DataSource add the returned class to its `migrations` list.
 */
export function createSessionTablesMigration(prefix?: string): new () => MigrationInterface {
  const tables = tableNamesFor(prefix);
  return class CreateSessionTables1763700000000 implements MigrationInterface {
    readonly name = 'CreateSessionTables1763700000000';

    async up(queryRunner: QueryRunner): Promise<void> {
      for (const statement of createSessionTablesSql(tables)) await queryRunner.query(statement);
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      for (const table of [
        tables.historyOperations,
        tables.dataKeys,
        tables.items,
        tables.sessions,
      ]) {
        await queryRunner.query(`DROP TABLE "${table}"`);
      }
    }
  };
}
