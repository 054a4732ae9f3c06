import { Test, type TestingModule } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  EncryptedSessionService,
} from '../../src/index.js';
import { sessionMigrations } from '../../src/storage/typeorm/migrations/index.js';
import { sessionEntitySchemas } from '../../src/storage/typeorm/session-entities.js';
import { type SqlServerType } from '../../src/storage/typeorm/server-data-source.js';
import {
  createTestDatabase,
  sqlServerUp,
  type TestDatabase,
} from '../support/sql-server-support.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });
const hello = [{ role: 'user' as const, content: 'hello from a server' }];

/** Appends through one module and reads back through the same service. */
async function roundTrip(moduleRef: TestingModule, sessionId: string) {
  const sessions = moduleRef.get(EncryptedSessionService);
  await (await sessions.open(sessionId, { tenantId: 'acme' })).addItems(hello);
  return (await sessions.open(sessionId, { tenantId: 'acme' })).getItems();
}

const servers: SqlServerType[] = ['postgres', 'mysql'];
const up = Object.fromEntries(
  await Promise.all(servers.map(async (type) => [type, await sqlServerUp(type)] as const)),
) as Record<SqlServerType, boolean>;

describe.each(servers)('EncryptedSessionModule on %s', (type) => {
  const databases: TestDatabase[] = [];
  let moduleRef: TestingModule | undefined;
  let hostDataSource: DataSource | undefined;

  async function database(): Promise<TestDatabase> {
    const created = await createTestDatabase(type);
    databases.push(created);
    return created;
  }

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    if (hostDataSource?.isInitialized) await hostDataSource.destroy();
    hostDataSource = undefined;
  });
  afterAll(async () => {
    for (const created of databases) await created.drop();
  });

  it.skipIf(!up[type])('opens its own pool from a connection URL and migrates', async () => {
    const { url } = await database();
    moduleRef = await Test.createTestingModule({
      imports: [EncryptedSessionModule.forRoot({ keys: envKeys(), storage: { type, url } })],
    }).compile();
    await moduleRef.init();
    expect(await roundTrip(moduleRef, 'from-url')).toEqual(hello);
  });

  it.skipIf(!up[type])(
    "runs on a host's DataSource whose own migration run applied the exported migrations",
    async () => {
      const { url } = await database();
      const hostType = type === 'postgres' ? 'postgres' : 'mariadb';
      const hostOptions = {
        url,
        entities: sessionEntitySchemas({ databaseType: hostType }),
        migrations: sessionMigrations(),
      };
      // The server here is MariaDB: TypeORM reads its schema right only as type 'mariadb'.
      hostDataSource = new DataSource({ type: hostType, ...hostOptions });
      await hostDataSource.initialize();
      // The host's own runner, recording in TypeORM's migrations table.
      expect(await hostDataSource.runMigrations()).toHaveLength(7);
      // The exported entities describe exactly what the migrations built.
      const pending = await hostDataSource.driver.createSchemaBuilder().log();
      expect(pending.upQueries.map((query) => query.query)).toEqual([]);
      await hostDataSource.destroy();

      moduleRef = await Test.createTestingModule({
        imports: [
          TypeOrmModule.forRoot({ type: hostType, ...hostOptions }),
          // Migrations left on: the module's DDL runs again harmlessly over existing tables.
          EncryptedSessionModule.forRoot({ keys: envKeys(), dataSourceName: 'default' }),
        ],
      }).compile();
      await moduleRef.init();
      expect(await roundTrip(moduleRef, 'on-host')).toEqual(hello);
    },
  );

  it('refuses a URL of another engine before connecting', async () => {
    const url = type === 'postgres' ? 'mysql://root@127.0.0.1/test' : 'postgres://x@127.0.0.1/x';
    await expect(
      Test.createTestingModule({
        imports: [EncryptedSessionModule.forRoot({ keys: envKeys(), storage: { type, url } })],
      }).compile(),
    ).rejects.toThrow(ConfigurationError);
  });

  it('never echoes a password from a malformed URL', async () => {
    const error = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: envKeys(),
          storage: { type, url: 'not a url, password=hunter2-canary' },
        }),
      ],
    })
      .compile()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).not.toContain('hunter2-canary');
  });
});

describe('Postgres storage.schema', () => {
  const databases: TestDatabase[] = [];
  const modules: TestingModule[] = [];
  const roles: string[] = [];
  afterEach(async () => {
    for (const moduleRef of modules.splice(0)) await moduleRef.close();
  });
  afterAll(async () => {
    for (const created of databases) await created.drop();
    if (roles.length > 0) await adminQuery(roles.map((role) => `DROP ROLE IF EXISTS "${role}"`));
  });

  /** A fresh database, with the given schemas created in it. */
  async function databaseWithSchemas(...schemas: string[]): Promise<TestDatabase> {
    const created = await createTestDatabase('postgres');
    databases.push(created);
    await query(
      created.url,
      schemas.map((schema) => `CREATE SCHEMA "${schema}"`),
    );
    return created;
  }

  async function start(imports: Parameters<typeof Test.createTestingModule>[0]['imports']) {
    const moduleRef = await Test.createTestingModule({ imports }).compile();
    modules.push(moduleRef);
    await moduleRef.init();
    return moduleRef.get(EncryptedSessionService);
  }

  const tablesIn = async (url: string) =>
    (await query(url, [
      `SELECT table_schema || '.' || table_name AS "name" FROM information_schema.tables
       WHERE table_name LIKE 'nes\\_%' ORDER BY 1`,
    ])) as Array<{ name: string }>;

  it.skipIf(!up.postgres)(
    'keeps two apps with schemas a and b in one database apart, with no table in public',
    async () => {
      const { url } = await databaseWithSchemas('a', 'b');
      const keys = envKeys(); // the same root keys for both apps
      const inA = await start([
        EncryptedSessionModule.forRoot({ keys, storage: { type: 'postgres', url, schema: 'a' } }),
      ]);
      const inB = await start([
        EncryptedSessionModule.forRoot({ keys, storage: { type: 'postgres', url, schema: 'b' } }),
      ]);
      await (
        await inA.open('chat', { tenantId: 'acme' })
      ).addItems([{ role: 'user', content: 'only in a' }]);
      expect(await (await inB.open('chat', { tenantId: 'acme' })).getItems()).toEqual([]);
      await (
        await inB.open('chat', { tenantId: 'acme' })
      ).addItems([{ role: 'user', content: 'only in b' }]);
      await (await inB.open('chat', { tenantId: 'acme' })).clearSession();
      expect(await (await inA.open('chat', { tenantId: 'acme' })).getItems()).toEqual([
        { role: 'user', content: 'only in a' },
      ]);

      const names = (await tablesIn(url)).map((row) => row.name);
      for (const schema of ['a', 'b']) {
        expect(names).toEqual(
          expect.arrayContaining(
            ['sessions', 'items', 'data_keys', 'history_operations', 'schema_migrations'].map(
              (table) => `${schema}.nes_${table}`,
            ),
          ),
        );
      }
      expect(names.filter((name) => !/^(a|b)\./.test(name))).toEqual([]);
    },
  );

  it.skipIf(!up.postgres)("uses a host DataSource's schema option", async () => {
    const { url } = await databaseWithSchemas('host_sessions');
    const sessions = await start([
      TypeOrmModule.forRoot({ type: 'postgres', url, schema: 'host_sessions' }),
      EncryptedSessionModule.forRoot({ keys: envKeys(), dataSourceName: 'default' }),
    ]);
    await (await sessions.open('chat')).addItems(hello);
    expect(await (await sessions.open('chat')).getItems()).toEqual(hello);
    const names = (await tablesIn(url)).map((row) => row.name);
    expect(names).toContain('host_sessions.nes_items');
    expect(names.filter((name) => !name.startsWith('host_sessions.'))).toEqual([]);
  });

  it.skipIf(!up.postgres)('fails at startup when the schema does not exist', async () => {
    const { url } = await databaseWithSchemas();
    const error = await start([
      EncryptedSessionModule.forRoot({
        keys: envKeys(),
        storage: { type: 'postgres', url, schema: 'missing' },
      }),
    ]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(/schema 'missing' .*does not exist; create it/);
  });

  it.skipIf(!up.postgres)(
    'fails at startup when the role may not use or create in the schema',
    async () => {
      const { url, name } = await databaseWithSchemas('locked');
      const role = `nes_role_${name.slice(-10)}`;
      roles.push(role);
      await adminQuery([`CREATE ROLE "${role}" LOGIN`]);
      const asRole = new URL(url);
      asRole.username = role;
      const error = await start([
        EncryptedSessionModule.forRoot({
          keys: envKeys(),
          storage: { type: 'postgres', url: asRole.toString(), schema: 'locked' },
        }),
      ]).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(
        new RegExp(`role '${role}' lacks USAGE and CREATE on schema 'locked'.*GRANT USAGE, CREATE`),
      );
    },
  );
});

/** Runs statements on a database through a short-lived connection. */
async function query(url: string, statements: string[]): Promise<unknown> {
  const dataSource = await new DataSource({ type: 'postgres', url, poolSize: 1 }).initialize();
  try {
    let result: unknown;
    for (const statement of statements) result = await dataSource.query(statement);
    return result;
  } finally {
    await dataSource.destroy();
  }
}

const adminQuery = (statements: string[]) =>
  query('postgres://postgres@127.0.0.1:5432/postgres', statements);
