import type { Command } from 'commander';
import { addAuditCommands } from './audit.command.js';
import { addEraseCommands } from './erase.command.js';
import { addHoldCommands } from './hold.command.js';
import { addJobsCommands } from './jobs.command.js';
import { addKeysCommands } from './keys.command.js';
import { addPurgeCommand } from './purge.command.js';
import {
  commandRuntime,
  type CommandRuntime,
  type EncryptedSessionCommandsOptions,
} from './runtime.js';

/**
 * The command groups, in the order `--help` lists them. Each registers its commands on the
 * program it is given and runs them through the runtime (context, output, exit code).
 */
const COMMAND_GROUPS: ReadonlyArray<(program: Command, runtime: CommandRuntime) => void> = [
  addAuditCommands,
  addPurgeCommand,
  addEraseCommands,
  addHoldCommands,
  addKeysCommands,
  addJobsCommands,
];

/**
 * Registers the package's operator commands on a host's commander program, so its own CLI
 * offers them next to its commands: `audit verify`, `purge [--dry-run]`, `erase`, `hold`,
 * `keys status | rewrap | rotate` and `jobs status`, each with `--json`. They run in the application context the host supplies (its configured
 * `EncryptedSessionModule`), and hand their exit code ({@link CLI_EXIT}) to `options.exit`
 * (by default, `process.exitCode`). Call `program.parseAsync()`: the commands are async.
 *
 * The commands are created with `program.command()`, so they inherit the program's settings
 * (`exitOverride`, `configureOutput`, `showHelpAfterError`) as they stand at this call.
 *
 * @returns the program, for chaining.
 * @publicApi
 */
export function addEncryptedSessionCommands<P extends Command>(
  program: P,
  options: EncryptedSessionCommandsOptions,
): P {
  const runtime = commandRuntime(options);
  for (const addGroup of COMMAND_GROUPS) addGroup(program, runtime);
  return program;
}
