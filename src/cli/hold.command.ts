import type { Command } from 'commander';
import { runAs } from '../audit/index.js';
import {
  DEFAULT_SESSION_DEFAULTS,
  EncryptedSessionService,
  type LegalHold,
} from '../sessions/index.js';
import { operatorActor, withOperatorOptions, type OperatorOptions } from './operator-actor.js';
import { CLI_EXIT, EXIT_CODES_HELP, UsageError, type CommandRuntime } from './runtime.js';

interface PlaceOptions extends OperatorOptions {
  readonly subject?: string;
  readonly session?: string;
  readonly matter?: string;
}

interface ListOptions {
  readonly tenant?: string;
  readonly all?: boolean;
  readonly json?: boolean;
}

/** One hold on one line, for a person. */
function describeHold(hold: LegalHold): string {
  const target = hold.sessionId === null ? 'a subject' : `session '${hold.sessionId}'`;
  const state =
    hold.releasedAt === null
      ? 'active'
      : `released ${new Date(hold.releasedAt).toISOString()} by ${hold.releasedBy}`;
  return `${hold.holdId} tenant '${hold.tenantId}' ${target} matter '${hold.matterRef}' placed ${new Date(hold.placedAt).toISOString()} by ${hold.placedBy}, ${state}\n`;
}

/** `hold place | release | list | export`: legal holds, audited, as an operator. */
export function addHoldCommands(program: Command, runtime: CommandRuntime): void {
  const hold = program
    .command('hold')
    .description('legal holds: place, release, list, and export what a hold covers');

  withOperatorOptions(
    hold
      .command('place')
      .description(
        'hold a session, or every session of a subject (now and later): never purged or erased while held',
      ),
  )
    .option('--subject <id>', 'every session of this subject')
    .option('--session <id>', 'this session')
    .option('--matter <ref>', "the matter's reference, e.g. a case number (required)")
    .option('--json', 'print the hold as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: PlaceOptions, command: Command) =>
      runtime.run(command, 'place the hold', options.json === true, () => {
        if ((options.subject === undefined) === (options.session === undefined)) {
          throw new UsageError('give exactly one of --subject or --session');
        }
        if (!options.matter) throw new UsageError("give --matter <ref>: the matter's reference");
        const tenantId = options.tenant ?? DEFAULT_SESSION_DEFAULTS.tenantId;
        const actor = operatorActor(options, tenantId);
        const target =
          options.subject !== undefined
            ? { subjectId: options.subject }
            : { sessionId: options.session! };
        return async (app) => {
          const placed = await runAs(actor, () =>
            app
              .get(EncryptedSessionService)
              .placeHold({ tenantId, matterRef: options.matter!, ...target }),
          );
          runtime.out(
            options.json ? `${JSON.stringify(placed)}\n` : `placed ${describeHold(placed)}`,
          );
          return CLI_EXIT.ok;
        };
      }),
    );

  withOperatorOptions(
    hold.command('release').argument('<holdId>', 'the hold').description('release a legal hold'),
  )
    .option('--json', 'print the hold as one JSON object')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((holdId: string, options: OperatorOptions, command: Command) =>
      runtime.run(command, 'release the hold', options.json === true, () => {
        const actor = operatorActor(options, options.tenant ?? DEFAULT_SESSION_DEFAULTS.tenantId);
        return async (app) => {
          const released = await runAs(actor, () =>
            app.get(EncryptedSessionService).releaseHold(holdId),
          );
          runtime.out(
            options.json ? `${JSON.stringify(released)}\n` : `released ${describeHold(released)}`,
          );
          return CLI_EXIT.ok;
        };
      }),
    );

  hold
    .command('list')
    .description('the active legal holds (--all: released ones too), oldest first')
    .option('--tenant <id>', "one tenant's (default: every tenant's)")
    .option('--all', 'released holds too')
    .option('--json', 'print an array of holds')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: ListOptions, command: Command) =>
      runtime.run(command, 'list the holds', options.json === true, () => async (app) => {
        const service = app.get(EncryptedSessionService);
        const holds: LegalHold[] = [];
        for (let after: string | undefined; ;) {
          const page = await service.listHolds({
            tenantId: options.tenant,
            includeReleased: options.all === true,
            after,
            limit: 1000,
          });
          holds.push(...page);
          if (page.length < 1000) break;
          after = page.at(-1)!.holdId;
        }
        if (options.json) runtime.out(`${JSON.stringify(holds)}\n`);
        else if (holds.length === 0) runtime.out('no legal holds\n');
        else for (const entry of holds) runtime.out(describeHold(entry));
        return CLI_EXIT.ok;
      }),
    );

  withOperatorOptions(
    hold
      .command('export')
      .argument('<holdId>', 'an active hold')
      .description(
        'print every item the hold covers (past its TTL too) as JSON lines for the matter; audited per session',
      ),
  )
    .addHelpText('after', EXIT_CODES_HELP)
    .action((holdId: string, options: OperatorOptions, command: Command) =>
      runtime.run(command, 'export the hold', false, () => {
        const actor = operatorActor(options, options.tenant ?? DEFAULT_SESSION_DEFAULTS.tenantId);
        return async (app) => {
          const lines = runAs(actor, () => app.get(EncryptedSessionService).exportHold(holdId));
          for await (const line of lines) runtime.out(line);
          return CLI_EXIT.ok;
        };
      }),
    );
}
