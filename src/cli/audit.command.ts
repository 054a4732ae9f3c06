import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  AuditService,
  CHECKPOINT_SCHEMA,
  runAs,
  type AuditCheckpoint,
  type AuditVerification,
} from '../audit/index.js';
import { CLI_EXIT, EXIT_CODES_HELP, UsageError, type CommandRuntime } from './runtime.js';

interface VerifyOptions {
  readonly tenant?: string;
  readonly chain?: string;
  readonly fromSeq?: string;
  readonly toSeq?: string;
  readonly checkpointFile?: string;
  readonly json?: boolean;
}

function wholeNumber(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value) || Number(value) < 1) {
    throw new UsageError(`${name} must be a whole number from 1`);
  }
  return Number(value);
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

/** `audit verify`: the trail's chains, from storage, against the latest checkpoint. */
export function addAuditCommands(program: Command, runtime: CommandRuntime): void {
  const audit = program.command('audit').description('audit verify: check the audit trail');
  audit
    .command('verify')
    .description(
      'verify the audit trail: every chain of a tenant, or one chain (optionally a seq range)',
    )
    .option('--tenant <id>', 'every chain of the tenant, measured against its latest checkpoint')
    .option('--chain <id>', 'one chain')
    .option('--from-seq <n>', 'from this seq of the chain')
    .option('--to-seq <n>', 'through this seq of the chain')
    .option(
      '--checkpoint-file <file>',
      "a JSON-lines copy of the trail kept outside the database (the winston file): the tenant's last checkpoint in it is the one to measure against",
    )
    .option('--json', 'print the verification as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: VerifyOptions, command: Command) =>
      runtime.run(command, 'verify', options.json === true, () => {
        if ((options.tenant === undefined) === (options.chain === undefined)) {
          throw new UsageError('give exactly one of --tenant or --chain');
        }
        if (options.checkpointFile !== undefined && options.tenant === undefined) {
          throw new UsageError('--checkpoint-file measures a tenant: give --tenant');
        }
        const fromSeq = wholeNumber(options.fromSeq, '--from-seq');
        const toSeq = wholeNumber(options.toSeq, '--to-seq');
        const external =
          options.checkpointFile === undefined
            ? undefined
            : lastCheckpointIn(options.checkpointFile, options.tenant!);
        return async (app) => {
          const service = app.get(AuditService);
          if (options.checkpointFile !== undefined && !service.checkpointPublicKey()) {
            throw new UsageError(
              "--checkpoint-file needs the checkpoints' public key: set AUDIT_CHECKPOINT_PUBLIC_KEY (see --help), or audit.checkpoints.publicKey in the module's options",
            );
          }
          const tenantId = options.tenant ?? 'cli';
          const result = await runAs({ type: 'service', id: 'nes-cli', tenantId }, () =>
            service.verify({
              tenantId: options.tenant,
              chainId: options.chain,
              fromSeq,
              toSeq,
              checkpoint: external,
            }),
          );
          runtime.out(options.json ? `${JSON.stringify(result)}\n` : describe(result));
          return result.ok ? CLI_EXIT.ok : CLI_EXIT.tampered;
        };
      }),
    );
}
