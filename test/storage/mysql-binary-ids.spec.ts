import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptedSessionService, EnvKeyProvider, KeyRing } from '../../src/index.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { binaryIdsMigration } from '../../src/storage/typeorm/migrations/binary-ids.migration.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { runSessionMigrations } from '../../src/storage/typeorm/migration-runner.js';
import {
  createMigratedTestDatabase,
  sqlServerUp,
  type MigratedTestDatabase,
} from '../support/sql-server-support.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const up = await sqlServerUp('mysql');

describe.skipIf(!up)('binary id columns on mariadb', () => {
  let database: MigratedTestDatabase;
  beforeAll(async () => {
    database = await createMigratedTestDatabase('mysql', 2);
  });
  afterAll(async () => {
    await database?.dispose();
  });

  const columnTypes = async () =>
    (await database.dataSource.query(
      `SELECT TABLE_NAME AS t, COLUMN_NAME AS c, COLUMN_TYPE AS type FROM information_schema.COLUMNS
       WHERE TABLE_SCHEMA = DATABASE()
         AND TABLE_NAME IN ('nes_sessions', 'nes_items', 'nes_data_keys', 'nes_history_operations')
         AND COLUMN_NAME IN ('tenant_id', 'session_id', 'subject_id', 'kek_id', 'operation_id')`,
    )) as Array<{ t: string; c: string; type: string }>;

  it('converts an existing install: its sessions stay readable and ids then compare exactly', async () => {
    const { dataSource } = database;
    // Back to the first schema (varchar utf8mb4_bin), as an install made before the fix.
    const runner = dataSource.createQueryRunner();
    await new (binaryIdsMigration())().down(runner);
    await runner.release();
    await dataSource.query("DELETE FROM `nes_schema_migrations` WHERE `name` LIKE 'BinaryIds%'");
    expect((await columnTypes()).every((column) => column.type === 'varchar(191)')).toBe(true);

    const provider = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    const storage = new TypeOrmSessionStorage({ dataSource });
    const service = new EncryptedSessionService(storage, new KeyRing(storage, provider));
    await (
      await service.open('chat', { tenantId: 'acme', subjectId: 'p-1' })
    ).addItems([{ role: 'user', content: 'before the upgrade' }]);

    expect(await runSessionMigrations(dataSource, dialectFor(dataSource))).toEqual([
      'BinaryIds1764000000000',
    ]);
    expect(await columnTypes()).toHaveLength(12);
    expect((await columnTypes()).every((column) => column.type === 'varbinary(764)')).toBe(true);

    const upgraded = new EncryptedSessionService(storage, new KeyRing(storage, provider));
    expect(await (await upgraded.open('chat', { tenantId: 'acme' })).getItems()).toEqual([
      { role: 'user', content: 'before the upgrade' },
    ]);
    await (await upgraded.open('chat', { tenantId: 'acme ' })).clearSession();
    expect(await (await upgraded.open('chat', { tenantId: 'acme' })).getItems()).toHaveLength(1);
    const record = await storage.read({ tenantId: 'acme', sessionId: 'chat' }, (scope) =>
      scope.session.find(),
    );
    expect(record).toMatchObject({ tenantId: 'acme', sessionId: 'chat', subjectId: 'p-1' });
  });
});
