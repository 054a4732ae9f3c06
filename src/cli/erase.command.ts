import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { runAs } from '../audit/index.js';
import { LegalHoldError } from '../errors/index.js';
import {
  DEFAULT_SESSION_DEFAULTS,
  ERASURE_REASONS,
  EncryptedSessionService,
  type ErasureReason,
  type ErasureReceipt,
} from '../sessions/index.js';
import { operatorActor, withOperatorOptions, type OperatorOptions } from './operator-actor.js';
import { CLI_EXIT, EXIT_CODES_HELP, UsageError, type CommandRuntime } from './runtime.js';

interface EraseCommandOptions extends OperatorOptions {
  readonly subject?: string;
  readonly session?: string;
  readonly reason?: string;
}

interface ReplayCommandOptions extends OperatorOptions {
  readonly receipts?: string;
}

function summary(receipt: ErasureReceipt): string {
  const signed = receipt.signature
    ? `signed by ${receipt.signingKeyId}`
    : 'UNSIGNED (set AUDIT_CHECKPOINT_PRIVATE_KEY to sign receipts)';
  return `erased ${receipt.sessions} session(s): ${receipt.keysDestroyed} data key(s) destroyed, ${receipt.itemsDeleted} item(s) deleted; receipt ${receipt.receiptId}, ${signed}. Keep the receipt (--json) outside the database's backups.\n`;
}

/**
 * `erase --subject | --session`: crypto-shreds a subject's sessions or one session and prints
 * the receipt; `erase replay`: erases again, after a restore, what receipts say was erased.
 */
export function addEraseCommands(program: Command, runtime: CommandRuntime): void {
  const erase = withOperatorOptions(
    program
      .command('erase')
      .description(
        "erase a subject's sessions or one session: data keys destroyed, items deleted, a signed receipt printed (refused under a legal hold)",
      ),
  )
    .option('--subject <id>', 'every session of this subject')
    .option('--session <id>', 'this session')
    .option('--reason <code>', `why: ${ERASURE_REASONS.join(', ')}`)
    .option('--json', 'print the receipt as one JSON object (keep it: replay reads it)')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: EraseCommandOptions, command: Command) =>
      runtime.run(command, 'erase', options.json === true, () => {
        if ((options.subject === undefined) === (options.session === undefined)) {
          throw new UsageError('give exactly one of --subject or --session');
        }
        if (!(ERASURE_REASONS as readonly string[]).includes(options.reason ?? '')) {
          throw new UsageError(`give --reason, one of ${ERASURE_REASONS.join(', ')}`);
        }
        const tenantId = options.tenant ?? DEFAULT_SESSION_DEFAULTS.tenantId;
        const actor = operatorActor(options, tenantId);
        const eraseOptions = { tenantId, reason: options.reason as ErasureReason };
        return async (app) => {
          const service = app.get(EncryptedSessionService);
          try {
            const receipt = await runAs(actor, () =>
              options.subject !== undefined
                ? service.eraseSubject(options.subject, eraseOptions)
                : service.eraseSession(options.session!, eraseOptions),
            );
            runtime.out(options.json ? `${JSON.stringify(receipt)}\n` : summary(receipt));
            return CLI_EXIT.ok;
          } catch (error) {
            if (!(error instanceof LegalHoldError)) throw error;
            if (options.json) {
              runtime.out(
                `${JSON.stringify({ ok: false, error: `${error.code}: ${error.message}` })}\n`,
              );
            }
            runtime.err(
              `${command.parent?.name() ?? 'nest-encrypted-sessions'}: ${error.message}\n`,
            );
            return CLI_EXIT.held;
          }
        };
      }),
    );

  withOperatorOptions(
    erase
      .command('replay')
      .description(
        "after restoring a backup: erase again what the receipts (or the store's own erasure ledger) say was erased, and finish erasures cut off part way",
      ),
  )
    .option(
      '--receipts <file>',
      "a JSON-lines file of receipts kept outside the backup (default: the store's own ledger)",
    )
    .option('--json', 'print the replay report as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: ReplayCommandOptions, command: Command) =>
      runtime.run(command, 'replay the erasure ledger', options.json === true, () => {
        const actor = operatorActor(options, options.tenant ?? DEFAULT_SESSION_DEFAULTS.tenantId);
        return async (app) => {
          const service = app.get(EncryptedSessionService);
          const report = await runAs(actor, () =>
            service.replayErasureLedger(
              options.receipts === undefined ? {} : { receipts: receiptLines(options.receipts) },
            ),
          );
          runtime.out(
            options.json
              ? `${JSON.stringify(report)}\n`
              : `replayed ${report.entries} erasure(s): ${report.sessionsErased} session(s) erased again, ${report.keysDestroyed} key(s) destroyed, ${report.itemsDeleted} item(s) deleted, ${report.completed} unfinished erasure(s) finished\n`,
          );
          return CLI_EXIT.ok;
        };
      }),
    );
}

/** The non-empty lines of a JSON-lines file, read as they are needed. */
async function* receiptLines(path: string): AsyncGenerator<string> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) if (line.trim() !== '') yield line;
}
