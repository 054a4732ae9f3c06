import { Test } from '@nestjs/testing';
import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  EncryptedSessionService,
  KeyRing,
  MemorySessionStorage,
  type EncryptedSessionModuleOptions,
} from '../../src/index.js';
import { resolveModuleOptions } from '../../src/module/resolve-module-options.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { thrownBy } from '../support/thrown-by.js';

const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });

/** A started module with `options`. */
async function start(options: EncryptedSessionModuleOptions) {
  const moduleRef = await Test.createTestingModule({
    imports: [EncryptedSessionModule.forRoot(options)],
  }).compile();
  await moduleRef.init();
  return moduleRef;
}

/** The message `resolveModuleOptions` refuses `options` with. */
function refusal(options: unknown, hostDataSourceNamed = false): string {
  const error = thrownBy(() => resolveModuleOptions(options, hostDataSourceNamed));
  expect(error).toBeInstanceOf(ConfigurationError);
  return (error as Error).message;
}

describe('module options', () => {
  describe('are refused with a message that names the option and what to set', () => {
    it.each<[string, Record<string, unknown>, string]>([
      [
        'keyCache.maxEntries: 0 (every write would fail)',
        { keyCache: { maxEntries: 0 } },
        'options.keyCache.maxEntries must be a whole number of keys, at least 1 (default 10000)',
      ],
      [
        'keyCache.maxAgeMs: -1',
        { keyCache: { maxAgeMs: -1 } },
        'options.keyCache.maxAgeMs must be a whole number of milliseconds, 0 or more (default 900000)',
      ],
      [
        'keys.retry.maxAttempts: 0',
        { keys: { ...envKeys(), retry: { maxAttempts: 0 } } },
        'options.keys.retry.maxAttempts must be a whole number of attempts from 1 to 100 (default 4)',
      ],
      [
        'keys.maxItemsPerDataKey above 2^28',
        { keys: { ...envKeys(), maxItemsPerDataKey: 2 ** 28 + 1 } },
        'options.keys.maxItemsPerDataKey must be a whole number of items from 1 to 2^28 (default 268435456)',
      ],
      [
        'keys.rotation.maxAgeDays: 0 (every used key would rotate at each write)',
        { keys: { ...envKeys(), rotation: { maxAgeDays: 0 } } },
        'options.keys.rotation.maxAgeDays must be a whole number of days, at least 1, or null (default 90)',
      ],
      [
        'keys.rotation.maxItems: 1.5',
        { keys: { ...envKeys(), rotation: { maxItems: 1.5 } } },
        'options.keys.rotation.maxItems must be a whole number of items from 1 to 2^28, or null (default null)',
      ],
      [
        'keys.rotation with an unknown field',
        { keys: { ...envKeys(), rotation: { maxAge: 30 } } },
        'Unknown option options.keys.rotation.maxAge; options.keys.rotation takes: maxAgeDays, maxItems (a misspelt or misplaced option would otherwise be ignored)',
      ],
      [
        'storage.busyTimeoutMs: -5',
        { storage: { type: 'sqlite', busyTimeoutMs: -5 } },
        'options.storage.busyTimeoutMs must be a whole number of milliseconds, 0 or more (default 5000)',
      ],
      [
        "storage.busyTimeoutMs: '5000'",
        { storage: { type: 'sqlite', busyTimeoutMs: '5000' } },
        'options.storage.busyTimeoutMs must be a whole number of milliseconds, 0 or more (default 5000)',
      ],
      [
        'storage.cacheSizeKiB: 1',
        { storage: { type: 'sqlite', cacheSizeKiB: 1 } },
        'options.storage.cacheSizeKiB must be a whole number of KiB, at least 64 (default 8192)',
      ],
      [
        'storage.poolSize: 0',
        { storage: { type: 'postgres', url: 'postgres://u@127.0.0.1/db', poolSize: 0 } },
        'options.storage.poolSize must be a whole number of connections, at least 1 (default 10)',
      ],
      [
        'a Postgres url left out',
        { storage: { type: 'postgres' } },
        'options.storage.url is required: set it to a connection URL, e.g. postgres://user:password@host:port/database',
      ],
      [
        'redis.commandTimeoutMs: 0',
        { storage: { type: 'redis', url: 'redis://127.0.0.1:6379', commandTimeoutMs: 0 } },
        'options.storage.commandTimeoutMs must be a whole number of milliseconds, at least 1 (default 5000)',
      ],
      [
        'tablePrefix at the top level (it belongs to the SQL storage)',
        { tablePrefix: 'agent_' },
        'Unknown option options.tablePrefix; options takes: keys, storage, defaultTenantId, itemTtlSeconds, maxItemBytes, keyCache, audit, jobs, retention (a misspelt or misplaced option would otherwise be ignored)',
      ],
      [
        'tablePrefix on Redis',
        { storage: { type: 'redis', url: 'redis://127.0.0.1:6379', tablePrefix: 'x_' } },
        'Unknown option options.storage.tablePrefix; options.storage takes: type, url, keyPrefix, expiryBackstopSeconds, maxConflictRetries, commandTimeoutMs, connectTimeoutMs (a misspelt or misplaced option would otherwise be ignored)',
      ],
      [
        'a bad table prefix',
        { storage: { type: 'sqlite', tablePrefix: 'Agent' } },
        "Invalid table prefix 'Agent': use 1-20 lowercase letters, digits or underscores, starting with a letter (default 'nes_')",
      ],
      [
        'an unknown reads policy of the audit trail',
        { audit: { reads: 'sometimes' } },
        "options.audit.reads must be 'group-commit' (the default) or { dedupeWindowSeconds }",
      ],
      [
        'a zero de-duplication window',
        { audit: { reads: { dedupeWindowSeconds: 0 } } },
        'options.audit.reads.dedupeWindowSeconds must be a whole number of seconds, at least 1 (e.g. 300)',
      ],
      [
        'an unknown audit option',
        { audit: { requireActors: true } },
        'Unknown option options.audit.requireActors; options.audit takes: enabled, requireActor, reads, macKeyRotationDays, winston, checkpoints, actorFromRequest, actorFromRunContext (a misspelt or misplaced option would otherwise be ignored)',
      ],
      [
        'an unknown job',
        { jobs: { purge: { enabled: true } } },
        'Unknown option options.jobs.purge; options.jobs takes: leaseTtlSeconds, kekRewrap, keyRotation, retentionPurge (a misspelt or misplaced option would otherwise be ignored)',
      ],
      [
        'a lease shorter than 5 seconds',
        { jobs: { leaseTtlSeconds: 1 } },
        'options.jobs.leaseTtlSeconds must be a whole number of seconds, from 5 to 3600 (default 60)',
      ],
      [
        'a rewrap page of no data keys',
        { jobs: { kekRewrap: { enabled: true, batchSize: 0 } } },
        'options.jobs.kekRewrap.batchSize must be a whole number from 1 to 1000 (default 100)',
      ],
      [
        'an idle limit of part of a day',
        { retention: { sessionIdleDays: 0.5 } },
        'options.retention.sessionIdleDays must be a whole number of days, at least 1, or null',
      ],
      [
        'an instance that is not a SessionStorage',
        { storage: { instance: {} } },
        "options.storage.instance must be a SessionStorage (read, transaction, close), or give options.storage.type: one of 'sqlite', 'postgres', 'mysql', 'mariadb', 'redis', 'memory' or 'hostDataSource'",
      ],
      [
        'a key source with no source',
        { keys: { retry: {} } },
        'options.keys names no key source; give one of env, awsKms, vaultTransit, vaultKv, provider (there is no default key)',
      ],
    ])('%s', (_name, overrides, message) => {
      expect(refusal({ keys: envKeys(), ...overrides })).toBe(message);
    });

    it("refuses storage type 'hostDataSource' without dataSourceName", () => {
      expect(refusal({ keys: envKeys(), storage: { type: 'hostDataSource' } })).toMatch(
        /^options\.storage type 'hostDataSource' needs dataSourceName beside the options/,
      );
    });

    it('never echoes the value it refuses (a URL may hold a password)', () => {
      const message = refusal({
        keys: envKeys(),
        storage: { type: 'postgres', url: 'mysql://u:hunter2-canary@h/db' },
      });
      expect(message).not.toContain('hunter2-canary');
      expect(message).toMatch(/^options\.storage\.url must start with postgres:\/\//);
    });
  });

  describe('resolve once', () => {
    it('fills in every default', () => {
      const resolved = resolveModuleOptions({ keys: envKeys() });
      expect(resolved.storage).toEqual({
        type: 'sqlite',
        path: './data/sessions.sqlite',
        synchronous: 'FULL',
        tablePrefix: 'nes_',
        runMigrations: true,
      });
      expect(resolved.sessions).toEqual({
        tenantId: 'default',
        itemTtlSeconds: null,
        maxItemBytes: 4 * 1024 * 1024,
      });
      expect(resolved.keyRing).toEqual({
        cacheMaxEntries: 10_000,
        cacheMaxAgeMs: 900_000,
        maxItemsPerDataKey: 2 ** 28,
        providerMaxAttempts: 4,
        providerRetryBudgetMs: 2000,
        providerRetryBaseDelayMs: 50,
        providerOutageCooldownMs: 1000,
        rotationMaxAgeDays: 90,
        rotationMaxItems: null,
      });
    });

    it('passes the rotation policy to the key ring, null turning a rule off', () => {
      const resolved = resolveModuleOptions({
        keys: { ...envKeys(), rotation: { maxAgeDays: null, maxItems: 5000 } },
      });
      expect(resolved.keyRing).toMatchObject({ rotationMaxAgeDays: null, rotationMaxItems: 5000 });
    });

    it('defaults to the host DataSource when dataSourceName is given', () => {
      expect(resolveModuleOptions({ keys: envKeys() }, true).storage).toEqual({
        type: 'hostDataSource',
        tablePrefix: 'nes_',
        runMigrations: true,
      });
    });

    it('freezes the result all the way down, but not the host objects in it', () => {
      const instance = new MemorySessionStorage();
      const resolved = resolveModuleOptions({ keys: envKeys(), storage: { instance } });
      expect(Object.isFrozen(resolved)).toBe(true);
      expect(Object.isFrozen(resolved.keys.options)).toBe(true);
      expect(Object.isFrozen(resolved.keyRing)).toBe(true);
      expect(resolved.storage).toEqual({ type: 'instance', instance });
      expect(Object.isFrozen(instance)).toBe(false);
    });
  });

  describe('reach what the module builds', () => {
    it("stores sessions in the host's own storage instance, and closes it at shutdown", async () => {
      const instance = new (class extends MemorySessionStorage {
        closed = 0;
        override async close() {
          this.closed += 1;
        }
      })();
      const moduleRef = await start({ keys: envKeys(), storage: { instance } });
      const session = await moduleRef.get(EncryptedSessionService).open('s1');
      await session.addItems([{ role: 'user', content: 'hello' }]);

      const stored = await instance.read({ tenantId: 'default', sessionId: 's1' }, (scope) =>
        scope.items.listVisible(Date.now(), 10),
      );
      expect(stored).toHaveLength(1);
      await moduleRef.close();
      expect(instance.closed).toBe(1);
    });

    it('gives the key ring keyCache.maxEntries', async () => {
      const moduleRef = await start({
        keys: envKeys(),
        storage: { type: 'memory' },
        keyCache: { maxEntries: 1 },
      });
      const sessions = moduleRef.get(EncryptedSessionService);
      for (const id of ['a', 'b', 'c']) {
        await (await sessions.open(id)).addItems([{ role: 'user', content: id }]);
      }
      expect(moduleRef.get(KeyRing).stats().cachedKeys).toBe(1);
      await moduleRef.close();
    });
  });
});
