import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * The server-free suites that mutation testing (`npm run test:mutation`) runs against each
 * mutant. Chosen by content rather than by name so that spec files added later join on their
 * own: a spec is left out when it reaches a database or Redis server, starts a child process,
 * or opens SQLite (Stryker runs on Node 24, and better-sqlite3 here is built for Node 20's ABI;
 * the demo app, `startDemo`, opens its own SQLite file),
 * or mocks a module (`vi.mock` needs the isolation this config turns off for speed).
 * `npm test` does not read this file.
 */
const NEEDS_MORE_THAN_THIS_PROCESS =
  /sqliteHarness|sqlServerHarness|isolatedSqlServerHarness|requireService|sqlServerUp|redisReadyFor|redis-support|sql-server-support|node:child_process|compiled-library|better-sqlite3|openSqliteDataSource|EncryptedSessionModule|startDemo|vi\.mock\(/;

const candidates = ['test', 'src']
  .flatMap((root) =>
    readdirSync(root, { recursive: true, encoding: 'utf8' }).map((file) => join(root, file)),
  )
  .filter((file) => file.endsWith('.spec.ts'))
  .sort();
const serverFree = candidates.filter(
  (file) => !NEEDS_MORE_THAN_THIS_PROCESS.test(readFileSync(file, 'utf8')),
);

export default defineConfig({
  test: {
    include: serverFree,
    pool: 'forks',
    isolate: false,
    setupFiles: ['test/support/quiet-logs.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['dot'],
  },
});
