#!/usr/bin/env node
/**
 * `npm run test:mutation [-- crypto sessions keys audit]`: StrykerJS on src/crypto, src/sessions,
 * src/keys and src/audit (or the folders named), then the mutation score per folder.
 *
 * Stryker 10 needs Node 22+ (its Babel parser 24.11+), while the project runs on Node 20. So this
 * script fetches the official Node 24 build once from the npm registry (scripts/fetch-node.mjs,
 * `npm pack node-linux-<arch>@24.x` into the git-ignored `.node-builds/24/`, shared with CI),
 * reuses it afterwards, and runs Stryker with that node first on the PATH. node_modules stays as
 * `npm install` built it: the mutation suites load no native addon (vitest.mutation.config.ts
 * leaves SQLite out), so nothing is rebuilt for Node 24's ABI.
 *
 * Not part of `npm test` or CI: a full run takes many minutes.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureNode } from './fetch-node.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NODE_MAJOR = 24;
const reportFile = join(root, 'reports', 'mutation', 'mutation.json');
const FOLDERS = ['crypto', 'sessions', 'keys', 'audit'];

// Arguments: folders under src/ (`keys`, `keys/providers`) or globs under it (`'keys/*.ts'`),
// and `--force` to test every mutant again instead of reusing the incremental results.
// Incremental runs re-test a mutant when its code or the tests covering it change; a static
// mutant (a module-level constant such as a regex) has no covering tests, so it keeps its old
// result until a forced run.
const args = process.argv.slice(2);
const force = args.includes('--force');
const requested = args
  .filter((arg) => arg !== '--force')
  .map((arg) => arg.replace(/^src\//, '').replace(/\/$/, ''));
for (const target of requested) {
  if (!target.includes('*') && !existsSync(join(root, 'src', target))) {
    console.error(`No folder src/${target}; name some of: ${FOLDERS.join(', ')}`);
    process.exit(2);
  }
}
const targets = requested.length > 0 ? requested : FOLDERS;
const mutate = targets.map((target) =>
  target.includes('*') || target.endsWith('.ts') ? `src/${target}` : `src/${target}/**/*.ts`,
);
// One incremental file per selection, so runs of different folders do not undo each other.
const selection = targets.join('+').replace(/[^A-Za-z0-9+.-]+/g, '_');
const folders = [...new Set(targets.map((target) => target.split('/')[0]))];

let nodeHome;
try {
  nodeHome = ensureNode(NODE_MAJOR);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  console.error('Stryker needs Node 22+: run it by hand on such a node.');
  process.exit(2);
}
const nodeBin = join(nodeHome, 'bin', 'node');
const started = Date.now();
const stryker = spawnSync(
  nodeBin,
  [
    join(root, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js'),
    'run',
    ...(force ? ['--force'] : []),
  ],
  {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      PATH: `${dirname(nodeBin)}:${process.env.PATH ?? ''}`,
      // Headers for node-gyp, should anything native ever be rebuilt for this node.
      npm_config_nodedir: nodeHome,
      STRYKER_MUTATE: mutate.join(','),
      STRYKER_INCREMENTAL_FILE: `reports/stryker-incremental-${selection}.json`,
      // Server-backed suites are left out; make sure none of them turns a skip into a failure.
      CI: '',
    },
  },
);
const wallSeconds = Math.round((Date.now() - started) / 1000);
if (stryker.status !== 0) {
  console.error(`Stryker failed (exit ${stryker.status ?? stryker.signal}) after ${wallSeconds}s`);
  process.exit(stryker.status ?? 1);
}
printScores(folders, wallSeconds);

/** Mutation score per folder from Stryker's JSON report (mutation-testing-report-schema). */
function printScores(folders, wallSeconds) {
  const report = JSON.parse(readFileSync(reportFile, 'utf8'));
  const rows = new Map();
  for (const [file, { mutants }] of Object.entries(report.files)) {
    const path = relative(root, resolve(root, file));
    const folder = folders.find((name) => path.startsWith(`src/${name}/`));
    if (!folder) continue;
    // keys/providers is reported on its own line too: it is most of src/keys.
    const groups = [folder];
    if (path.startsWith('src/keys/providers/')) groups.push('keys/providers');
    else if (folder === 'keys') groups.push('keys (ring, rotation)');
    for (const group of groups) {
      const row = rows.get(group) ?? {
        mutants: 0,
        Killed: 0,
        Survived: 0,
        Timeout: 0,
        NoCoverage: 0,
        other: 0,
      };
      for (const { status } of mutants) {
        row.mutants++;
        if (status in row) row[status]++;
        else row.other++;
      }
      rows.set(group, row);
    }
  }
  console.log(`\nMutation score per folder (wall time ${wallSeconds}s):`);
  console.log('folder                  mutants  killed survived timeout no-cov  other  score');
  for (const [group, row] of rows) {
    const detected = row.Killed + row.Timeout;
    const valid = detected + row.Survived + row.NoCoverage;
    const score = valid === 0 ? 'n/a' : `${((100 * detected) / valid).toFixed(2)}%`;
    console.log(
      `src/${group}`.padEnd(24) +
        [row.mutants, row.Killed, row.Survived, row.Timeout, row.NoCoverage, row.other]
          .map((n) => String(n).padStart(7))
          .join(' ') +
        score.padStart(8),
    );
  }
}
