import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EncryptedSessionService,
  EnvKeyProvider,
  KeyRing,
  TypeOrmSessionStorage,
  dialectFor,
  openSqliteDataSource,
  runSessionMigrations,
  type SessionStorage,
} from '../../src/index.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import type { ItemTamperer } from '../support/item-tamperer.js';
import {
  REDIS_URL,
  createRedisTestStorage,
  redisAvailable,
  redisItemTamperer,
} from '../support/redis-support.js';
import { requireService } from '../support/service-availability.js';
import {
  createMigratedTestDatabase,
  sqlItemTamperer,
  sqlServerUp,
} from '../support/sql-server-support.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const CHILD_SCRIPT = resolve(import.meta.dirname, 'clear-races.child.mjs');
const REPLY_MARK = '@@nes ';

const APPENDERS = 3;
const SESSIONS = 2;
/** How long each child appends or clears. */
const RACE_MS = 3_000;
/** Longest a child may take to start, race and exit. */
const CHILD_TIMEOUT_MS = 60_000;

type ChildBackend =
  | { type: 'sqlite'; path: string }
  | { type: 'postgres' | 'mysql'; url: string }
  | { type: 'redis'; url: string; keyPrefix: string };

interface ChildError {
  name: string;
  code: string;
  retryable: boolean;
  message: string;
}

interface ChildResult {
  calls: number;
  succeeded: number;
  errors: ChildError[];
}

interface BackendUnderTest {
  readonly childBackend: ChildBackend;
  readonly storage: SessionStorage;
  readonly tamper: ItemTamperer;
  dispose(): Promise<void>;
}

/** Runs one child to completion and returns its result line; a crash or hang fails the test. */
function runChild(config: Record<string, unknown>): Promise<ChildResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CHILD_SCRIPT], {
      env: { ...process.env, NES_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-8_000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((candidate) => candidate.startsWith(REPLY_MARK));
      if (code === 0 && line) {
        resolvePromise(JSON.parse(line.slice(REPLY_MARK.length)) as ChildResult);
      } else {
        reject(new Error(`child exited (code ${code}, signal ${signal}); stderr:\n${stderr}`));
      }
    });
  });
}

async function sqliteBackend(): Promise<BackendUnderTest> {
  const directory = mkdtempSync(join(tmpdir(), 'nes-clear-races-'));
  const path = join(directory, 'sessions.sqlite');
  const dataSource = await openSqliteDataSource({ path, busyTimeoutMs: 30_000 });
  await runSessionMigrations(dataSource, dialectFor(dataSource));
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  return {
    childBackend: { type: 'sqlite', path },
    storage,
    tamper: sqlItemTamperer(dataSource),
    async dispose() {
      await storage.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function sqlServerBackend(type: 'postgres' | 'mysql'): Promise<BackendUnderTest> {
  const database = await createMigratedTestDatabase(type, 2);
  return {
    childBackend: { type, url: database.database.url },
    storage: database.newStorage(),
    tamper: sqlItemTamperer(database.dataSource),
    dispose: () => database.dispose(),
  };
}

async function redisBackend(): Promise<BackendUnderTest> {
  const redis = await createRedisTestStorage();
  return {
    childBackend: { type: 'redis', url: REDIS_URL, keyPrefix: redis.keyPrefix },
    storage: redis.storage,
    tamper: redisItemTamperer(redis.client, redis.keyPrefix),
    dispose: () => redis.cleanup(),
  };
}

const BACKENDS: Array<{
  name: string;
  available: boolean;
  create: () => Promise<BackendUnderTest>;
}> = [
  { name: 'sqlite', available: true, create: sqliteBackend },
  {
    name: 'postgres',
    available: await sqlServerUp('postgres'),
    create: () => sqlServerBackend('postgres'),
  },
  {
    name: 'mariadb',
    available: await sqlServerUp('mysql'),
    create: () => sqlServerBackend('mysql'),
  },
  {
    name: 'redis',
    available: requireService(
      'Redis',
      await redisAvailable(),
      `start it with: redis-server --daemonize yes (or set NES_TEST_REDIS_URL)`,
    ),
    create: redisBackend,
  },
];

let library: CompiledLibrary;
beforeAll(() => {
  library = compileLibrary();
}, 60_000);
afterAll(() => library?.dispose());

for (const { name, available, create } of BACKENDS) {
  describe.skipIf(!available)(`appends racing clears in separate processes on ${name}`, () => {
    let target: BackendUnderTest;
    const rootKey = newRootKeyEntry();

    beforeAll(async () => {
      target = await create();
    });
    afterAll(async () => {
      await target?.dispose();
    });

    it(`${APPENDERS} appending processes and one clearing process: only retryable errors, one active key, every item readable`, async () => {
      const sessionIds = Array.from({ length: SESSIONS }, () => `clear-race-${randomUUID()}`);
      const base = {
        entryUrl: library.entryUrl,
        backend: target.childBackend,
        rootKey,
        sessionIds,
        durationMs: RACE_MS,
      };
      const results = await Promise.all([
        ...Array.from({ length: APPENDERS }, (_, writer) =>
          runChild({ ...base, role: 'append', writer }),
        ),
        runChild({ ...base, role: 'clear', writer: APPENDERS }),
      ]);
      const appenders = results.slice(0, APPENDERS);
      const clearer = results[APPENDERS];
      const errors = results.flatMap((result) => result.errors);
      if (errors.length > 0) {
        // Shown, not failed: retryable errors are allowed, but should stay rare.
        const kinds = new Set(errors.map((error) => `${error.code}: ${error.message}`));
        process.stderr.write(
          `[clear-races] ${name}: ${errors.length} retryable error(s):\n  ${[...kinds].join('\n  ')}\n`,
        );
      }
      // A lost race is never reported as tampering, and never as a caller's final answer.
      expect(errors.filter((error) => error.code === 'INTEGRITY')).toEqual([]);
      expect(errors.filter((error) => !error.retryable)).toEqual([]);
      // The race really happened: appends and clears both went through, many times.
      expect(appenders.every((result) => result.succeeded > 0)).toBe(true);
      expect(clearer.succeeded).toBeGreaterThan(1);

      const keyRing = new KeyRing(
        target.storage,
        new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
      );
      const service = new EncryptedSessionService(target.storage, keyRing);
      for (const sessionId of sessionIds) {
        const ref = { tenantId: 'default', sessionId };
        expect(
          await target.tamper.countActiveKeys(ref),
          `active keys of ${sessionId}`,
        ).toBeLessThanOrEqual(1);
        // Every item left after the last clear opens: none sealed under a destroyed key.
        const items = await (await service.open(sessionId)).getItems();
        expect(items).toHaveLength(await target.tamper.countItems(ref));
      }
      keyRing.clear();
    }, 90_000);
  });
}
