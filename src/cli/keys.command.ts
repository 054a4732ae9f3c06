import type { Command } from 'commander';
import { runAs } from '../audit/index.js';
import {
  EncryptedSessionJobs,
  KeyRotationService,
  type JobRunReport,
  type KeyRotationProgress,
  type KeyRotationReport,
  type KeyRotationStatus,
} from '../jobs/index.js';
import { KekRotationService, type RewrapReport } from '../keys/index.js';
import { DEFAULT_SESSION_DEFAULTS } from '../sessions/index.js';
import { operatorActor, withOperatorOptions, type OperatorOptions } from './operator-actor.js';
import { progressOn, type Progress } from './progress.js';
import {
  CLI_EXIT,
  EXIT_CODES_HELP,
  JOB_RUN_EXIT,
  UsageError,
  unfinishedRun,
  type CommandRuntime,
} from './runtime.js';

/** Whole days, rounded down, for a person. */
const days = (ms: number) => `${Math.floor(ms / 86_400_000)} day(s)`;

/** The active and retiring data keys of `keys status`, for a person. */
function dataKeysLine(keys: Omit<KeyRotationStatus, 'policy'>): string {
  const active =
    keys.oldestActiveKeyAgeMs === null
      ? 'no active data key'
      : `${keys.activeKeys} active data key(s), the oldest ${days(keys.oldestActiveKeyAgeMs)} old, ${keys.activeKeysPastMaxAge} past the age limit`;
  const retiring =
    keys.rotationLagMs === null
      ? 'none retiring'
      : `${keys.retiringKeys} retiring, the longest for ${days(keys.rotationLagMs)}: run keys rotate`;
  return `${active}; ${retiring}`;
}

/** The one line a person reads after `keys rotate`. */
function rotateSummary(report: JobRunReport<KeyRotationReport>): string {
  const result = report.result;
  if (report.outcome !== 'done' || !result) {
    return unfinishedRun(report, 'data key rotation', 'what it moved stays moved');
  }
  const rest = result.complete
    ? ''
    : '; stopped at jobs.keyRotation.maxBatchesPerRun: run again to go on';
  return `re-encrypted ${result.reencrypted} item(s) of ${result.retiringKeys} retiring data key(s), destroyed ${result.destroyed} key(s), kept ${result.unreadable} unreadable item(s) and ${result.skippedForHold} held key(s), in ${result.batches} batch(es)${rest}\n`;
}

/** A progress bar of a rotation run on the runtime's terminal, unless `--json`. */
function rotationProgress(
  runtime: CommandRuntime,
  json: boolean,
): { progress: Progress; onProgress: (counts: KeyRotationProgress) => void } {
  const progress = progressOn(json ? undefined : runtime.terminal, 'rotate', [
    'items',
    'destroyed',
    'held',
  ]);
  return {
    progress,
    onProgress: (counts) =>
      progress.update({
        found: counts.retiringKeys,
        done: counts.destroyed + counts.skippedForHold,
        details: {
          items: counts.reencrypted,
          destroyed: counts.destroyed,
          held: counts.skippedForHold,
        },
      }),
  };
}

/** The one line a person reads after `keys rewrap`; a script reads `--json`. */
function rewrapSummary(report: JobRunReport<RewrapReport | undefined>): string {
  if (report.outcome !== 'done') {
    return unfinishedRun(report, 'root key rewrap', 'what it moved stays moved');
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
 * rewrap job, run now under its lease. `keys rotate [--session]`: the data key rotation job
 * (re-encryption of retiring keys), run now under its lease, after rotating one session's key.
 */
export function addKeysCommands(program: Command, runtime: CommandRuntime): void {
  const keys = program
    .command('keys')
    .description('keys status | rewrap | rotate: root keys, data keys and their rotation');
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
        const { policy, ...dataKeys } = await app.get(KeyRotationService).status();
        const report = { ...status, rotationPolicy: policy, dataKeys };
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
        const { maxAgeDays, maxItems } = policy;
        runtime.out(
          `data key rotation: after ${maxAgeDays === null ? 'any number of' : maxAgeDays} day(s)${maxItems === null ? '' : ` or ${maxItems} item(s)`}, at the session's next write\n`,
        );
        runtime.out(`${dataKeysLine(dataKeys)}\n`);
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
  withOperatorOptions(
    keys
      .command('rotate')
      .description(
        "re-encrypt the items of retiring data keys into their session's active key and destroy those keys (the key rotation job, run now under its lease); with --session, first rotate that session's key",
      ),
  )
    .option('--session <id>', "rotate this session's data key now, then re-encrypt its items")
    .option('--json', 'print the run report as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: OperatorOptions & { readonly session?: string }, command: Command) =>
      runtime.run(command, 'rotate', options.json === true, () => {
        const tenantId = options.tenant ?? DEFAULT_SESSION_DEFAULTS.tenantId;
        if (options.session === undefined && options.actor !== undefined) {
          throw new UsageError('--actor and --tenant go with --session');
        }
        const actor = options.session === undefined ? undefined : operatorActor(options, tenantId);
        return async (app) => {
          const service = app.get(KeyRotationService);
          const { progress, onProgress } = rotationProgress(runtime, options.json === true);
          let report: JobRunReport<KeyRotationReport>;
          try {
            report =
              actor === undefined
                ? await service.reencryptRetiring({ onProgress })
                : await runAs(actor, () =>
                    service.rotateSession(
                      { tenantId, sessionId: options.session! },
                      { onProgress },
                    ),
                  );
          } finally {
            progress.stop();
          }
          const code = JOB_RUN_EXIT[report.outcome];
          if (options.json) runtime.out(`${JSON.stringify(report)}\n`);
          else (code === CLI_EXIT.ok ? runtime.out : runtime.err)(rotateSummary(report));
          return code;
        };
      }),
    );
}
