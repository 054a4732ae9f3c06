import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Injectable, Module } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { TypeOrmModule, getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  EncryptedSessionService,
  EnvKeyProvider,
  type EncryptedSessionModuleOptions,
  type KeyProvider,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });

/** Appends and reads back through the service the module provides. */
async function roundTrip(moduleRef: TestingModule, sessionId = 'e2e-session') {
  const sessions = moduleRef.get(EncryptedSessionService);
  const session = await sessions.open(sessionId, { tenantId: 'acme', subjectId: 'patient-7' });
  await session.addItems([{ role: 'user', content: 'hello from e2e' }]);
  return (await sessions.open(sessionId, { tenantId: 'acme' })).getItems();
}

const tableNames = async (dataSource: DataSource) =>
  (
    (await dataSource.query("SELECT name FROM sqlite_master WHERE type = 'table'")) as Array<{
      name: string;
    }>
  ).map((row) => row.name);

describe('EncryptedSessionModule', () => {
  let directory: string;
  let moduleRef: TestingModule | undefined;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-module-'));
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  it('forRoot stores sessions in its own SQLite file by default', async () => {
    const path = join(directory, 'own.sqlite');
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({ keys: envKeys(), storage: { type: 'sqlite', path } }),
      ],
    }).compile();
    await moduleRef.init();
    expect(await roundTrip(moduleRef)).toEqual([{ role: 'user', content: 'hello from e2e' }]);
    expect(existsSync(path)).toBe(true);
  });

  it('closes its own SQLite file on shutdown, folding the WAL back into it', async () => {
    const path = join(directory, 'shutdown.sqlite');
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({ keys: envKeys(), storage: { type: 'sqlite', path } }),
      ],
    }).compile();
    await moduleRef.init();
    await roundTrip(moduleRef);
    expect(existsSync(`${path}-wal`)).toBe(true);
    await moduleRef.close();
    moduleRef = undefined;
    // SQLite checkpoints and removes the WAL when the last connection closes.
    expect(existsSync(`${path}-wal`)).toBe(false);
  });

  it('forRootAsync takes its options from an injected factory', async () => {
    @Injectable()
    class SettingsService {
      readonly path = join(directory, 'async.sqlite');
      readonly keys = envKeys();
    }
    @Module({ providers: [SettingsService], exports: [SettingsService] })
    class SettingsModule {}

    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRootAsync({
          imports: [SettingsModule],
          inject: [SettingsService],
          useFactory: (settings: SettingsService): EncryptedSessionModuleOptions => ({
            keys: settings.keys,
            storage: { type: 'sqlite', path: settings.path },
          }),
        }),
      ],
    }).compile();
    await moduleRef.init();
    expect(await roundTrip(moduleRef)).toHaveLength(1);
    expect(existsSync(join(directory, 'async.sqlite'))).toBe(true);
  });

  it("uses a host's default TypeORM DataSource and creates its tables there", async () => {
    const database = join(directory, 'host-default.sqlite');
    moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database }),
        EncryptedSessionModule.forRoot({ keys: envKeys(), dataSourceName: 'default' }),
      ],
    }).compile();
    await moduleRef.init();
    expect(await roundTrip(moduleRef)).toHaveLength(1);
    const host = moduleRef.get<DataSource>(getDataSourceToken());
    expect(await tableNames(host)).toEqual(
      expect.arrayContaining(['nes_sessions', 'nes_items', 'nes_data_keys']),
    );
  });

  it("uses a host's named TypeORM DataSource, with its own table prefix", async () => {
    const database = join(directory, 'host-named.sqlite');
    moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ name: 'memory', type: 'better-sqlite3', database }),
        EncryptedSessionModule.forRootAsync({
          dataSourceName: 'memory',
          useFactory: () => ({
            keys: envKeys(),
            storage: { type: 'hostDataSource', tablePrefix: 'agent_' },
          }),
        }),
      ],
    }).compile();
    await moduleRef.init();
    expect(await roundTrip(moduleRef)).toHaveLength(1);
    const host = moduleRef.get<DataSource>(getDataSourceToken('memory'));
    expect(await tableNames(host)).toEqual(
      expect.arrayContaining(['agent_sessions', 'agent_items']),
    );
  });

  it('is available everywhere when isGlobal is set', async () => {
    @Injectable()
    class Consumer {
      constructor(readonly sessions: EncryptedSessionService) {}
    }
    @Module({ providers: [Consumer] })
    class FeatureModule {}

    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: envKeys(),
          storage: { type: 'memory' },
          isGlobal: true,
        }),
        FeatureModule,
      ],
    }).compile();
    expect(moduleRef.get(Consumer).sessions).toBeInstanceOf(EncryptedSessionService);
  });

  describe('refuses to start with bad options', () => {
    const compile = (options: unknown) =>
      Test.createTestingModule({
        imports: [EncryptedSessionModule.forRoot(options as EncryptedSessionModuleOptions)],
      }).compile();

    it('without keys', async () => {
      await expect(compile({ storage: { type: 'memory' } })).rejects.toThrow(
        /options.keys is required/,
      );
    });

    it('with a password for a key', async () => {
      await expect(
        compile({
          keys: { env: { keys: 'k1:hunter2', activeKeyId: 'k1' } },
          storage: { type: 'memory' },
        }),
      ).rejects.toBeInstanceOf(ConfigurationError);
    });

    it('with an unknown storage type', async () => {
      await expect(compile({ keys: envKeys(), storage: { type: 'mongodb' } })).rejects.toThrow(
        /storage.type must be one of 'sqlite'/,
      );
    });

    it('with a negative item TTL', async () => {
      await expect(
        compile({ keys: envKeys(), storage: { type: 'memory' }, itemTtlSeconds: -5 }),
      ).rejects.toThrow(/itemTtlSeconds/);
    });
  });

  it('applies its defaults: tenant and item TTL', async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: envKeys(),
          storage: { type: 'memory' },
          defaultTenantId: 'clinic-1',
          itemTtlSeconds: 3600,
        }),
      ],
    }).compile();
    const session = await moduleRef.get(EncryptedSessionService).open('with-defaults');
    expect(session.tenantId).toBe('clinic-1');
  });

  it("awaits the key provider's init at startup and closes it at shutdown", async () => {
    const inner = new EnvKeyProvider({ keys: newRootKeyEntry('k1'), activeKeyId: 'k1' });
    const events: string[] = [];
    const provider: KeyProvider = {
      name: 'with-lifecycle',
      init: async () => {
        await new Promise((resolve) => setTimeout(resolve, 10));
        events.push('init');
      },
      close: async () => {
        events.push('close');
      },
      activeKekId: () => inner.activeKekId(),
      generateDataKey: (context) => inner.generateDataKey(context),
      unwrapDataKey: (wrapped, context) => inner.unwrapDataKey(wrapped, context),
      rewrapDataKey: (wrapped, context) => inner.rewrapDataKey(wrapped, context),
    };
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({ keys: { provider }, storage: { type: 'memory' } }),
      ],
    }).compile();
    expect(events).toEqual(['init']);
    await moduleRef.close();
    moduleRef = undefined;
    expect(events).toEqual(['init', 'close']);
  });
});
