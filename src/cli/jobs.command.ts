import type { Command } from 'commander';
import { EncryptedSessionJobs } from '../jobs/index.js';
import { CLI_EXIT, EXIT_CODES_HELP, type CommandRuntime } from './runtime.js';

/** `jobs status`: each job, its schedule here, and who holds its lease now on any replica. */
export function addJobsCommands(program: Command, runtime: CommandRuntime): void {
  const jobs = program
    .command('jobs')
    .description("jobs status: the module's jobs and who holds their leases");
  jobs
    .command('status')
    .description(
      "each job, whether this process's configuration schedules it, and who holds its lease now (any replica)",
    )
    .option('--json', 'print an array of jobs, one JSON object each')
    .addHelpText('after', EXIT_CODES_HELP)
    .action((options: { readonly json?: boolean }, command: Command) =>
      runtime.run(command, 'read the jobs', options.json === true, () => async (app) => {
        const service = app.get(EncryptedSessionJobs);
        const leases = new Map((await service.leases()).map((entry) => [entry.key, entry.lease]));
        const statuses = service.status().map((status) => ({
          ...status,
          ...(leases.get(status.key) && { lease: leases.get(status.key) }),
        }));
        if (options.json) {
          runtime.out(`${JSON.stringify(statuses)}\n`);
          return CLI_EXIT.ok;
        }
        for (const status of statuses) {
          const schedule = status.enabled
            ? `scheduled here (${status.cron})`
            : 'not scheduled here';
          const lease = status.lease;
          const holder = !lease
            ? 'lease never taken'
            : lease.held
              ? `lease held by ${lease.owner} until ${lease.expiresAt.toISOString()} (token ${lease.token})`
              : `lease free (last ${lease.owner}, lapsed ${lease.expiresAt.toISOString()})`;
          runtime.out(`${status.name}: ${schedule}; ${holder}\n`);
        }
        return CLI_EXIT.ok;
      }),
    );
}
