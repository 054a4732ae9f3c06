import { Logger, type INestApplicationContext } from '@nestjs/common';
import type { Command } from 'commander';
import { EncryptedSessionError } from '../errors/index.js';
import type { JobRunReport } from '../jobs/index.js';

/**
 * Exit codes of the commands, the same in the package's bin and in a host's CLI that mounts
 * them:
 * - 0 `ok`: done (a dry run too), or every chain verified;
 * - 2 `tampered`: `audit verify` found a broken chain or checkpoint;
 * - 3 `cannotRun` (alias `cannotVerify`): bad usage or configuration, or the store or key
 *   provider unreachable, or a storage that cannot do it (nothing was changed);
 * - 4 `leaseHeld`: another replica holds the job's lease, so this run did nothing: retry later;
 * - 5 `failed`: the run failed, or lost its lease, part way (what it committed stays; the next
 *   run resumes from the data);
 * - 6 `held`: a legal hold covers what `erase` was asked to erase: nothing was erased.
 *
 * @publicApi
 */
export const CLI_EXIT = {
  ok: 0,
  tampered: 2,
  cannotRun: 3,
  /** The name `audit verify` documented first; the same code as `cannotRun`. */
  cannotVerify: 3,
  leaseHeld: 4,
  failed: 5,
  held: 6,
} as const;

/** The exit code of each outcome of a job run started from the command line. */
export const JOB_RUN_EXIT: Readonly<Record<JobRunReport['outcome'], number>> = {
  done: CLI_EXIT.ok,
  skipped: CLI_EXIT.leaseHeld,
  failed: CLI_EXIT.failed,
  lease_lost: CLI_EXIT.failed,
};

/**
 * The line a person reads after a job run that did not finish: another replica held the
 * lease, the run lost it, or it failed. `kept`: what stays of its work.
 */
export function unfinishedRun(report: JobRunReport, job: string, kept: string): string {
  if (report.outcome === 'skipped') {
    return `skipped: another replica holds the ${job}'s lease${report.heldBy ? ` (${report.heldBy})` : ''}; nothing done, retry later\n`;
  }
  if (report.outcome === 'lease_lost') {
    return `stopped: the run lost its lease to another replica part way; ${kept}, and the lease holder carries on\n`;
  }
  return `failed (${report.errorCode ?? 'UNEXPECTED'}): ${kept}; the next run resumes from the data\n`;
}

/** The help text listing {@link CLI_EXIT}, shown after each command's own help. */
export const EXIT_CODES_HELP = `
Exit codes:
  0  done (a dry run too); audit verify: every chain verified
  2  audit verify: tampered (the first break of each broken chain is printed)
  3  cannot run: usage, configuration, store or key provider unreachable, or a storage that
     cannot do it (nothing changed)
  4  another replica holds the job's lease: nothing done, retry later
  5  the run failed or lost its lease part way; the next run resumes from the data
  6  erase: a legal hold covers the target; nothing erased
`;

/**
 * Options of {@link addEncryptedSessionCommands}.
 *
 * @publicApi
 */
export interface EncryptedSessionCommandsOptions {
  /**
   * The application context a command runs in, with the host's configured
   * `EncryptedSessionModule` (e.g. `() => NestFactory.createApplicationContext(AppModule)`).
   * Called once per command run, only once its arguments parsed; closed after the command
   * unless {@link closeContext} is false.
   */
  readonly context: () => Promise<INestApplicationContext>;
  /** Whether a command closes the context it was given when it ends. @default true */
  readonly closeContext?: boolean;
  /** Where results go. @default process.stdout */
  readonly out?: (text: string) => void;
  /** Where problems go. @default process.stderr */
  readonly err?: (text: string) => void;
  /**
   * The terminal to draw progress bars on (long work, `purge`); none without it, and never
   * with `--json`. @default process.stdout when it is a TTY and `out` is not given
   */
  readonly terminal?: NodeJS.WritableStream & { readonly isTTY?: boolean };
  /** Receives each command's exit code ({@link CLI_EXIT}). @default sets `process.exitCode` */
  readonly exit?: (code: number) => void;
}

/** Why a command cannot run as asked (exit 3): its message says what to change. */
export class UsageError extends Error {}

/** The options as the commands use them, defaults applied. */
export interface CommandRuntime {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly terminal: (NodeJS.WritableStream & { readonly isTTY?: boolean }) | undefined;
  /**
   * Runs one command: `plan` checks its arguments (throwing {@link UsageError}) before any
   * context exists; then it gets the context, runs the planned work in it, closes it, and
   * hands the exit code the work resolves to (or 3 for a usage or module error) to `exit`.
   */
  run(
    command: Command,
    verb: string,
    json: boolean,
    plan: () => (app: INestApplicationContext) => Promise<number>,
  ): Promise<void>;
}

const MISSING_TABLES =
  "the store lacks the module's tables; an operator command never creates them: start the app once (it runs the module's migrations), or run them as the host does (sessionMigrations of nest-encrypted-sessions/typeorm), then try again";

/**
 * Whether `error` is a database's "no such table" (SQLite), "relation does not exist"
 * (Postgres, 42P01) or ER_NO_SUCH_TABLE (MySQL/MariaDB), here or in its causes: a store the
 * module's migrations never ran on, since the commands' context does not run them.
 */
function missingTable(error: unknown): boolean {
  for (let depth = 0; depth < 5 && typeof error === 'object' && error !== null; depth++) {
    const { code, message, driverError, cause } = error as {
      code?: unknown;
      message?: unknown;
      driverError?: unknown;
      cause?: unknown;
    };
    if (code === '42P01' || code === 'ER_NO_SUCH_TABLE') return true;
    if (typeof message === 'string' && /\bno such table\b/.test(message)) return true;
    error = driverError ?? cause;
  }
  return false;
}

/** The program's name, for the prefix of messages: the root command's. */
function programName(command: Command): string {
  let root = command;
  while (root.parent) root = root.parent;
  return root.name() || 'nest-encrypted-sessions';
}

/** Applies the defaults of {@link EncryptedSessionCommandsOptions}. */
export function commandRuntime(options: EncryptedSessionCommandsOptions): CommandRuntime {
  const out = options.out ?? ((text: string) => void process.stdout.write(text));
  const err = options.err ?? ((text: string) => void process.stderr.write(text));
  const terminal =
    options.terminal ??
    (options.out === undefined && process.stdout.isTTY ? process.stdout : undefined);
  const exit =
    options.exit ??
    ((code: number) => {
      process.exitCode = code;
    });
  return {
    out,
    err,
    terminal,
    async run(command, verb, json, plan) {
      const prefix = programName(command);
      let app: INestApplicationContext | undefined;
      let code: number;
      try {
        const work = plan();
        app = await options.context();
        code = await work(app);
      } catch (error) {
        code = CLI_EXIT.cannotRun;
        if (error instanceof UsageError) {
          err(`${prefix}: ${error.message}\n`);
        } else if (missingTable(error)) {
          const reason = `SCHEMA: ${MISSING_TABLES}`;
          if (json) out(`${JSON.stringify({ ok: false, error: reason })}\n`);
          err(`${prefix}: cannot ${verb}: ${reason}\n`);
        } else {
          const reason =
            error instanceof EncryptedSessionError
              ? `${error.code}: ${error.message}`
              : 'unexpected error';
          if (json) out(`${JSON.stringify({ ok: false, error: reason })}\n`);
          err(`${prefix}: cannot ${verb}: ${reason}\n`);
          // The stack of an error the module did not type, for a bug report; a typed one's
          // message says it all (and a stack could carry what the message leaves out).
          if (!(error instanceof EncryptedSessionError)) new Logger('cli').error(error);
        }
      }
      if (app && options.closeContext !== false) {
        await app.close().catch(() => {
          // The command's work is done and its outcome stands; only the shutdown failed.
          err(`${prefix}: the application context did not close cleanly\n`);
        });
      }
      exit(code);
    },
  };
}
