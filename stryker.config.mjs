// @ts-check
/**
 * StrykerJS mutation testing of the security core: `npm run test:mutation` (see
 * scripts/test-mutation.mjs, which runs this on Node 24 and prints the score per folder).
 * `npm test` and CI never run it.
 *
 * Folders are globs, so files added later are mutated without a change here. The tests are the
 * server-free suites picked by vitest.mutation.config.ts.
 *
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  testRunner: 'vitest',
  appendPlugins: ['./scripts/stryker-message-ignorer.mjs'],
  // Error message and log wording stay unmutated (see the plugin for why).
  ignorers: ['messages'],
  vitest: {
    configFile: 'vitest.mutation.config.ts',
    // Threads: the picked suites open no native handles, and a thread starts faster than a fork.
    pool: 'threads',
  },
  // STRYKER_MUTATE (set by the script from its arguments) narrows the run: globs, comma-separated.
  mutate: (
    process.env.STRYKER_MUTATE ??
    'src/crypto/**/*.ts,src/sessions/**/*.ts,src/keys/**/*.ts,src/audit/**/*.ts'
  )
    .split(',')
    .concat([
      // Barrels only re-export; *.testing.ts are test seams left out of the build.
      '!src/**/index.ts',
      '!src/**/*.testing.ts',
    ]),
  // Each test runs only against the mutants it covers.
  coverageAnalysis: 'perTest',
  // The machine has 2 cores; more workers only queue.
  concurrency: 2,
  // A mutant that turns a retry or read loop endless is a timeout (counted as detected), not a hang.
  timeoutMS: 10_000,
  timeoutFactor: 2,
  // Reuses results of unchanged mutants and tests from the last run.
  incremental: true,
  incrementalFile: process.env.STRYKER_INCREMENTAL_FILE ?? 'reports/stryker-incremental.json',
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  reporters: ['progress', 'clear-text', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { reportTests: false, reportMutants: true, reportScoreTable: true },
  thresholds: { high: 85, low: 70, break: null },
  // Stryker's own files and the Node downloads (old and new folder) are not part of the sandbox.
  ignorePatterns: [
    '.node-builds',
    '.mutation-node',
    'reports',
    'dist',
    '.bench-build',
    '.tsc-out',
    'data',
  ],
};
