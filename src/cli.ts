#!/usr/bin/env node
/**
 * `nest-encrypted-sessions audit verify`: verifies the audit trail of a store from the command
 * line, configured like the demo by environment variables. Exit codes: 0 every chain verified,
 * 2 a chain is broken (tampered), 3 it could not be verified (bad usage, configuration,
 * unreachable store or key provider). `--json` prints one JSON object on stdout.
 *
 * @packageDocumentation
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  AuditService,
  CHECKPOINT_SCHEMA,
  runAs,
  type AuditCheckpoint,
  type AuditVerification,
} from './audit/index.js';
import { EncryptedSessionError } from './errors/index.js';
import { EncryptedSessionModule, type StorageOptions } from './module/index.js';

/** Exit codes of the command line. */
export const CLI_EXIT = { ok: 0, tampered: 2, cannotVerify: 3 } as const;

const USAGE = `Usage: nest-encrypted-sessions audit verify (--tenant ID | --chain ID) [--from-seq N] [--to-seq N]
                                            [--checkpoint-file FILE] [--json]

Verifies the audit trail: every chain of a tenant, or one chain (optionally a seq range).
Exit codes: 0 verified, 2 tampered (a chain is broken; the first break of each is printed),
3 cannot verify (usage, configuration, store or key provider unreachable).

Configured by the environment, as the demo:
  SESSION_KEYS         root keys, "id:base64key[,id:base64key...]" (required)
  SESSION_ACTIVE_KEY   the active root key id (required)
  SESSION_STORAGE_URL  postgres://, mysql:// or mariadb://, redis:// (default: the SQLite file)
  SESSION_SQLITE_PATH  the SQLite file (default ./data/demo.sqlite, the demo's)
  AUDIT_CHECKPOINT_PUBLIC_KEY  the Ed25519 public key of the trail's checkpoints (PEM); with
                       --tenant, chains are measured against the tenant's latest checkpoint
  --checkpoint-file FILE  a JSON-lines copy of the trail kept outside the database (the winston
                       file): its last checkpoint of the tenant is the one to measure against
The demo's development keys: node --env-file=./data/dev-keys.env <this script> audit verify ...
`;

/** Why the command cannot run as asked (exit 3). */
class UsageError extends Error {}

interface VerifyCommand {
  readonly checkpointFile?: string;
  readonly tenantId?: string;
  readonly chainId?: string;
  readonly fromSeq?: number;
  readonly toSeq?: number;
  readonly json: boolean;
}

function wholeNumber(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value) || Number(value) < 1) {
    throw new UsageError(`${name} must be a whole number from 1`);
  }
  return Number(value);
}

/** Parses `audit verify ...`. */
export function parseCli(argv: readonly string[]): VerifyCommand | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        tenant: { type: 'string' },
        chain: { type: 'string' },
        'from-seq': { type: 'string' },
        'to-seq': { type: 'string' },
        'checkpoint-file': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.join(' ') !== 'audit verify') {
    throw new UsageError(
      `unknown command '${positionals.join(' ')}'; the command is: audit verify`,
    );
  }
  if ((values.tenant === undefined) === (values.chain === undefined)) {
    throw new UsageError('give exactly one of --tenant or --chain');
  }
  if (values['checkpoint-file'] !== undefined && values.tenant === undefined) {
    throw new UsageError('--checkpoint-file measures a tenant: give --tenant');
  }
  return {
    checkpointFile: values['checkpoint-file'],
    tenantId: values.tenant,
    chainId: values.chain,
    fromSeq: wholeNumber(values['from-seq'], '--from-seq'),
    toSeq: wholeNumber(values['to-seq'], '--to-seq'),
    json: values.json,
  };
}

/**
 * The storage the environment names, as the demo reads it. Verifying only reads the trail, so
 * it never creates tables (`runMigrations: false`): a store without them cannot be verified.
 */
export function storageFromEnv(env: NodeJS.ProcessEnv): StorageOptions {
  const url = env.SESSION_STORAGE_URL?.trim();
  if (!url) {
    return {
      type: 'sqlite',
      path: env.SESSION_SQLITE_PATH ?? './data/demo.sqlite',
      runMigrations: false,
    };
  }
  const scheme = /^([a-z]+):\/\//.exec(url)?.[1];
  if (scheme === 'postgres' || scheme === 'postgresql') {
    return { type: 'postgres', url, runMigrations: false };
  }
  if (scheme === 'mysql' || scheme === 'mariadb')
    return { type: 'mysql', url, runMigrations: false };
  if (scheme === 'redis' || scheme === 'rediss') return { type: 'redis', url };
  throw new UsageError(
    'SESSION_STORAGE_URL must start with postgres://, mysql://, mariadb:// or redis://',
  );
}

/** The tenant's last checkpoint in a JSON-lines file (the winston copy), if any. */
function lastCheckpointIn(file: string, tenantId: string): AuditCheckpoint | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`cannot read --checkpoint-file ${file}`);
  }
  let found: AuditCheckpoint | undefined;
  for (const line of text.split('\n')) {
    if (!line.includes(CHECKPOINT_SCHEMA)) continue;
    try {
      const entry = JSON.parse(line) as AuditCheckpoint;
      if (entry.schema === CHECKPOINT_SCHEMA && entry.tenantId === tenantId) found = entry;
    } catch {
      // Not a whole JSON line (a torn write): the earlier checkpoints still count.
    }
  }
  return found;
}

/** One line per chain that broke, or one line saying all verified. */
function describe(result: AuditVerification): string {
  const checkpoint = result.checkpoint;
  const checkpointLine = checkpoint
    ? checkpoint.ok
      ? `checkpoint ${checkpoint.checkpointId} holds\n`
      : `TAMPERED checkpoint ${checkpoint.checkpointId}: ${checkpoint.reason}\n`
    : '';
  if (result.ok) return `ok: ${result.chains.length} chain(s) verified\n${checkpointLine}`;
  return (
    checkpointLine +
    result.chains
      .filter((chain) => !chain.ok)
      .map(
        (chain) =>
          `TAMPERED ${chain.chainId}: ${chain.reason} at seq ${chain.firstBadSeq} (verified through ${chain.verifiedThroughSeq})\n`,
      )
      .join('')
  );
}

/**
 * Runs the command line with `argv` (after the script name) and the environment; resolves to
 * the exit code. Writes results on `out`, problems on `err`.
 */
export async function runCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  let command: VerifyCommand | 'help';
  let storage: StorageOptions;
  let external: AuditCheckpoint | undefined;
  try {
    command = parseCli(argv);
    if (command === 'help') {
      out(USAGE);
      return CLI_EXIT.ok;
    }
    storage = storageFromEnv(env);
    if (!env.SESSION_KEYS || !env.SESSION_ACTIVE_KEY) {
      throw new UsageError('set SESSION_KEYS and SESSION_ACTIVE_KEY (see --help)');
    }
    if (command.checkpointFile !== undefined && !env.AUDIT_CHECKPOINT_PUBLIC_KEY) {
      throw new UsageError('--checkpoint-file needs AUDIT_CHECKPOINT_PUBLIC_KEY (see --help)');
    }
    external =
      command.checkpointFile === undefined
        ? undefined
        : lastCheckpointIn(command.checkpointFile, command.tenantId!);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    err(`nest-encrypted-sessions: ${error.message}\n`);
    return CLI_EXIT.cannotVerify;
  }
  const cli = command;
  @Module({
    imports: [
      EncryptedSessionModule.forRoot({
        keys: { env: { keys: env.SESSION_KEYS, activeKeyId: env.SESSION_ACTIVE_KEY } },
        storage,
        ...(env.AUDIT_CHECKPOINT_PUBLIC_KEY
          ? { audit: { checkpoints: { publicKey: env.AUDIT_CHECKPOINT_PUBLIC_KEY } } }
          : {}),
      }),
    ],
  })
  // oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
  class CliModule {}
  let app;
  try {
    app = await NestFactory.createApplicationContext(CliModule, {
      logger: ['error'],
      abortOnError: false,
    });
    const audit = app.get(AuditService);
    const tenantId = cli.tenantId ?? 'cli';
    const result = await runAs({ type: 'service', id: 'nes-cli', tenantId }, () =>
      audit.verify({
        tenantId: cli.tenantId,
        chainId: cli.chainId,
        fromSeq: cli.fromSeq,
        toSeq: cli.toSeq,
        checkpoint: external,
      }),
    );
    out(cli.json ? `${JSON.stringify(result)}\n` : describe(result));
    return result.ok ? CLI_EXIT.ok : CLI_EXIT.tampered;
  } catch (error) {
    const reason =
      error instanceof EncryptedSessionError
        ? `${error.code}: ${error.message}`
        : 'unexpected error';
    if (cli.json) out(`${JSON.stringify({ ok: false, error: reason })}\n`);
    err(`nest-encrypted-sessions: cannot verify: ${reason}\n`);
    if (!(error instanceof EncryptedSessionError)) new Logger('cli').error(error);
    return CLI_EXIT.cannotVerify;
  } finally {
    await app?.close();
  }
}

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
  );
}
