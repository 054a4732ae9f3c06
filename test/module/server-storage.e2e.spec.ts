import { Test, type TestingModule } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  EncryptedSessionService,
  sessionEntitySchemas,
  sessionMigrations,
  type SqlServerType,
} from '../../src/index.js';
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
      expect(await hostDataSource.runMigrations()).toHaveLength(2);
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
