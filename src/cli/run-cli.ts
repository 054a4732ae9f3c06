import { Command, CommanderError } from 'commander';
import { addEncryptedSessionCommands } from './commands.js';
import { contextFromEnv, ENV_HELP } from './env-context.js';
import { CLI_EXIT, EXIT_CODES_HELP } from './runtime.js';

/**
 * Options of {@link runCli}.
 *
 * @publicApi
 */
export interface RunCliOptions {
  /** The terminal to draw progress bars on; the bin passes stdout when it is a TTY. */
  readonly terminal?: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

/**
 * Runs the package's command line with `argv` (after the script name) and the environment, in
 * an application context built from the environment like the demo's; resolves to the exit
 * code ({@link CLI_EXIT}). Writes results on `out`, problems and usage on `err`; never exits
 * the process itself.
 *
 * @publicApi
 */
export async function runCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: (text: string) => void,
  err: (text: string) => void,
  options: RunCliOptions = {},
): Promise<number> {
  let code: number = CLI_EXIT.ok;
  const program = new Command('nest-encrypted-sessions')
    .description(
      'Operator commands for nest-encrypted-sessions: verify the audit trail, purge expired items, see the jobs.',
    )
    // Usage errors and --help throw instead of exiting, so the code comes back to the caller.
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err })
    .showHelpAfterError()
    .addHelpText('after', `${EXIT_CODES_HELP}${ENV_HELP}`);
  addEncryptedSessionCommands(program, {
    context: contextFromEnv(env),
    out,
    err,
    terminal: options.terminal,
    exit: (exitCode) => {
      code = exitCode;
    },
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    // --help (and --version) end in a CommanderError too, with exit code 0.
    return error.exitCode === 0 ? CLI_EXIT.ok : CLI_EXIT.cannotRun;
  }
  return code;
}
