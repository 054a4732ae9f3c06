import type { DataSource } from 'typeorm';
import type { SqlDialect } from './sql-dialect.js';
import { sessionMigrations } from './migrations/index.js';
import { tableNamesFor } from './table-names.js';

/**
 * Applies the module's own migrations, each once, in its own transaction, recorded in
 * `<prefix>schema_migrations`. It never touches a host's migrations: running
 * `dataSource.runMigrations()` on a shared DataSource would run the host's list too.
 *
 * @returns the names of the migrations applied by this call.
 */
export async function runSessionMigrations(
  dataSource: DataSource,
  dialect: SqlDialect,
  prefix?: string,
): Promise<string[]> {
  const tables = tableNamesFor(prefix);
  const ledger = dialect.quote(tables.schemaMigrations);
  const runner = dataSource.createQueryRunner();
  const applied: string[] = [];
  try {
    await runner.query(
      `CREATE TABLE IF NOT EXISTS ${ledger} ("name" varchar(191) NOT NULL PRIMARY KEY, "applied_at" bigint NOT NULL)`,
    );
    for (const Migration of sessionMigrations(prefix)) {
      const migration = new Migration();
      const name = migration.name ?? Migration.name;
      await runner.query(dialect.beginWrite);
      try {
        // Re-checked inside the write lock, so two processes starting together apply it once.
        const done = (await runner.query(
          `SELECT "name" FROM ${ledger} WHERE "name" = ${dialect.param(1)}`,
          [name],
        )) as unknown[];
        if (done.length === 0) {
          await migration.up(runner);
          await runner.query(
            `INSERT INTO ${ledger} ("name", "applied_at") VALUES (${dialect.param(1)}, ${dialect.param(2)})`,
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
    await runner.release();
  }
  return applied;
}
