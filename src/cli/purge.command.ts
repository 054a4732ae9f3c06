import type { Command } from 'commander';
import { RetentionService, type JobRunReport, type PurgeReport } from '../jobs/index.js';
import { progressOn } from './progress.js';
import {
  CLI_EXIT,
  EXIT_CODES_HELP,
  JOB_RUN_EXIT,
  unfinishedRun,
  type CommandRuntime,
} from './runtime.js';

interface PurgeCommandOptions {
  readonly dryRun?: boolean;
  readonly json?: boolean;
}

/** The one line a person reads; a script reads `--json`. */
function summary(report: JobRunReport<PurgeReport>): string {
  const result = report.result;
  if (report.outcome !== 'done' || !result) {
    return unfinishedRun(report, 'retention purge', 'what it purged stays purged');
  }
  const rest = result.complete
    ? ''
    : '; stopped at jobs.retentionPurge.maxBatchesPerRun: run again to go on';
  if (result.dryRun) {
    return `dry run, nothing deleted: would purge ${result.purged} and shred ${result.shredded} of ${result.scanned} expired item(s), keep ${result.unverified} unverified${rest}\n`;
  }
  return `purged ${result.purged} and shredded ${result.shredded} of ${result.scanned} expired item(s) in ${result.batches} batch(es), kept ${result.unverified} unverified, ${result.elapsedMs} ms${rest}\n`;
}

/** `purge [--dry-run]`: the retention purge, under its lease, as the job's own actor. */
export function addPurgeCommand(program: Command, runtime: CommandRuntime): void {
  program
    .command('purge')
    .description(
      'delete expired items for good (the retention purge job, run now under its lease; a dry run only counts)',
    )
    .option('--dry-run', 'count what a run would purge; delete and record nothing')
    .option('--json', 'print the run report as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: PurgeCommandOptions, command: Command) =>
      runtime.run(command, 'purge', options.json === true, () => async (app) => {
        const progress = progressOn(options.json ? undefined : runtime.terminal, 'purge', [
          'purged',
          'shredded',
          'kept',
        ]);
        let report: JobRunReport<PurgeReport>;
        try {
          report = await app.get(RetentionService).purgeExpired({
            dryRun: options.dryRun,
            onProgress: (counts) =>
              progress.update({
                found: counts.scanned,
                done: counts.purged + counts.shredded + counts.unverified,
                details: {
                  purged: counts.purged,
                  shredded: counts.shredded,
                  kept: counts.unverified,
                },
              }),
          });
        } finally {
          progress.stop();
        }
        const code = JOB_RUN_EXIT[report.outcome];
        if (options.json) runtime.out(`${JSON.stringify(report)}\n`);
        else (code === CLI_EXIT.ok ? runtime.out : runtime.err)(summary(report));
        return code;
      }),
    );
}
