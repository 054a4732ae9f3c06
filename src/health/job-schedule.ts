import { createRequire } from 'node:module';
import { ConfigurationError } from '../errors/index.js';
import { resolveSchedulePackage } from '../jobs/index.js';

/** The part of `cron`'s CronTime the lag needs. */
interface CronTimeLike {
  getNextDateFrom(start: Date): { toMillis(): number };
}

type CronTimeClass = new (expression: string) => CronTimeLike;

let cronTimeClass: CronTimeClass | undefined;

/**
 * Loads `CronTime` from the `cron` package that `@nestjs/schedule` (an optional peer) brings,
 * the same one the job scheduler's jobs run on, so a host without jobs needs neither.
 */
function loadCronTime(): CronTimeClass {
  if (cronTimeClass) return cronTimeClass;
  const schedulePath = resolveSchedulePackage(
    "The jobs health check of an enabled job needs the '@nestjs/schedule' package (its cron): npm install @nestjs/schedule, as the job itself needs",
  );
  cronTimeClass = (createRequire(schedulePath)('cron') as { CronTime: CronTimeClass }).CronTime;
  return cronTimeClass;
}

/**
 * How late a job is against its cron.
 */
export interface ScheduleLag {
  /** Time since the first fire time that no run has covered yet; 0 when none is due. */
  readonly lagMs: number;
  /** The gap from that fire time (or the next one) to the one after it. */
  readonly periodMs: number;
}

/**
 * How late a job on `cron` is at `now` when its last run started at `since` (or, for a job that
 * never ran, when watching began): a run covers every fire time up to its start, so the first
 * fire time after `since` is the one due next, and the time past it is the lag. Times are epoch
 * ms; the cron is read in the process's time zone, as the scheduler reads it.
 *
 * @throws ConfigurationError when `@nestjs/schedule` is not installed or the cron does not parse.
 */
export function scheduleLag(cron: string, since: number, now: number): ScheduleLag {
  const CronTime = loadCronTime();
  let dueAt: number;
  let afterDue: number;
  try {
    const time = new CronTime(cron);
    dueAt = time.getNextDateFrom(new Date(since)).toMillis();
    afterDue = time.getNextDateFrom(new Date(dueAt)).toMillis();
  } catch {
    // The scheduler refuses such a cron at startup; an app that never started it may hold one.
    throw new ConfigurationError(
      `A job's cron '${cron}' is not a cron expression that fires; give five or six fields, e.g. '0 * * * *' for hourly`,
    );
  }
  return { lagMs: Math.max(0, now - dueAt), periodMs: afterDue - dueAt };
}
