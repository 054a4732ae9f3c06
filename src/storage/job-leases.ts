import { InvalidArgumentError, LeaseLostError } from '../errors/index.js';
import type { JobLease } from './storage.records.js';

/*
 * What every lease adapter shares: the checks of its arguments, and the lease math the
 * in-memory adapter runs as is (the SQL statements and the Redis scripts do the same in one
 * atomic step on the backend's clock).
 */

/** Most UTF-8 bytes of a job name or lease owner: what every backend's column holds. */
export const MAX_LEASE_NAME_BYTES = 191;

/** Longest lease one call may take or renew: a day. */
export const MAX_LEASE_TTL_MS = 86_400_000;

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** Returns `value` when it is a usable job name or owner; InvalidArgumentError otherwise. */
export function checkLeaseName(value: unknown, name: 'job' | 'owner'): string {
  const example = name === 'job' ? "'retention-purge'" : "'<host name>:<process id>'";
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    !value.isWellFormed() ||
    CONTROL_CHARACTERS.test(value) ||
    Buffer.byteLength(value, 'utf8') > MAX_LEASE_NAME_BYTES
  ) {
    throw new InvalidArgumentError(
      `A lease's ${name} must be a non-empty string of at most ${MAX_LEASE_NAME_BYTES} UTF-8 bytes without control characters, e.g. ${example}`,
    );
  }
  return value;
}

/** Returns `ttlMs` when it is a whole number of ms from 1 to a day; InvalidArgumentError otherwise. */
export function checkLeaseTtl(ttlMs: unknown): number {
  if (
    typeof ttlMs !== 'number' ||
    !Number.isSafeInteger(ttlMs) ||
    ttlMs < 1 ||
    ttlMs > MAX_LEASE_TTL_MS
  ) {
    throw new InvalidArgumentError(
      `A lease's ttlMs must be a whole number of milliseconds from 1 to ${MAX_LEASE_TTL_MS} (a day), e.g. 30000; renew a longer job's lease while it works`,
    );
  }
  return ttlMs;
}

/** Returns `lease` when it has the shape acquire() returns; InvalidArgumentError otherwise. */
export function checkJobLease(lease: unknown): JobLease {
  if (typeof lease !== 'object' || lease === null) {
    throw new InvalidArgumentError(
      'Pass the lease that acquire() or renew() returned (an object with job, owner and token)',
    );
  }
  const { job, owner, token } = lease as Partial<JobLease>;
  checkLeaseName(job, 'job');
  checkLeaseName(owner, 'owner');
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1) {
    throw new InvalidArgumentError(
      "A lease's token must be a whole number >= 1: pass the lease that acquire() or renew() returned",
    );
  }
  return lease as JobLease;
}

/**
 * The lease after `owner` asks for it at `now`: taken afresh (token + 1) when it was never taken
 * or lapsed, extended when `owner` holds it, undefined while another owner holds it.
 */
export function acquiredLease(
  stored: JobLease | undefined,
  job: string,
  owner: string,
  ttlMs: number,
  now: number,
): JobLease | undefined {
  const expiresAt = now + ttlMs;
  if (!stored || stored.expiresAt <= now) {
    return { job, owner, token: (stored?.token ?? 0) + 1, expiresAt };
  }
  return stored.owner === owner ? { ...stored, expiresAt } : undefined;
}

/** Whether `lease` is the stored one (same token and owner) and unexpired at `now`. */
export function holdsLease(stored: JobLease | undefined, lease: JobLease, now: number): boolean {
  return (
    stored !== undefined &&
    stored.token === lease.token &&
    stored.owner === lease.owner &&
    stored.expiresAt > now
  );
}

/**
 * The error of a unit of work fenced by a lease its job no longer holds. Names the job and the
 * token (no secret in either), so an operator can match it with the lease's holder.
 */
export function leaseLostError(lease: JobLease): LeaseLostError {
  return new LeaseLostError(
    `Job '${lease.job}' no longer holds its lease (token ${lease.token}): another replica may hold it now. Nothing of this write was stored; the job stops and the lease holder carries on`,
  );
}
