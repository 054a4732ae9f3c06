import type { DataSource, QueryRunner } from 'typeorm';
import type { SqlDialect } from './sql-dialect.js';
import { sessionMigrations } from './migrations/index.js';
import { ConfigurationError } from '../../errors/index.js';
import { quotedTable, schemaOf, tableNamesFor } from './table-names.js';

/** How long a starting process waits for another one that is applying migrations. */
const MIGRATION_LOCK_WAIT_SECONDS = 60;

/**
 * Applies the module's own migrations, each once, in its own transaction, recorded in
 * `<prefix>schema_migrations`. It never touches a host's migrations: running
 * `dataSource.runMigrations()` on a shared DataSource would run the host's list too.
 * Replicas starting together are serialized by a lock (SQLite's write lock, a Postgres
 * advisory lock, MySQL's GET_LOCK), so each migration is applied once.
 *
 * @returns the names of the migrations applied by this call.
 */
export async function runSessionMigrations(
  dataSource: DataSource,
  dialect: SqlDialect,
  prefix?: string,
): Promise<string[]> {
  const tables = tableNamesFor(prefix, schemaOf(dataSource));
  const ledger = quotedTable(tables, tables.schemaMigrations);
  const sql = (statement: string) => dialect.sql(statement);
  const runner = dataSource.createQueryRunner();
  const applied: string[] = [];
  // Per schema: two schemas of one database migrate independently.
  const lockName = `nes_migrations_${tables.schema ?? ''}.${tables.schemaMigrations}`;
  try {
    if (tables.schema !== undefined) await checkSchemaUsable(runner, tables.schema);
    await acquireMigrationLock(runner, dialect, lockName);
    try {
      await runner.query(
        sql(
          `CREATE TABLE IF NOT EXISTS ${ledger} ("name" varchar(191) NOT NULL PRIMARY KEY, "applied_at" bigint NOT NULL)`,
        ),
      );
      for (const Migration of sessionMigrations(prefix)) {
        const migration = new Migration();
        const name = migration.name ?? Migration.name;
        // MySQL commits DDL on its own; the lock above is what keeps this to one process there.
        for (const statement of dialect.beginWrite) await runner.query(statement);
        try {
          // Re-checked inside the lock, so two processes starting together apply it once.
          const done = (await runner.query(
            sql(`SELECT "name" FROM ${ledger} WHERE "name" = ${dialect.param(1)}`),
            [name],
          )) as unknown[];
          if (done.length === 0) {
            await migration.up(runner);
            await runner.query(
              sql(
                `INSERT INTO ${ledger} ("name", "applied_at") VALUES (${dialect.param(1)}, ${dialect.param(2)})`,
              ),
              [name, Date.now()],
            );
            applied.push(name);
          }
          await runner.query('COMMIT');
        } catch (error) {
          await runner.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }
    } finally {
      await releaseMigrationLock(runner, dialect, lockName);
    }
  } finally {
    await runner.release();
  }
  return applied;
}

/**
 * Fails with a ConfigurationError that says what to do when the Postgres schema is missing or
 * the connecting role may not use it or create tables in it.
 */
async function checkSchemaUsable(runner: QueryRunner, schema: string): Promise<void> {
  const [row] = (await runner.query(
    `SELECT current_user AS "role",
       has_schema_privilege(n.oid, 'USAGE') AS "usage",
       has_schema_privilege(n.oid, 'CREATE') AS "create"
     FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1`,
    [schema],
  )) as Array<{ role: string; usage: boolean | null; create: boolean | null }>;
  if (row?.usage === null || row?.usage === undefined) {
    throw new ConfigurationError(
      `Postgres schema '${schema}' (options.storage.schema, or the host DataSource's schema) does not exist; create it (CREATE SCHEMA "${schema}") and grant USAGE and CREATE on it to the connecting role, or remove the option`,
    );
  }
  if (!row.usage || !row.create) {
    const missing = [row.usage ? '' : 'USAGE', row.create ? '' : 'CREATE'].filter(Boolean);
    throw new ConfigurationError(
      `Postgres role '${row.role}' lacks ${missing.join(' and ')} on schema '${schema}' (options.storage.schema, or the host DataSource's schema); GRANT USAGE, CREATE ON SCHEMA "${schema}" TO "${row.role}", or configure a schema it may use`,
    );
  }
}

async function acquireMigrationLock(
  runner: QueryRunner,
  dialect: SqlDialect,
  lockName: string,
): Promise<void> {
  if (dialect.backend === 'postgres') {
    await runner.query('SELECT pg_advisory_lock(hashtext($1))', [lockName]);
  } else if (dialect.backend === 'mysql') {
    const [row] = (await runner.query('SELECT GET_LOCK(?, ?) AS acquired', [
      lockName,
      MIGRATION_LOCK_WAIT_SECONDS,
    ])) as Array<{ acquired: unknown }>;
    if (Number(row?.acquired) !== 1) {
      throw new Error(
        `Another process held the migration lock '${lockName}' for ${MIGRATION_LOCK_WAIT_SECONDS}s; start again once it has finished`,
      );
    }
  }
  // SQLite: each migration's BEGIN IMMEDIATE holds the database write lock.
}

async function releaseMigrationLock(
  runner: QueryRunner,
  dialect: SqlDialect,
  lockName: string,
): Promise<void> {
  if (dialect.backend === 'postgres') {
    await runner
      .query('SELECT pg_advisory_unlock(hashtext($1))', [lockName])
      .catch(() => undefined);
  } else if (dialect.backend === 'mysql') {
    await runner.query('SELECT RELEASE_LOCK(?)', [lockName]).catch(() => undefined);
  }
}
