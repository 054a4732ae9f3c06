import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import type { Cluster, Redis } from 'ioredis';
import { backoffDelay, type BackoffPolicy } from '../../errors/backoff.js';
import { ConfigurationError, IntegrityError, StorageUnavailableError } from '../../errors/index.js';
import { bindReadScope, bindWriteScope, type AdapterReadScope } from '../adapter-scope.js';
import type {
  AuditStorage,
  ErasureLedgerStorage,
  LeaseStorage,
  LegalHoldStorage,
  MaintenanceUnsupported,
  SessionReadScope,
  SessionStorage,
  SessionWriteScope,
  StorageMaintenance,
} from '../storage.ports.js';
import type { JobLease, SessionRef } from '../storage.records.js';
import { auditChainAhead, RedisAuditStorage } from './redis-audit-storage.js';
import {
  COMMIT_OP,
  COMMIT_REPLY,
  COMMIT_SCRIPT,
  FENCE_REPLY,
  FENCE_SCRIPT,
  SESSION_COMMIT_KEYS,
} from './redis-commit-script.js';
import {
  failClosedOnAudit,
  redisAuditKeyWrongType,
  redisUnavailableReason,
  withinDeadline,
} from './redis-errors.js';
import { RedisExpiredItemScan } from './redis-expiry-index.js';
import { RedisIdleSessionScan } from './redis-idle-sessions.js';
import { DEFAULT_REDIS_KEY_PREFIX, RedisKeyLayout } from './redis-keys.js';
import { leaseLostError } from '../job-leases.js';
import { pinField, RedisLeaseStorage } from './redis-lease-storage.js';
import { createRedisReadScope } from './redis-read-scope.js';
import { RedisSessionReads, isRedisCluster, type RedisClient } from './redis-session-reads.js';
import { RedisErasureLedgerStorage, RedisLegalHoldStorage } from './redis-hold-storage.js';
import { RedisSubjectIndex } from './redis-subject-index.js';
import { RedisUnitOfWork, type UnitCommit } from './redis-unit-of-work.js';

/**
 * Options of {@link RedisSessionStorage}. Pass exactly one of `client` and `url`.
 *
 * @publicApi
 */
export interface RedisSessionStorageOptions {
  /**
   * An ioredis client (standalone or Cluster) owned by the host; not closed by close().
   * A low `maxRetriesPerRequest` (e.g. 1) makes calls fail fast while Redis is down.
   */
  client?: Redis | Cluster;
  /** Connection URL when no client is given, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS). */
  url?: string;
  /** Prefix of every key. @default 'nes:' */
  keyPrefix?: string;
  /**
   * Redis expiry backstop: keys of a session whose items all expire are deleted by Redis this
   * long after the last item expires. @default 86400
   */
  expiryBackstopSeconds?: number;
  /** Attempts of one unit of work under write conflicts before StorageUnavailableError. @default 100 */
  maxConflictRetries?: number;
  /**
   * Bound of every Redis round trip, in ms, on the module's own client and a host's client
   * alike: a reply that does not come (a connection cut mid-call, a reply lost on the wire, a
   * server gone silent) fails the call with a retryable StorageUnavailableError instead of
   * leaving it pending. A write whose reply was lost is then settled with one more bounded
   * round trip (was it applied? if not, it never will be), so a write settles within twice this.
   * Keep it above the slowest command you expect (a large batch). @default 5000
   */
  commandTimeoutMs?: number;
  /**
   * With `url`: how long {@link RedisSessionStorage.verifyConnection} (run at module startup)
   * waits for Redis to answer, and the client's TCP connect timeout. @default 5000
   */
  connectTimeoutMs?: number;
}

/** Defaults of {@link RedisSessionStorageOptions}. */
export const REDIS_STORAGE_DEFAULTS = {
  keyPrefix: DEFAULT_REDIS_KEY_PREFIX,
  expiryBackstopSeconds: 86_400,
  maxConflictRetries: 100,
  commandTimeoutMs: 5000,
  connectTimeoutMs: 5000,
} as const;

/** Name of the commit script on the client; namespaced, as a host client may define its own. */
const COMMIT_COMMAND = 'nesCommitSessionUnit';
/** Name of the script that settles a commit whose reply was lost. */
const FENCE_COMMAND = 'nesFenceLostCommit';

/** Reply errors meaning the url's credentials were refused. */
const CREDENTIAL_REPLIES = ['WRONGPASS', 'NOAUTH', 'ERR invalid password', 'ERR invalid username'];
/** Reply errors meaning the url's database number does not exist on the server. */
const DATABASE_REPLIES = ['ERR DB index is out of range', 'ERR invalid DB index'];

type FenceCommand = (
  sessionKey: string,
  commitId: string,
  expectedVersion: string,
) => Promise<unknown>;

/** The number of keys, then the keys (the session's five, audit keys, lease keys), then ARGV. */
type CommitCommand = (numberOfKeys: number, ...args: Array<string | Buffer>) => Promise<unknown>;

const logger = new Logger('RedisSessionStorage');

/**
 * Storage on Redis (standalone or Cluster) through ioredis.
 *
 * Each session lives in five keys under one hash tag (one cluster slot). A unit of work reads a
 * snapshot in one round trip, buffers its writes and commits them with one Lua script that
 * compares the session's version first; a unit that lost the race runs again from scratch.
 * Redis expiry is only a backstop behind the module's own expiry filtering. The session's audit
 * chain lives in the same slot and commits in the same script, never under the expiry. Items
 * with an expiry are indexed per session by (expiresAt, seq) in the same script, for the
 * expired-item scan ({@link StorageMaintenance.listExpiredItems}).
 *
 * The lease fence ({@link SessionWriteScope.fence}) checks the job's lease by the server's clock
 * when called and pins it for the unit (a field of the lease hash): until the unit ends, or at
 * most 30 s (`LEASE_PIN_MS`) after its last check if its process dies, nobody takes the lease
 * afresh, even once it lapsed (as a locked lease row on SQL). The commit checks it again: on a
 * standalone server inside the commit script (the lease hash passed as an extra key), so the
 * unit commits only while its lease is held or pinned by it. On a Cluster the lease hash lives
 * in another slot than the session and no script can read both: the lease is checked (and
 * pinned again) in a round trip of its own immediately before the commit script. A unit paused
 * for longer than the pin between that check and its commit can then still commit after another
 * owner took the lease, but only if no other writer, the new holder included, committed to the
 * session since the unit read it (the version compare-and-set): its deletions are of members
 * it read and its audit count is what it removed, so nothing is deleted or counted twice.
 *
 * Legal holds and the erasure ledger live in slots of their own (hash tags 'holds' and
 * 'erasures'), each call one script. A unit's hold check reads the holds' slot directly: a hold
 * is stored before its placer locks each session it covers, which bumps the session version,
 * so a unit that checked before either committed first or runs again and sees it. Sessions are
 * found by subject through an index per (tenant, subject) written before the creating commit
 * (see redis-subject-index.ts).
 *
 * @publicApi
 */
export class RedisSessionStorage implements SessionStorage {
  readonly backend = 'redis';
  /** Prefix of every key this storage writes. */
  readonly keyPrefix: string;
  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  private readonly reads: RedisSessionReads;
  private readonly readScope: AdapterReadScope;
  /**
   * Cross-session scans, on standalone Redis and on a Cluster: each SCANs every master (the
   * idle-session scan reads every session hash per page, see redis-idle-sessions.ts; the
   * data-key scans of KEK rotation, key status and re-encryption read every session's keys
   * hash, a master at a time).
   */
  readonly maintenance: StorageMaintenance | MaintenanceUnsupported;
  /**
   * Audit chains (a session's in its slot, the tenant's control chain and index in the tenant's)
   * and the tenant's checkpoints (in the tenant's slot).
   */
  readonly audit: AuditStorage &
    Required<Pick<AuditStorage, 'appendCheckpoint' | 'latestCheckpoint'>>;
  private readonly auditChains: RedisAuditStorage;
  /** Job leases: a hash per job in a slot of its own, changed by scripts on the server's clock. */
  readonly leases: LeaseStorage;
  /** Legal holds: every key in one slot of their own, each call one script. */
  readonly holds: LegalHoldStorage;
  /** The erasure ledger: every key in one slot of its own, each call one script. */
  readonly erasureLedger: ErasureLedgerStorage;
  private readonly subjectIndex: RedisSubjectIndex;
  private readonly leaseStorage: RedisLeaseStorage;
  private readonly onCluster: boolean;
  private readonly expiryBackstopMs: number;
  /** Re-runs of a unit that lost a race: waits below 2 * 1.05^n ms, at most 20 ms. */
  private readonly conflictBackoff: BackoffPolicy;
  private readonly commandTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  /** host:port of `url`, for messages (never the credentials). */
  private readonly urlHost: string | undefined;
  /** What the module's own client last reported while connecting (no secrets). */
  private readonly connection: ConnectionReport = { replies: [] };
  private closing: Promise<void> | undefined;

  constructor(options: RedisSessionStorageOptions) {
    const { client, url } = options;
    if ((client === undefined) === (url === undefined)) {
      throw new ConfigurationError(
        client
          ? 'RedisSessionStorage takes either `client` or `url`, not both; pass only one'
          : 'RedisSessionStorage needs a Redis connection: pass `client` (an ioredis Redis or Cluster you own) or `url` (e.g. redis://127.0.0.1:6379/0, rediss:// for TLS)',
      );
    }
    const layout = new RedisKeyLayout(options.keyPrefix ?? REDIS_STORAGE_DEFAULTS.keyPrefix);
    const backstopSeconds =
      options.expiryBackstopSeconds ?? REDIS_STORAGE_DEFAULTS.expiryBackstopSeconds;
    if (!Number.isSafeInteger(backstopSeconds) || backstopSeconds < 0) {
      throw new ConfigurationError(
        `Redis expiryBackstopSeconds must be a whole number of seconds >= 0; got ${String(backstopSeconds)}`,
      );
    }
    const maxConflictRetries =
      options.maxConflictRetries ?? REDIS_STORAGE_DEFAULTS.maxConflictRetries;
    if (!Number.isSafeInteger(maxConflictRetries) || maxConflictRetries < 1) {
      throw new ConfigurationError(
        `Redis maxConflictRetries must be a whole number >= 1; got ${String(maxConflictRetries)}`,
      );
    }
    const commandTimeoutMs = positiveMs(options, 'commandTimeoutMs');
    const connectTimeoutMs = positiveMs(options, 'connectTimeoutMs');
    if (client !== undefined && options.connectTimeoutMs !== undefined) {
      throw new ConfigurationError(
        "Redis connectTimeoutMs applies to `url` only: a host's client connects with its own `connectTimeout`; drop connectTimeoutMs or pass `url`",
      );
    }
    if (url !== undefined) assertRedisUrl(url);

    this.keyPrefix = layout.prefix;
    this.expiryBackstopMs = backstopSeconds * 1000;
    this.conflictBackoff = {
      firstDelayMs: 2.1,
      growth: 1.05,
      maxDelayMs: 20,
      maxAttempts: maxConflictRetries,
    };
    this.commandTimeoutMs = commandTimeoutMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.ownsClient = client === undefined;
    this.urlHost = url === undefined ? undefined : new URL(url).host;
    this.client = client ?? createRedisClient(url!, connectTimeoutMs, this.connection);
    // EVALSHA with an EVAL fallback when the server lost its script cache (restart, failover).
    // The key count comes first in each call: a unit adds two keys per audit chain it appends to.
    this.client.defineCommand(COMMIT_COMMAND, { lua: COMMIT_SCRIPT });
    this.client.defineCommand(FENCE_COMMAND, { numberOfKeys: 1, lua: FENCE_SCRIPT });
    this.reads = new RedisSessionReads(this.client, layout, commandTimeoutMs);

    this.auditChains = new RedisAuditStorage(this.reads, this.conflictBackoff);
    this.audit = this.auditChains;
    this.leaseStorage = new RedisLeaseStorage(this.reads);
    this.leases = this.leaseStorage;
    this.holds = new RedisLegalHoldStorage(this.reads);
    this.erasureLedger = new RedisErasureLedgerStorage(this.reads);
    this.subjectIndex = new RedisSubjectIndex(this.reads);
    this.readScope = createRedisReadScope(this.reads, this.holds);
    this.onCluster = isRedisCluster(this.client);
    const reads = this.reads;
    const expiredItems = new RedisExpiredItemScan(reads, async (ref) => {
      await this.runUnit(async (unit) => {
        await unit.rebuildExpiryIndex(ref);
      });
    });
    const idleSessions = new RedisIdleSessionScan(reads);
    // Every scan covers every master of a Cluster.
    this.maintenance = {
      supported: true,
      listDataKeysWrappedByOtherKek: (kekId, cursor, limit) =>
        reads.dataKeysWrappedByOtherKek(kekId, cursor, limit),
      countDataKeysByKek: () => reads.countDataKeysByKek(),
      listRetiringDataKeys: (cursor, limit) => reads.retiringDataKeys(cursor, limit),
      dataKeyAges: (createdBefore, exceptTenantId) =>
        reads.dataKeyAges(createdBefore, exceptTenantId),
      listExpiredItems: (now, cursor, limit) => expiredItems.listExpiredItems(now, cursor, limit),
      listIdleSessions: (before, cursor, limit) =>
        idleSessions.listIdleSessions(before, cursor, limit),
      listSessionsOfSubject: (tenantId, subjectId, afterSessionId, limit) =>
        this.subjectIndex.listSessionsOfSubject(tenantId, subjectId, afterSessionId, limit),
    };
  }

  /**
   * Checks that Redis answers, for a storage built from `url`: a PING within `connectTimeoutMs`.
   * Run once at module startup, so a wrong url fails the start instead of every later call.
   * A host's `client` is not checked (its connection is the host's to manage): calls on it fail
   * with StorageUnavailableError until it connects.
   *
   * @throws ConfigurationError when Redis refuses the url's credentials or database number.
   * @throws StorageUnavailableError when Redis does not answer in time (down, wrong host/port).
   */
  async verifyConnection(): Promise<void> {
    if (!this.ownsClient) return;
    const where = `Redis at ${this.urlHost} (options.storage.url)`;
    let failure: unknown;
    try {
      await withinDeadline(this.client.ping(), this.connectTimeoutMs);
    } catch (error) {
      failure = error;
    }
    // Reply errors are matched by their text only: an AUTH error carries the password in its
    // command arguments, so none of these errors is kept as a cause.
    const replies = [failure instanceof Error ? failure.message : '', ...this.connection.replies];
    if (replies.some((reply) => CREDENTIAL_REPLIES.some((code) => reply.startsWith(code)))) {
      throw new ConfigurationError(
        `${where} refused the credentials (WRONGPASS/NOAUTH): put a user and password the server accepts in the url (redis://user:password@host:port/db)`,
      );
    }
    if (replies.some((reply) => DATABASE_REPLIES.some((code) => reply.startsWith(code)))) {
      throw new ConfigurationError(
        `${where} has no database with the url's number (ERR DB index is out of range): use one the server has (0-15 unless its 'databases' setting says otherwise)`,
      );
    }
    if (failure !== undefined) {
      const reason =
        this.connection.networkReason ?? redisUnavailableReason(failure) ?? 'no answer';
      throw new StorageUnavailableError(
        `${where} did not answer within ${this.connectTimeoutMs} ms (${reason}): check that it runs and that the url's host and port are right`,
      );
    }
  }

  /** Runs read-only work; each call reads the current state (no snapshot across calls). */
  read<T>(ref: SessionRef, work: (scope: SessionReadScope) => Promise<T>): Promise<T> {
    return work(bindReadScope(this.readScope, ref));
  }

  /**
   * Runs work optimistically: reads come from a snapshot plus the work's own writes, and the
   * writes commit in one script only if no other writer committed to the session meanwhile.
   * Otherwise `work` runs again (after a short random pause), up to `maxConflictRetries` times.
   */
  transaction<T>(ref: SessionRef, work: (scope: SessionWriteScope) => Promise<T>): Promise<T> {
    return this.runUnit((unit) => work(bindWriteScope(unit.scope, ref)));
  }

  /** Runs `work` on a fresh unit of work and commits it, again after each conflict. */
  private async runUnit<T>(work: (unit: RedisUnitOfWork) => Promise<T>): Promise<T> {
    const leaseFence = (lease: JobLease, unitId: string) => this.leaseStorage.pin(lease, unitId);
    const holdsCovering = (tenantId: string, sessionId: string, subjectId: string | null) =>
      this.holds.activeCovering(tenantId, sessionId, subjectId);
    for (let attempt = 1; ; attempt++) {
      const unit = new RedisUnitOfWork(
        this.reads,
        this.expiryBackstopMs,
        leaseFence,
        holdsCovering,
      );
      try {
        let result: T;
        try {
          result = await work(unit);
        } catch (error) {
          // A failure caused by reading a session that changed under the unit is a conflict.
          if (!unit.invalidated) throw error;
          await this.pauseBeforeRetry(attempt);
          continue;
        }
        // A fence that failed refuses the commit, also when the work caught its error.
        if (unit.lost) throw unit.lost;
        if (!unit.invalidated) {
          const described = unit.describeCommit(Date.now());
          if (!described) return result;
          const commit = await this.keepingHeldSessions(described);
          if (await this.commitFailingClosed(commit)) {
            await this.dropStaleSubjectEntries(commit);
            return result;
          }
        }
      } finally {
        await this.unpinLeases(unit);
      }
      await this.pauseBeforeRetry(attempt);
    }
  }

  /**
   * The commit with PERSIST instead of an expiry while an active legal hold covers the session:
   * the expiry backstop must not drop what a hold keeps. Read right before each attempt's commit;
   * a hold placed after this read is followed by its placer's lock of the session, which either
   * conflicts with this commit (it runs again and reads the hold) or commits after it and
   * persists the keys itself.
   */
  private async keepingHeldSessions(commit: UnitCommit): Promise<UnitCommit> {
    const target = commit.expiryHoldCheck;
    if (!target) return commit;
    const held = await this.holds.activeCovering(
      target.tenantId,
      target.sessionId,
      target.subjectId,
    );
    return held.length > 0 ? { ...commit, expireAt: 0 } : commit;
  }

  /**
   * After a commit that forgot the session's subject or deleted the session: its subject index
   * entry goes, unless a later creation wrote it again. Best effort: an entry left behind is
   * skipped by lookups (and removed by the next one that meets it).
   */
  private async dropStaleSubjectEntries(commit: UnitCommit): Promise<void> {
    await Promise.all(
      commit.staleSubjectEntries.map((entry) =>
        this.subjectIndex.removeStale(entry, commit.committedVersion).catch(() => false),
      ),
    );
  }

  /**
   * Drops the pins a unit of work put on its leases, once it ended: others may take them again.
   * Best effort: a pin that stays (Redis unreachable) lapses by itself.
   */
  private async unpinLeases(unit: RedisUnitOfWork): Promise<void> {
    await Promise.all(
      [...unit.pinnedJobs].map((job) =>
        this.leaseStorage.unpin(job, unit.unitId).catch(() => undefined),
      ),
    );
  }

  /** Quits the client if this storage created it (a host's client stays open). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.ownsClient ? quitClient(this.client as Redis) : Promise.resolve();
    return this.closing;
  }

  /**
   * Commits; a unit that carries audit records fails closed with AuditWriteError when Redis
   * refuses the commit for a reason a retry cannot fix (its records and its change are one
   * script: the change cannot go in without them).
   */
  private commitFailingClosed(commit: UnitCommit): Promise<boolean> {
    if (commit.auditChains.length === 0) return this.commit(commit);
    return failClosedOnAudit(() => this.commit(commit));
  }

  /** True when applied, false on a conflict. */
  private async commit(commit: UnitCommit): Promise<boolean> {
    // The id pointers live in other slots, so they cannot be part of the script: written first,
    // a failed commit leaves a pointer to a key that does not exist, which reads as "no key".
    // They never expire: the session they point to may live on, and a stale one costs a few
    // bytes and answers "no key", like a key that was never stored.
    await Promise.all([
      ...commit.newDataKeyIds.map((dekId) =>
        this.reads.call(() => this.client.set(this.reads.layout.dataKeyPointer(dekId), commit.tag)),
      ),
      // The tenant's chain index and registries live in the tenant's slot: written first too, so
      // a committed record always has its entries (an entry with no record is skipped on reads).
      this.auditChains.registerChains(commit.newAuditRegistrations),
      // A session created with a subject joins the subject index first, in the index's slot: a
      // committed session is always in it (an entry whose commit failed is skipped on lookups).
      ...(commit.subjectIndexEntry ? [this.subjectIndex.add([commit.subjectIndexEntry])] : []),
    ]);
    const reply = await this.send(commit, commit.auditIndexChecks);
    if (reply !== COMMIT_REPLY.auditUnregistered) return reply === COMMIT_REPLY.applied;
    // A chain starts records of a subject or actor it has none of yet: it joins their
    // registries, then the commit goes again without the check (nothing was written).
    await this.auditChains.registerChains(commit.auditRegistrations);
    return (await this.send(commit, [])) === COMMIT_REPLY.applied;
  }

  /**
   * Runs the commit script with `checks` after the unit's ops; returns applied, conflict or
   * (with checks) unregistered, and throws for the other replies.
   */
  private async send(commit: UnitCommit, checks: readonly string[]): Promise<number> {
    // Sent once by a client this storage created; a host client may resend it after a
    // reconnect, which the script recognises by the commit id and does not apply twice.
    const run = (this.client as unknown as Record<string, CommitCommand>)[COMMIT_COMMAND];
    const { keys } = commit;
    const commitId = randomBytes(12).toString('base64url');
    // A lease hash is in a slot of its own. Standalone: the script checks it with the writes.
    // Cluster: checked right before the script, which cannot read it (see the class JSDoc).
    const leaseKeys: string[] = [];
    const leaseChecks: string[] = [];
    for (const lease of commit.leases) {
      if (this.onCluster) {
        await this.leaseStorage.pin(lease, commit.unitId);
        continue;
      }
      leaseKeys.push(this.reads.layout.jobLease(lease.job));
      const index = SESSION_COMMIT_KEYS + commit.auditKeys.length + leaseKeys.length;
      leaseChecks.push(
        COMMIT_OP.leaseFence,
        String(index),
        lease.owner,
        String(lease.token),
        pinField(commit.unitId),
      );
    }
    let reply: unknown;
    try {
      reply = await this.reads.call(() =>
        run.call(
          this.client,
          SESSION_COMMIT_KEYS + commit.auditKeys.length + leaseKeys.length,
          keys.session,
          keys.items,
          keys.dataKeys,
          keys.operations,
          keys.expiry,
          ...commit.auditKeys,
          ...leaseKeys,
          commit.expectedVersion,
          commitId,
          String(commit.expireAt),
          ...leaseChecks,
          ...commit.ops,
          ...checks,
        ),
      );
    } catch (error) {
      if (!(error instanceof StorageUnavailableError)) throw error;
      return (await this.settleLostCommit(commit, commitId))
        ? COMMIT_REPLY.applied
        : COMMIT_REPLY.conflict;
    }
    switch (Number(reply)) {
      case COMMIT_REPLY.applied:
      case COMMIT_REPLY.conflict:
      case COMMIT_REPLY.auditUnregistered:
        return Number(reply);
      case COMMIT_REPLY.counterBehind:
        throw new IntegrityError(
          `The sequence counter (next_seq) of ${commit.owner} in Redis is behind its stored items: the session hash was rolled back, lost or altered outside this module. Nothing was written; restore the session from a backup or clear it`,
        );
      case COMMIT_REPLY.auditAhead:
        throw auditChainAhead(commit.auditChains);
      case COMMIT_REPLY.auditWrongType:
        throw redisAuditKeyWrongType();
      case COMMIT_REPLY.leaseLost:
        throw leaseLostError(commit.leases[0]);
      case COMMIT_REPLY.expiryIndexWrongType:
        throw new IntegrityError(
          `The expiry index of ${commit.owner} in Redis (${keys.expiry}) holds another type of value than this module writes: it was altered outside this module. Nothing was written; delete that key and the field 'expiry_indexed' of the session hash, and the next expired-item scan rebuilds it`,
        );
      case COMMIT_REPLY.itemMoved:
        throw new IntegrityError(
          `An item to delete from ${commit.owner} in Redis changed or moved after it was read, outside this module. Nothing was written; restore the session from a backup or clear it`,
        );
      default:
        throw new Error('Unexpected reply from the Redis commit script');
    }
  }

  /**
   * A commit got no reply (the connection broke, or the reply never came): it may or may not
   * have been applied. One more bounded round trip settles it: applied (true, as if the reply
   * had come), or fenced off so that it never applies, then a retryable error saying nothing
   * was written. Only when that round trip fails too does the caller hear "unknown".
   */
  private async settleLostCommit(commit: UnitCommit, commitId: string): Promise<boolean> {
    const fence = (this.client as unknown as Record<string, FenceCommand>)[FENCE_COMMAND];
    const undecided = new StorageUnavailableError(
      `Redis did not answer a write to ${commit.owner} (reply lost or connection broken) and could not tell whether it was applied: it may or may not be stored; check before you repeat it, or retry if it is idempotent (applyHistoryTransaction with the same operationId)`,
    );
    let settled: unknown;
    try {
      settled = await this.reads.call(() =>
        fence.call(this.client, commit.keys.session, commitId, commit.expectedVersion),
      );
    } catch {
      throw undecided;
    }
    if (Number(settled) === FENCE_REPLY.unknown) throw undecided;
    if (Number(settled) === FENCE_REPLY.applied) return true;
    throw new StorageUnavailableError(
      `Redis did not answer a write to ${commit.owner} in time (reply lost or connection broken); nothing was written; retry the call`,
    );
  }

  private async pauseBeforeRetry(attempt: number): Promise<void> {
    // Random, so writers that collided do not collide again in step; slowly growing.
    const delay = backoffDelay(this.conflictBackoff, attempt, 0);
    if (delay === undefined) {
      throw new StorageUnavailableError(
        `A write to the session kept conflicting with other writers (${attempt} attempts); retry the call`,
      );
    }
    await sleep(delay);
  }
}

function assertRedisUrl(url: string): void {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    // The URL may hold a password: never echo it.
    throw new ConfigurationError(
      'Redis url is not a valid URL; pass e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)',
    );
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new ConfigurationError(
      `Redis url must start with redis:// or rediss:// (TLS); got ${protocol}//. For a Cluster, pass an ioredis Cluster as \`client\``,
    );
  }
}

/** ioredis is an optional peer dependency: loaded only when the adapter builds a client. */
function loadIoredis(): typeof import('ioredis') {
  try {
    return createRequire(import.meta.url)('ioredis') as typeof import('ioredis');
  } catch (error) {
    throw new ConfigurationError(
      "The Redis storage needs the 'ioredis' package (5.x); install it: npm install ioredis@5 (TypeORM's peer range refuses 6.x)",
      { cause: error },
    );
  }
}

/** What the module's own client reported while (re)connecting: text of reply errors, no secrets. */
interface ConnectionReport {
  /** Messages of reply errors raised while connecting (AUTH, SELECT), latest last. */
  replies: string[];
  /** Code of the latest network failure (ECONNREFUSED, ENOTFOUND, ...). */
  networkReason?: string;
}

function createRedisClient(url: string, connectTimeoutMs: number, report: ConnectionReport): Redis {
  const { Redis } = loadIoredis();
  const client = new Redis(url, {
    // Fail a call fast while Redis is down (StorageUnavailableError) instead of queueing it.
    maxRetriesPerRequest: 1,
    // A commit whose reply was lost must never be sent again: it could apply twice. (ioredis
    // then drops such commands without settling them: every call carries its own deadline.)
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: true,
    connectTimeout: connectTimeoutMs,
    // Never give up reconnecting: the module recovers by itself once Redis is back.
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 16), 2000),
    lazyConnect: false,
  });
  // Without a listener ioredis prints every failed reconnect; log once per outage instead.
  let down = false;
  client.on('error', (error: unknown) => {
    const message = error instanceof Error ? error.message : '';
    if ((error as Error | undefined)?.name === 'ReplyError') {
      report.replies = [...report.replies.slice(-4), message];
    }
    const reason = redisUnavailableReason(error);
    if (reason !== undefined) report.networkReason = reason;
    if (down) return;
    down = true;
    logger.warn(
      `Redis connection failed (${reason ?? (error as Error)?.name ?? 'error'}); reconnecting, calls fail with StorageUnavailableError meanwhile`,
    );
  });
  client.on('ready', () => {
    report.networkReason = undefined;
    if (!down) return;
    down = false;
    logger.log('Redis connection restored');
  });
  return client;
}

/** A whole number of ms >= 1 from the options, or its default. */
function positiveMs(
  options: RedisSessionStorageOptions,
  name: 'commandTimeoutMs' | 'connectTimeoutMs',
): number {
  const value = options[name] ?? REDIS_STORAGE_DEFAULTS[name];
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ConfigurationError(
      `Redis ${name} must be a whole number of milliseconds >= 1; got ${String(value)}`,
    );
  }
  return value;
}

async function quitClient(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // Lost the connection meanwhile: disconnecting below is all that is left to do.
    }
  }
  client.disconnect();
}
