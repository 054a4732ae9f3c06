import type { Command } from 'commander';
import { EncryptedSessionJobs, type JobRunReport } from '../jobs/index.js';
import { KekRotationService, KeyRing, type RewrapReport } from '../keys/index.js';
import { progressOn } from './progress.js';
import { CLI_EXIT, EXIT_CODES_HELP, JOB_RUN_EXIT, type CommandRuntime } from './runtime.js';

/** The one line a person reads after `keys rewrap`; a script reads `--json`. */
function rewrapSummary(report: JobRunReport<RewrapReport | undefined>): string {
  if (report.outcome === 'skipped') {
    return `skipped: another replica holds the root key rewrap's lease${report.heldBy ? ` (${report.heldBy})` : ''}; nothing done, retry later\n`;
  }
  if (report.outcome === 'lease_lost') {
    return 'stopped: the run lost its lease to another replica part way; what it moved stays moved, and the lease holder carries on\n';
  }
  if (report.outcome === 'failed') {
    return `failed (${report.errorCode ?? 'UNEXPECTED'}): what it moved stays moved; the next run resumes from the data\n`;
  }
  const result = report.result;
  if (!result) return 'nothing to do: every data key is wrapped by the active root key\n';
  const rest =
    result.remaining === 0
      ? 'none left on an older root key'
      : `${result.remaining} still on an older root key: run again to go on`;
  return `rewrapped ${result.rewrapped} data key(s) to the active root key, ${result.alreadyMoved} already moved, ${result.failed} failed; ${rest}\n`;
}

/**
 * `keys status`: data keys per root key and the rotation policy. `keys rewrap`: the root key
 * rewrap job, run now under its lease.
 */
export function addKeysCommands(program: Command, runtime: CommandRuntime): void {
  const keys = program
    .command('keys')
    .description('keys status | rewrap: root keys, data keys and their rotation');
  keys
    .command('status')
    .description(
      'the active root key, how many data keys each root key wraps, and the data key rotation policy',
    )
    .option('--json', 'print the status as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: { readonly json?: boolean }, command: Command) =>
      runtime.run(command, 'read the key status', options.json === true, () => async (app) => {
        const status = await app.get(KekRotationService).status();
        const report = { ...status, rotationPolicy: app.get(KeyRing).rotationPolicy };
        if (options.json) {
          runtime.out(`${JSON.stringify(report)}\n`);
          return CLI_EXIT.ok;
        }
        runtime.out(`active root key: ${status.activeKekId}\n`);
        for (const [kekId, count] of Object.entries(status.dataKeysByKek)) {
          runtime.out(`  ${kekId}: ${count} data key(s)\n`);
        }
        runtime.out(
          status.remaining === 0
            ? 'every data key is on the active root key\n'
            : `${status.remaining} data key(s) on an older root key: run keys rewrap\n`,
        );
        const { maxAgeDays, maxItems } = report.rotationPolicy;
        runtime.out(
          `data key rotation: after ${maxAgeDays === null ? 'any number of' : maxAgeDays} day(s)${maxItems === null ? '' : ` or ${maxItems} item(s)`}, at the session's next write\n`,
        );
        return CLI_EXIT.ok;
      }),
    );
  keys
    .command('rewrap')
    .description(
      'move data keys on an older root key to the active one (the root key rewrap job, run now under its lease); no item is rewritten',
    )
    .option('--json', 'print the run report as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: { readonly json?: boolean }, command: Command) =>
      runtime.run(command, 'rewrap', options.json === true, () => async (app) => {
        const progress = progressOn(options.json ? undefined : runtime.terminal, 'rewrap', [
          'rewrapped',
          'moved',
          'failed',
        ]);
        let report: JobRunReport<RewrapReport | undefined>;
        try {
          report = await app.get(EncryptedSessionJobs).rewrapRootKeys({
            onProgress: (counts) =>
              progress.update({
                found: counts.found,
                done: counts.rewrapped + counts.alreadyMoved + counts.failed,
                details: {
                  rewrapped: counts.rewrapped,
                  moved: counts.alreadyMoved,
                  failed: counts.failed,
                },
              }),
          });
        } finally {
          progress.stop();
        }
        const code = JOB_RUN_EXIT[report.outcome];
        if (options.json) runtime.out(`${JSON.stringify(report)}\n`);
        else (code === CLI_EXIT.ok ? runtime.out : runtime.err)(rewrapSummary(report));
        return code;
      }),
    );
}
