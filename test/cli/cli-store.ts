import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Test } from '@nestjs/testing';
import { runCli, type RunCliOptions } from '../../src/cli/index.js';
import { EncryptedSessionModule, EncryptedSessionService, runAs } from '../../src/index.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/** The retention purge's lease name. */
export const PURGE_JOB = 'nest-encrypted-sessions:retention-purge';

/** A SQLite file in a temporary folder, and the environment the bin reads for it. */
export interface CliStore {
  readonly path: string;
  readonly keys: string;
  readonly env: NodeJS.ProcessEnv;
  dispose(): void;
}

export function newCliStore(): CliStore {
  const directory = mkdtempSync(join(tmpdir(), 'nes-cli-ops-'));
  const path = join(directory, 'sessions.sqlite');
  const keys = newRootKeyEntry('k1');
  return {
    path,
    keys,
    env: { SESSION_KEYS: keys, SESSION_ACTIVE_KEY: 'k1', SESSION_SQLITE_PATH: path },
    dispose: () => rmSync(directory, { recursive: true, force: true }),
  };
}

/**
 * Boots the module on the store as its app does (migrations run), writes `expired` items that
 * expire in a second into each of two sessions and one item that never expires, closes it,
 * and waits for the expiry (with `expired` 0: the tables and the live item only).
 */
export async function seedExpiredItems(store: CliStore, expired: number): Promise<void> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      EncryptedSessionModule.forRoot({
        keys: { env: { keys: store.keys, activeKeyId: 'k1' } },
        storage: { type: 'sqlite', path: store.path },
      }),
    ],
  }).compile();
  await moduleRef.init();
  const service = moduleRef.get(EncryptedSessionService);
  await runAs({ type: 'service', id: 'cli-test', tenantId: 'clinic' }, async () => {
    for (const sessionId of expired > 0 ? ['visit-1', 'visit-2'] : []) {
      const session = await service.open(sessionId, { tenantId: 'clinic', ttlSeconds: 1 });
      await session.addItems(
        Array.from({ length: expired }, (_, index) => ({
          role: 'user' as const,
          content: `${sessionId} ${index}`,
        })),
      );
    }
    const live = await service.open('kept', { tenantId: 'clinic', ttlSeconds: null });
    await live.addItems([{ role: 'user', content: 'kept' }]);
  });
  await moduleRef.close();
  if (expired > 0) await sleep(1100);
}

/** Rows in the items table, read straight from the file. */
export async function itemRows(store: CliStore): Promise<number> {
  const dataSource = await openSqliteDataSource({ path: store.path, synchronous: 'NORMAL' });
  try {
    const [{ count }] = await dataSource.query<[{ count: number }]>(
      'SELECT COUNT(*) AS count FROM "nes_items"',
    );
    return count;
  } finally {
    await dataSource.destroy();
  }
}

/** Takes `job`'s lease for `owner` as another replica would, on the same file. */
export async function takeLease(
  store: CliStore,
  job: string,
  owner: string,
  ttlMs = 30_000,
): Promise<void> {
  const dataSource = await openSqliteDataSource({ path: store.path, synchronous: 'NORMAL' });
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  try {
    if (!(await storage.leases.acquire(job, owner, ttlMs))) {
      throw new Error(`the lease of ${job} is held already`);
    }
  } finally {
    await storage.close();
  }
}

/** Runs the bin's command line in process; what it wrote on out and err, and its exit code. */
export async function runCommand(
  argv: string[],
  env: NodeJS.ProcessEnv,
  options?: RunCliOptions,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    argv,
    env,
    (text) => (stdout += text),
    (text) => (stderr += text),
    options,
  );
  return { code, stdout, stderr };
}
