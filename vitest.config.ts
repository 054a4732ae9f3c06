import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * The specs that start several app processes against one store and then kill, stop or race
 * them (kill -9 mid-run, SIGSTOP past a lease, many writers at once). They time leases and
 * wait for processes, so they run on their own, one file at a time, after everything else:
 * sharing the machine's cores with other files would only make their timing less certain.
 */
const MULTI_PROCESS_SPECS = [
  'test/jobs/job-replicas.spec.ts',
  'test/keys/key-rotation-crash.spec.ts',
  'test/keys/vault-auth.process.spec.ts',
  'test/concurrency/*.spec.ts',
];

export default defineConfig({
  test: {
    // Forks isolate native handles (better-sqlite3) and process-wide state per file.
    pool: 'forks',
    setupFiles: ['test/support/quiet-logs.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'in-process',
          include: ['src/**/*.spec.ts', 'test/**/*.spec.ts'],
          exclude: MULTI_PROCESS_SPECS,
          // Vitest's default leaves one core free (a single worker on a two-core machine). The
          // files wait on database servers much of the time, so a worker per core keeps the
          // cores busy without starving the servers.
          maxWorkers: availableParallelism(),
        },
      },
      {
        extends: true,
        test: {
          name: 'multi-process',
          include: MULTI_PROCESS_SPECS,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
