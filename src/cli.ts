#!/usr/bin/env node
/**
 * The package's bin, `nest-encrypted-sessions`: the operator commands of
 * `nest-encrypted-sessions/cli` (`audit verify`, `purge`, `jobs status`), configured like the
 * demo by environment variables. `--help` lists the commands, the environment and the exit
 * codes.
 *
 * @packageDocumentation
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runCli } from './cli/index.js';

export { CLI_EXIT, runCli, storageFromEnv } from './cli/index.js';

/** Whether this file is the script node runs (through npm's bin link too), not an import. */
function runAsScript(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (runAsScript()) {
  process.exitCode = await runCli(
    process.argv.slice(2),
    process.env,
    (text) => process.stdout.write(text),
    (text) => process.stderr.write(text),
    // A person watches a terminal: progress bars there; none when stdout is piped.
    { terminal: process.stdout.isTTY ? process.stdout : undefined },
  );
}
