import { Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
// In your app: import { EncryptedSessionJobs, RetentionService, ... } from 'nest-encrypted-sessions';
import {
  EncryptedSessionJobs,
  InvalidArgumentError,
  RetentionService,
  type JobRunReport,
  type PurgeReport,
} from '../../src/index.js';

/**
 * The module's scheduled jobs: what is scheduled, who holds each job's lease, and the retention
 * purge run by hand. A real app puts these behind an operator's role; this demo has no
 * authentication at all.
 */
@Controller('jobs')
export class JobsController {
  constructor(
    private readonly jobs: EncryptedSessionJobs,
    private readonly retention: RetentionService,
  ) {}

  /** Each job: its cron, whether it is on, its last run in this process and its lease now. */
  @Get()
  async status(): Promise<unknown[]> {
    const leases = await this.jobs.leases();
    return this.jobs.status().map((job) => ({
      ...job,
      lease: leases.find((entry) => entry.key === job.key)?.lease ?? null,
    }));
  }

  /** Runs the retention purge now (`?dryRun=true` counts without deleting). */
  @Post('retention-purge')
  @HttpCode(200)
  purge(@Query('dryRun') dryRun?: unknown): Promise<JobRunReport<PurgeReport>> {
    if (dryRun !== undefined && dryRun !== 'true' && dryRun !== 'false') {
      throw new InvalidArgumentError('dryRun must be true or false');
    }
    return this.retention.purgeExpired({ dryRun: dryRun === 'true' });
  }
}
