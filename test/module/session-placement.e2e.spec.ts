import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Test } from '@nestjs/testing';
import { TypeOrmModule, type TypeOrmModuleOptions } from '@nestjs/typeorm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  type EncryptedSessionModuleOptions,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { thrownBy } from '../support/thrown-by.js';

const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });

/** Compiles a testing module and returns what startup threw, or fails when it started. */
async function startupError(imports: unknown[]): Promise<unknown> {
  const started = await Test.createTestingModule({ imports: imports as never[] })
    .compile()
    .then(
      async (moduleRef) => {
        await moduleRef.close();
        return undefined;
      },
      (error: unknown) => error,
    );
  if (started === undefined) throw new Error('expected startup to fail, but the module started');
  return started;
}

/** A Postgres DataSource on a loopback port nothing listens on. */
const unreachableHost = (extra: Partial<TypeOrmModuleOptions> = {}) =>
  TypeOrmModule.forRoot({
    name: 'reports',
    type: 'postgres',
    url: 'postgres://postgres@127.0.0.1:1/reports',
    ...extra,
  } as TypeOrmModuleOptions);

// Every case runs in an empty working directory: the module's default SQLite file would be
// ./data/sessions.sqlite there, so "nothing created" means no session went to a local file.
describe('EncryptedSessionModule never stores sessions somewhere the host did not name', () => {
  const originalCwd = process.cwd();
  let cwd: string;

  beforeEach(() => {
    cwd = mkdtempSync(join(tmpdir(), 'nes-placement-'));
    process.chdir(cwd);
  });
  afterEach(() => {
    process.chdir(originalCwd);
    rmSync(cwd, { recursive: true, force: true });
  });

  describe('options the module does not read where they were given', () => {
    it("refuses dataSourceName in forRootAsync's factory result", async () => {
      const error = await startupError([
        EncryptedSessionModule.forRootAsync({
          useFactory: () =>
            ({ keys: envKeys(), dataSourceName: 'reports' }) as EncryptedSessionModuleOptions,
        }),
      ]);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toBe(
        "options.dataSourceName changes the module graph: pass it beside useFactory (forRootAsync({ dataSourceName, useFactory })), not in the factory's result, where it is not read",
      );
      expect(readdirSync(cwd)).toEqual([]);
    });

    it("refuses isGlobal in forRootAsync's factory result", async () => {
      const error = await startupError([
        EncryptedSessionModule.forRootAsync({
          useFactory: () =>
            ({
              keys: envKeys(),
              storage: { type: 'memory' },
              isGlobal: true,
            }) as EncryptedSessionModuleOptions,
        }),
      ]);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(
        /^options\.isGlobal changes the module graph: pass it beside useFactory/,
      );
    });

    it('refuses an option beside useFactory that is read only from its result', () => {
      const error = thrownBy(() =>
        EncryptedSessionModule.forRootAsync({
          useFactory: () => ({ keys: envKeys() }),
          storage: { type: 'memory' },
        } as Parameters<typeof EncryptedSessionModule.forRootAsync>[0]),
      );
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toBe(
        "forRootAsync option storage is read from the factory's result, not beside useFactory: return it from useFactory",
      );
    });

    it('refuses an unknown option beside useFactory', () => {
      expect(() =>
        EncryptedSessionModule.forRootAsync({
          useFactory: () => ({ keys: envKeys() }),
          dataSource: 'reports',
        } as Parameters<typeof EncryptedSessionModule.forRootAsync>[0]),
      ).toThrow(/^Unknown forRootAsync option dataSource; beside useFactory it takes: useFactory/);
    });

    it.each([
      ['top level', { dataSourceNames: 'reports' }, 'options.dataSourceNames'],
      ['storage', { storage: { type: 'sqlite', file: './x.sqlite' } }, 'options.storage.file'],
      [
        'storage of a server',
        { storage: { type: 'postgres', url: 'postgres://x@127.0.0.1/x', database: 'x' } },
        'options.storage.database',
      ],
      [
        'keys',
        { keys: { ...envKeys(), awsKms: { keyId: 'alias/x' } } },
        'options.keys names 2 key sources (env, awsKms); give exactly one',
      ],
      ['a key source', { keys: { envKeys: 'k1:x' } }, 'options.keys.envKeys'],
      [
        'keys.env',
        { keys: { env: { ...envKeys().env, activeKey: 'k1' } } },
        'options.keys.env.activeKey',
      ],
      ['keyCache', { keyCache: { cacheMaxEntries: 10 } }, 'options.keyCache.cacheMaxEntries'],
      [
        'vault auth',
        {
          keys: {
            vaultTransit: {
              endpoint: 'http://127.0.0.1:1',
              keyName: 'k',
              auth: { method: 'token', token: 't', roleId: 'r' },
            },
          },
        },
        'options.keys.vaultTransit.auth.roleId',
      ],
    ])('refuses an unknown key: %s', async (_, extra, named) => {
      const error = await startupError([
        EncryptedSessionModule.forRoot({
          keys: envKeys(),
          storage: { type: 'memory' },
          ...extra,
        } as EncryptedSessionModuleOptions),
      ]);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toContain(named);
      expect(readdirSync(cwd)).toEqual([]);
    });
  });

  describe('a named host DataSource', () => {
    it('that fails to connect stops startup with its own error (no retries)', async () => {
      const error = await startupError([
        unreachableHost({ retryAttempts: 0 }),
        EncryptedSessionModule.forRoot({ keys: envKeys(), dataSourceName: 'reports' }),
      ]);
      expect((error as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
      expect(readdirSync(cwd)).toEqual([]);
    });

    it('that fails to connect stops startup with its own error (after retries)', async () => {
      const error = await startupError([
        unreachableHost({ retryAttempts: 2, retryDelay: 20 }),
        EncryptedSessionModule.forRootAsync({
          dataSourceName: 'reports',
          useFactory: () => ({ keys: envKeys() }),
        }),
      ]);
      expect((error as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
      expect(readdirSync(cwd)).toEqual([]);
    });

    it('left uninitialized (manualInitialization) stops startup', async () => {
      const error = await startupError([
        unreachableHost({ manualInitialization: true }),
        EncryptedSessionModule.forRoot({ keys: envKeys(), dataSourceName: 'reports' }),
      ]);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toBe(
        "dataSourceName 'reports' names a TypeORM DataSource that is not initialized (TypeOrmModule manualInitialization?); initialize it before the app starts or leave manualInitialization off",
      );
      expect(readdirSync(cwd)).toEqual([]);
    });

    it('that no TypeOrmModule registers stops startup naming it', async () => {
      const error = await startupError([
        EncryptedSessionModule.forRoot({ keys: envKeys(), dataSourceName: 'reports' }),
      ]);
      expect((error as Error).message).toMatch(
        /HOST_DATA_SOURCE named by dataSourceName.*"reportsDataSource"/,
      );
      expect(readdirSync(cwd)).toEqual([]);
    });

    it('given together with options.storage stops startup', async () => {
      const database = join(cwd, 'host.sqlite');
      const error = await startupError([
        TypeOrmModule.forRoot({ name: 'reports', type: 'better-sqlite3', database }),
        EncryptedSessionModule.forRoot({
          keys: envKeys(),
          dataSourceName: 'reports',
          storage: { type: 'sqlite', path: join(cwd, 'own.sqlite') },
        }),
      ]);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(
        /^options\.storage and dataSourceName both say where sessions go; give only one/,
      );
      expect(readdirSync(cwd)).not.toContain('own.sqlite');
    });
  });
});
