import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { type SessionRef } from '../../src/index.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import {
  openSqlServerDataSource,
  type SqlServerType,
} from '../../src/storage/typeorm/server-data-source.js';
import { runSessionMigrations } from '../../src/storage/typeorm/migration-runner.js';
import { TamperRefusedError, type ItemDamage, type ItemTamperer } from './item-tamperer.js';
import { LOCAL_SERVERS, portOpen, requireService } from './service-availability.js';

/** Admin connections of the servers on this machine (overridable for other setups). */
export const SERVER_ADMIN_URLS: Record<SqlServerType, string> = {
  postgres: process.env.NES_TEST_POSTGRES_URL ?? LOCAL_SERVERS.postgres.url,
  mysql: process.env.NES_TEST_MYSQL_URL ?? LOCAL_SERVERS.mysql.url,
};

/** Display names for test titles. */
export const SERVER_NAMES: Record<SqlServerType, string> = {
  postgres: 'postgres',
  mysql: 'mariadb',
};

/**
 * Whether the server is up; under CI=true a missing server throws (see requireService).
 * Call at the top level of a spec: `const up = await sqlServerUp('postgres')`.
 */
export async function sqlServerUp(type: SqlServerType): Promise<boolean> {
  const url = new URL(SERVER_ADMIN_URLS[type]);
  const server = LOCAL_SERVERS[type];
  return requireService(
    server.name,
    await portOpen(Number(url.port || server.port), url.hostname),
    `start it with: ${server.start}`,
  );
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** A throwaway database on a server, dropped by `drop()`. */
export interface TestDatabase {
  readonly type: SqlServerType;
  readonly url: string;
  readonly name: string;
  drop(): Promise<void>;
}

/** Runs `statements` one by one on a connection of their own to the server at `adminUrl`. */
export async function adminQuery(
  type: SqlServerType,
  statements: string[],
  adminUrl = SERVER_ADMIN_URLS[type],
): Promise<void> {
  const admin = new DataSource(
    type === 'postgres'
      ? { type: 'postgres', url: adminUrl, poolSize: 1 }
      : { type: 'mysql', url: adminUrl, poolSize: 1 },
  );
  await admin.initialize();
  try {
    for (const statement of statements) await admin.query(statement);
  } finally {
    await admin.destroy();
  }
}

/** Where {@link createTestDatabase} creates its database, and what it calls it. */
export interface TestDatabaseOptions {
  /** Admin connection of the server. @default SERVER_ADMIN_URLS[type] */
  readonly adminUrl?: string;
  /** The name, before `_` and ten random hex digits. @default 'nes_test' */
  readonly namePrefix?: string;
  /**
   * Postgres: an ICU locale for the database's default collation (e.g. 'en-US', which sorts
   * 's' before 'S'), so a statement that must compare ids by their bytes has to say so.
   * @default the server's (here C.UTF-8, which happens to sort by bytes)
   */
  readonly postgresIcuLocale?: string;
}

/**
 * Creates an empty database with a random name (utf8mb4_bin on MySQL, as the module requires).
 */
export async function createTestDatabase(
  type: SqlServerType,
  {
    adminUrl = SERVER_ADMIN_URLS[type],
    namePrefix = 'nes_test',
    postgresIcuLocale,
  }: TestDatabaseOptions = {},
): Promise<TestDatabase> {
  const name = `${namePrefix}_${randomBytes(5).toString('hex')}`;
  await adminQuery(
    type,
    [
      type === 'postgres'
        ? `CREATE DATABASE "${name}"${
            postgresIcuLocale === undefined
              ? ''
              : ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${postgresIcuLocale}'`
          }`
        : `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    ],
    adminUrl,
  );
  return {
    type,
    name,
    url: withDatabase(adminUrl, name),
    drop: () =>
      adminQuery(
        type,
        [
          type === 'postgres'
            ? `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`
            : `DROP DATABASE IF EXISTS \`${name}\``,
        ],
        adminUrl,
      ),
  };
}

/** A migrated throwaway database with one pooled DataSource, shared by a spec file. */
export interface MigratedTestDatabase {
  readonly database: TestDatabase;
  readonly dataSource: DataSource;
  /** A storage over the shared DataSource (closing it leaves the DataSource open). */
  readonly newStorage: () => TypeOrmSessionStorage;
  readonly dispose: () => Promise<void>;
}

export async function createMigratedTestDatabase(
  type: SqlServerType,
  poolSize = 10,
  options: TestDatabaseOptions = {},
): Promise<MigratedTestDatabase> {
  const database = await createTestDatabase(type, options);
  const dataSource = await openSqlServerDataSource({ type, url: database.url, poolSize });
  await runSessionMigrations(dataSource, dialectFor(dataSource));
  return {
    database,
    dataSource,
    newStorage: () => new TypeOrmSessionStorage({ dataSource }),
    async dispose() {
      if (dataSource.isInitialized) await dataSource.destroy();
      await database.drop();
    },
  };
}

/** Tampers with the module's tables through a DataSource on any SQL engine. */
export function sqlItemTamperer(dataSource: DataSource, prefix = 'nes_'): ItemTamperer {
  const dialect = dialectFor(dataSource);
  const p = (n: number) => dialect.param(n);
  const items = `"${prefix}items"`;
  const where = (first: number) =>
    `"tenant_id" = ${p(first)} AND "session_id" = ${p(first + 1)} AND "seq" = ${p(first + 2)}`;
  const query = (statement: string, params: unknown[]) =>
    dataSource.query(dialect.sql(statement), params) as Promise<Array<Record<string, unknown>>>;
  const at = (ref: SessionRef, seq: number) => [ref.tenantId, ref.sessionId, seq];
  const column = async (ref: SessionRef, seq: number, name: string) => {
    const rows = await query(`SELECT "${name}" FROM ${items} WHERE ${where(1)}`, at(ref, seq));
    if (!rows[0]) throw new Error(`No item ${seq} in session ${ref.sessionId}`);
    return rows[0][name];
  };
  const set = (ref: SessionRef, seq: number, name: string, value: unknown) =>
    query(`UPDATE ${items} SET "${name}" = ${p(1)} WHERE ${where(2)}`, [value, ...at(ref, seq)]);
  return {
    ciphertextOf: async (ref, seq) => Buffer.from((await column(ref, seq, 'ciphertext')) as Buffer),
    setCiphertext: async (ref, seq, ciphertext) =>
      void (await set(ref, seq, 'ciphertext', ciphertext)),
    dekIdOf: async (ref, seq) => String(await column(ref, seq, 'dek_id')),
    setDekId: async (ref, seq, dekId) => void (await set(ref, seq, 'dek_id', dekId)),
    setExpiresAt: async (ref, seq, expiresAt) =>
      void (await set(ref, seq, 'expires_at', expiresAt)),
    async moveItem(ref, fromSeq, toSeq) {
      await query(`DELETE FROM ${items} WHERE ${where(1)}`, at(ref, toSeq));
      await set(ref, fromSeq, 'seq', toSeq);
    },
    deleteItem: async (ref, seq) =>
      void (await query(`DELETE FROM ${items} WHERE ${where(1)}`, at(ref, seq))),
    async countItems(ref) {
      const rows = await query(
        `SELECT COUNT(*) AS "n" FROM ${items} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
        [ref.tenantId, ref.sessionId],
      );
      return Number(rows[0]!.n);
    },
    async destroyKeys(ref) {
      await query(
        `UPDATE "${prefix}data_keys" SET "state" = 'destroyed' WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
        [ref.tenantId, ref.sessionId],
      );
    },
    async damageItem(ref, seq, damage) {
      const value = SQL_RAW_VALUES[damage.field][damage.as as never];
      try {
        await set(ref, seq, SQL_COLUMNS[damage.field], value);
      } catch (error) {
        throw new TamperRefusedError('refused-by-backend', String((error as Error).message));
      }
    },
    async setOperationDekId(ref, operationId, dekId) {
      await query(
        `UPDATE "${prefix}history_operations" SET "dek_id" = ${p(1)} WHERE "tenant_id" = ${p(2)} AND "session_id" = ${p(3)} AND "operation_id" = ${p(4)}`,
        [dekId, ref.tenantId, ref.sessionId, operationId],
      );
    },
    async setNextSeq(ref, nextSeq) {
      await query(
        `UPDATE "${prefix}sessions" SET "next_seq" = ${p(1)} WHERE "tenant_id" = ${p(2)} AND "session_id" = ${p(3)}`,
        [nextSeq, ref.tenantId, ref.sessionId],
      );
    },
    async countActiveKeys(ref) {
      const rows = await query(
        `SELECT COUNT(*) AS "n" FROM "${prefix}data_keys" WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)} AND "state" = 'active'`,
        [ref.tenantId, ref.sessionId],
      );
      return Number(rows[0]!.n);
    },
    async deleteSessionRow(ref) {
      await query(
        `DELETE FROM "${prefix}sessions" WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}`,
        [ref.tenantId, ref.sessionId],
      );
    },
  };
}

const SQL_COLUMNS: Record<ItemDamage['field'], string> = {
  seq: 'seq',
  expiresAt: 'expires_at',
  createdAt: 'created_at',
  dekId: 'dek_id',
  ciphertext: 'ciphertext',
};

/** Raw values as an operator's UPDATE would send them; typed columns may refuse some. */
const SQL_RAW_VALUES: {
  [F in ItemDamage['field']]: Record<Extract<ItemDamage, { field: F }>['as'], unknown>;
} = {
  // 2^60: a whole number a bigint column holds but a JS number cannot represent exactly.
  seq: { text: 'x1', 'beyond-2^53': '1152921504606846976' },
  expiresAt: { text: 'soon', 'beyond-2^53': '1152921504606846976' },
  createdAt: { text: 'yesterday' },
  dekId: { integer: 42 },
  ciphertext: { integer: 42, real: 4.5, text: 'soon' },
};
