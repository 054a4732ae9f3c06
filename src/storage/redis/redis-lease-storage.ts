import { IntegrityError } from '../../errors/index.js';
import { checkJobLease, checkLeaseName, checkLeaseTtl, leaseLostError } from '../job-leases.js';
import type { LeaseStorage } from '../storage.ports.js';
import type { JobLease } from '../storage.records.js';
import {
  ACQUIRE_LEASE_SCRIPT,
  LEASE_PIN_PREFIX,
  PIN_LEASE_SCRIPT,
  LEASE_REPLY,
  RELEASE_LEASE_SCRIPT,
  READ_LEASE_SCRIPT,
  RENEW_LEASE_SCRIPT,
} from './redis-lease-scripts.js';
import type { RedisSessionReads } from './redis-session-reads.js';

/** Names of the lease scripts on the client; namespaced, as a host client may define its own. */
const ACQUIRE_COMMAND = 'nesAcquireJobLease';
const RENEW_COMMAND = 'nesRenewJobLease';
const RELEASE_COMMAND = 'nesReleaseJobLease';
const READ_COMMAND = 'nesReadJobLease';
const PIN_COMMAND = 'nesPinJobLease';

/**
 * How long a passed fence keeps the lease from being taken afresh, at most, if its unit of work
 * never ends (its process died): each fence and each commit check pins it this long again, and
 * the unit drops its pin when it ends.
 */
export const LEASE_PIN_MS = 30_000;

type ScriptCommand = (...args: string[]) => Promise<unknown>;

const WHOLE_NUMBER = /^\d{1,16}$/;

/** The IntegrityError for a lease hash this module did not write. */
function damagedLease(job: string, reason: string): IntegrityError {
  return new IntegrityError(
    `The stored lease of job '${job}' in Redis is damaged (${reason}): it was not written by this module or was altered outside it. Delete its key to let the job run again, once no replica acts for it`,
  );
}

/** The lease hash field by which unit of work `unitId` pins the lease. */
export const pinField = (unitId: string): string => `${LEASE_PIN_PREFIX}${unitId}`;

/** A whole number of at most 2^53-1 from a reply or hash field; undefined when it is not one. */
function wholeNumber(value: unknown, min: number): number | undefined {
  const text = Buffer.isBuffer(value) ? value.toString('latin1') : value;
  if (typeof text !== 'string' && typeof text !== 'number') return undefined;
  const parsed = typeof text === 'number' ? text : WHOLE_NUMBER.test(text) ? Number(text) : NaN;
  return Number.isSafeInteger(parsed) && parsed >= min ? parsed : undefined;
}

/**
 * Job leases on Redis: a hash per job (owner, token, expiresAt) under a hash tag of its own,
 * changed only by Lua scripts that read the server's clock, so each change is one atomic step
 * and works on a Cluster (one key, one slot). The hash never expires and release keeps it, so
 * the token never goes back; a lapsed lease is simply one whose expiresAt has passed. A unit of
 * work fenced by the lease adds a field `pin:<unit>` (a deadline) while it runs: acquire takes
 * no lease afresh while a pin is unexpired.
 */
export class RedisLeaseStorage implements LeaseStorage {
  constructor(private readonly reads: RedisSessionReads) {
    const { client } = reads;
    client.defineCommand(ACQUIRE_COMMAND, { numberOfKeys: 1, lua: ACQUIRE_LEASE_SCRIPT });
    client.defineCommand(RENEW_COMMAND, { numberOfKeys: 1, lua: RENEW_LEASE_SCRIPT });
    client.defineCommand(RELEASE_COMMAND, { numberOfKeys: 1, lua: RELEASE_LEASE_SCRIPT });
    client.defineCommand(READ_COMMAND, { numberOfKeys: 1, lua: READ_LEASE_SCRIPT });
    client.defineCommand(PIN_COMMAND, { numberOfKeys: 1, lua: PIN_LEASE_SCRIPT });
  }

  /**
   * Fences a unit of work (`unitId`) with `lease`: throws LeaseLostError unless the lease still
   * has its owner and token and is unexpired by the server's clock, or this unit pinned it
   * before; then pins it for the unit for {@link LEASE_PIN_MS}, so nobody takes it afresh
   * until {@link unpin} (or the pin lapses).
   */
  async pin(lease: JobLease, unitId: string): Promise<void> {
    checkJobLease(lease);
    const held = await this.run(PIN_COMMAND, lease.job, lease.owner, [
      lease.owner,
      String(lease.token),
      pinField(unitId),
      String(LEASE_PIN_MS),
    ]);
    if (!held) throw leaseLostError(lease);
  }

  /** Drops the pin of unit `unitId` on `job`'s lease (its unit of work ended). */
  async unpin(job: string, unitId: string): Promise<void> {
    const key = this.reads.layout.jobLease(job);
    await this.reads.call(() => this.reads.client.hdel(key, pinField(unitId)));
  }

  async acquire(job: string, owner: string, ttlMs: number): Promise<JobLease | undefined> {
    checkLeaseName(job, 'job');
    checkLeaseName(owner, 'owner');
    checkLeaseTtl(ttlMs);
    return this.run(ACQUIRE_COMMAND, job, owner, [owner, String(ttlMs)]);
  }

  async renew(lease: JobLease, ttlMs: number): Promise<JobLease | undefined> {
    checkJobLease(lease);
    checkLeaseTtl(ttlMs);
    return this.run(RENEW_COMMAND, lease.job, lease.owner, [
      lease.owner,
      String(lease.token),
      String(ttlMs),
    ]);
  }

  async release(lease: JobLease): Promise<void> {
    checkJobLease(lease);
    await this.run(RELEASE_COMMAND, lease.job, lease.owner, [lease.owner, String(lease.token)]);
  }

  async current(job: string): Promise<JobLease | undefined> {
    checkLeaseName(job, 'job');
    return this.run(READ_COMMAND, job, undefined, []);
  }

  /**
   * Runs a lease script; the lease it replied with, or undefined when it replied none.
   * `owner` is the caller's, or undefined for the stored one the reply carries.
   */
  private async run(
    command: string,
    job: string,
    owner: string | undefined,
    args: string[],
  ): Promise<JobLease | undefined> {
    const client = this.reads.client;
    const script = (client as unknown as Record<string, ScriptCommand>)[command];
    const key = this.reads.layout.jobLease(job);
    const reply = await this.reads.call(() => script.call(client, key, ...args));
    const [status, token, expiresAt, storedOwner] = Array.isArray(reply)
      ? (reply as unknown[])
      : [];
    switch (Number(status)) {
      case LEASE_REPLY.none:
        return undefined;
      case LEASE_REPLY.lease: {
        const lease = {
          job,
          owner: owner ?? (typeof storedOwner === 'string' ? storedOwner : ''),
          token: wholeNumber(token, 1),
          expiresAt: wholeNumber(expiresAt, 0),
        };
        if (lease.token === undefined || lease.expiresAt === undefined) {
          throw damagedLease(job, 'a token or expiry beyond 2^53');
        }
        return lease as JobLease;
      }
      case LEASE_REPLY.damaged:
        throw damagedLease(job, 'another type of key, or missing or malformed fields');
      default:
        throw new Error('Unexpected reply from a Redis lease script');
    }
  }
}
