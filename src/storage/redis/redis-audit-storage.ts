import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay, type BackoffPolicy } from '../../errors/backoff.js';
import { AuditWriteError, IntegrityError, StorageUnavailableError } from '../../errors/index.js';
import { bindAuditChains, type AdapterAuditChains } from '../adapter-scope.js';
import type { AuditChainWrites, AuditStorage } from '../storage.ports.js';
import { compareAuditOrder } from '../audit-record-query.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  AuditRecordQuery,
  StoredAuditRecord,
  StoredCheckpoint,
} from '../storage.records.js';
import {
  AuditChainBuffer,
  chainRegistrations,
  indexEntryKeys,
  type AuditChainRegistration,
  type LockedAuditChain,
} from './redis-audit-appends.js';
import {
  APPEND_CHECKPOINT_SCRIPT,
  AUDIT_COMMIT_REPLY,
  AUDIT_COMMIT_SCRIPT,
  AUDIT_FENCE_REPLY,
  AUDIT_FENCE_SCRIPT,
  CHECKPOINT_APPEND_REPLY,
  READ_AUDIT_INDEX_SCRIPT,
  REGISTER_AUDIT_CHAIN_SCRIPT,
} from './redis-audit-scripts.js';
import { failClosedOnAudit, redisAuditKeyWrongType } from './redis-errors.js';
import type { RedisAuditChainKeys, RedisAuditTarget } from './redis-keys.js';
import {
  auditIndexTime,
  malformedAudit,
  malformedCheckpoint,
  packAuditChainLocation,
  packCheckpoint,
  packAuditIndexMember,
  redisAuditChainLabel,
  unpackAuditChainId,
  unpackAuditChainLocation,
  unpackAuditHead,
  unpackAuditIndexMember,
  unpackAuditRecord,
  unpackCheckpoint,
} from './redis-record-codec.js';
import type { RedisSessionReads } from './redis-session-reads.js';

/** Chain ids per read of a tenant's registry. */
const REGISTRY_PAGE = 500;
/** Index entries the access report reads from all chains at once, before any chain's refill. */
const REPORT_READ_BUDGET = 1000;

/** Names of the audit scripts on the client; namespaced, as a host client may define its own. */
const AUDIT_COMMIT_COMMAND = 'nesCommitAuditUnit';
const AUDIT_FENCE_COMMAND = 'nesFenceLostAuditCommit';
const REGISTER_CHAIN_COMMAND = 'nesRegisterAuditChain';
const READ_INDEX_COMMAND = 'nesReadAuditIndex';
const APPEND_CHECKPOINT_COMMAND = 'nesAppendAuditCheckpoint';

type ScriptCommand = (...args: Array<string | Buffer>) => Promise<unknown>;

/**
 * The audit trail on Redis. A chain is a records ZSET (score = seq) and a head STRING in its
 * session's slot (the tenant's slot for the control chain), so a session's unit of work commits
 * its records in the session's own commit script. Each tenant has an index of its chains in its
 * own slot, which {@link listHeads} reads to find heads in every other slot.
 *
 * The index entry of a chain is written before the commit that gives the chain its first record
 * (an idempotent script in the tenant's slot; it cannot join the commit, which runs in another
 * slot on a Cluster). A commit that then fails leaves an entry with no head, which listHeads
 * skips; the other order could leave a committed record missing from the index, and a checkpoint
 * that never saw the chain.
 *
 * The access report ({@link listRecords}) is served by indexes in the same two places. Each
 * chain has, in its own slot, a by-time ZSET of all its records and one per subject and per
 * actor its records name (score 0, member = time and seq as fixed-width hex, so BYLEX is
 * (time, seq) order; seq order is not time order, as writers' clocks differ), written by the
 * commit that writes the records. A subject's or actor's records span sessions, so slots: the
 * tenant's slot holds a registry per session, subject and actor listing the chains that may
 * hold its records, written idempotently before the commit like the chain index (a Cluster
 * cannot write it in the commit). A new chain registers unasked; an existing one only when its
 * commit would start a subject or actor index (the script checks that the index exists, else
 * refuses, writing nothing), so a commit costs no extra round trip once its actors are known.
 * A report reads the registry, then merges the listed chains' index pages in (time, chain id,
 * seq) order: it reads only chains about the target, each from the page's cursor on and at most
 * `limit` entries at a time.
 *
 * A tenant's signed checkpoints are a ZSET in the tenant's slot (score = seq), appended by a
 * script that refuses a seq already taken and never trimmed ({@link appendCheckpoint}).
 *
 * A write carrying audit records that Redis refuses for a reason a retry cannot fix (out of
 * memory, a script error, an audit key of another type) fails closed with AuditWriteError.
 */
export class RedisAuditStorage implements AuditStorage {
  constructor(
    private readonly reads: RedisSessionReads,
    /** The storage's policy for units that lost a race. */
    private readonly conflictBackoff: BackoffPolicy,
  ) {
    const { client } = reads;
    // The commit and the registration take a key count first: their keys vary per call.
    client.defineCommand(AUDIT_COMMIT_COMMAND, { lua: AUDIT_COMMIT_SCRIPT });
    client.defineCommand(AUDIT_FENCE_COMMAND, { numberOfKeys: 2, lua: AUDIT_FENCE_SCRIPT });
    client.defineCommand(REGISTER_CHAIN_COMMAND, { lua: REGISTER_AUDIT_CHAIN_SCRIPT });
    client.defineCommand(READ_INDEX_COMMAND, { numberOfKeys: 2, lua: READ_AUDIT_INDEX_SCRIPT });
    client.defineCommand(APPEND_CHECKPOINT_COMMAND, {
      numberOfKeys: 1,
      lua: APPEND_CHECKPOINT_SCRIPT,
    });
  }

  /**
   * Runs work appending to one chain, optimistically: the head it reads is compared at commit,
   * and the work runs again (a fresh buffer) when another unit appended meanwhile.
   */
  async transaction<T>(
    chain: AuditChainRef,
    work: (audit: AuditChainWrites) => Promise<T>,
  ): Promise<T> {
    const owner = { tenantId: chain.tenantId, sessionId: chain.sessionId };
    for (let attempt = 1; ; attempt++) {
      const buffer = new AuditChainBuffer();
      const adapter: AdapterAuditChains = {
        lockHead: async (locked) => {
          const keys = this.reads.layout.forAuditChain(locked);
          const stored = await this.reads.call(() => this.reads.client.getBuffer(keys.head));
          return buffer.lock(locked, keys, stored);
        },
        append: async (locked, _head, records) => buffer.append(locked, records),
      };
      const result = await work(bindAuditChains(adapter, owner, chain.chainId));
      const [pending] = buffer.appended;
      if (!pending || (await failClosedOnAudit(() => this.commit(pending)))) return result;
      const delay = backoffDelay(this.conflictBackoff, attempt, 0);
      if (delay === undefined) {
        throw new StorageUnavailableError(
          `An append to ${redisAuditChainLabel(chain)} kept conflicting with other writers (${attempt} attempts); retry the call`,
        );
      }
      await sleep(delay);
    }
  }

  async readChain(
    chain: AuditChainRef,
    afterSeq: number,
    limit: number,
  ): Promise<StoredAuditRecord[]> {
    if (limit <= 0) return [];
    const { records } = this.reads.layout.forAuditChain(chain);
    const reply = await this.reads.call(() =>
      this.reads.client.zrangeBuffer(
        records,
        `(${afterSeq}`,
        '+inf',
        'BYSCORE',
        'LIMIT',
        0,
        limit,
        'WITHSCORES',
      ),
    );
    const owner = redisAuditChainLabel(chain);
    const found: StoredAuditRecord[] = [];
    for (let index = 0; index < reply.length; index += 2) {
      const record = unpackAuditRecord(reply[index], owner);
      // Paging follows the score; a score that is not the record's own seq (or two records at
      // one seq) would make pages skip or repeat records, so it is damage, not a gap.
      if (Number(reply[index + 1].toString('latin1')) !== record.seq) {
        throw malformedAudit(owner, 'audit record', 'score differs from its seq');
      }
      if (found.length > 0 && record.seq <= found.at(-1)!.seq) {
        throw malformedAudit(owner, 'audit record', 'two records at one seq');
      }
      found.push(record);
    }
    return found;
  }

  async findHead(chain: AuditChainRef): Promise<AuditChainHeadRecord | undefined> {
    const { head } = this.reads.layout.forAuditChain(chain);
    const stored = await this.reads.call(() => this.reads.client.getBuffer(head));
    return stored ? unpackAuditHead(stored, chain) : undefined;
  }

  /**
   * Stores a tenant's checkpoint in its checkpoint zset unless one with its seq is there; false
   * when another replica took the seq first. Never overwrites.
   */
  async appendCheckpoint(checkpoint: StoredCheckpoint): Promise<boolean> {
    const key = this.reads.layout.auditCheckpoints(checkpoint.tenantId);
    const append = this.command(APPEND_CHECKPOINT_COMMAND);
    const packed = packCheckpoint(checkpoint);
    const reply = await this.reads.call(() => append(key, String(checkpoint.seq), packed));
    switch (Number(reply)) {
      case CHECKPOINT_APPEND_REPLY.stored:
        return true;
      case CHECKPOINT_APPEND_REPLY.taken:
        return false;
      default:
        throw new Error('Unexpected reply from the Redis checkpoint script');
    }
  }

  /**
   * The tenant's checkpoint with the highest seq. The two highest members are read: two at one
   * score would be a checkpoint copied or moved there.
   */
  async latestCheckpoint(tenantId: string): Promise<StoredCheckpoint | undefined> {
    const key = this.reads.layout.auditCheckpoints(tenantId);
    const reply = await this.reads.call(() =>
      this.reads.client.zrangeBuffer(key, 0, 1, 'REV', 'WITHSCORES'),
    );
    if (reply.length === 0) return undefined;
    const [, score, , nextScore] = reply.map((part) => part.toString('latin1'));
    if (nextScore !== undefined && Number(nextScore) === Number(score)) {
      throw malformedCheckpoint(tenantId, 'two checkpoints at one seq');
    }
    return unpackCheckpoint(reply[0], score, tenantId);
  }

  /**
   * Reads the tenant's index by chain id bytes (ZRANGE BYLEX compares bytes), then each
   * chain's head in its own slot. Index entries whose chain has no head yet (a first commit
   * that failed or is still under way) are skipped, reading on until `limit` heads are found.
   */
  async listHeads(
    tenantId: string,
    afterChainId: string,
    limit: number,
  ): Promise<AuditChainHeadRecord[]> {
    const index = this.reads.layout.auditIndex(tenantId);
    const { client } = this.reads;
    const heads: AuditChainHeadRecord[] = [];
    let after = afterChainId === '' ? '-' : `(${afterChainId}`;
    while (heads.length < limit) {
      const wanted = limit - heads.length;
      const members = await this.reads.call(() =>
        client.zrangeBuffer(index.chains, after, '+', 'BYLEX', 'LIMIT', 0, wanted),
      );
      if (members.length === 0) break;
      const chainIds = members.map((member) => unpackAuditChainId(member, tenantId));
      const chains = await this.locateChains(tenantId, chainIds);
      // One command per head: on a Cluster they live in as many slots as there are sessions.
      const stored = await Promise.all(
        chains.map((chain) =>
          this.reads.call(() => client.getBuffer(this.reads.layout.forAuditChain(chain).head)),
        ),
      );
      chains.forEach((chain, position) => {
        const head = stored[position];
        if (head) heads.push(unpackAuditHead(head, chain));
      });
      if (members.length < wanted) break;
      after = `(${chainIds.at(-1)!}`;
    }
    return heads;
  }

  /**
   * The access report from the indexes (see the class comment): the chains the target's
   * registry lists, each read through its index from the cursor on, merged in
   * (time, chain id by bytes, seq) order. A listed chain without matching records (a commit
   * that failed after its registration) gives nothing; an index entry whose record is not
   * there is skipped; an entry that disagrees with its record is an IntegrityError.
   */
  async listRecords(query: AuditRecordQuery): Promise<StoredAuditRecord[]> {
    const { by, limit } = query;
    const [target] = Object.values(by);
    // No record carries an id that is not well-formed Unicode (they are refused on append);
    // its UTF-8 key name would be another id's.
    if (limit <= 0 || !(query.fromTime < query.toTime) || !target.isWellFormed()) return [];
    const chains = await this.registeredChains(query.tenantId, by);
    const readers = chains.map(
      (chain) => new ChainIndexReader(this, chain, this.reads.layout.forAuditChain(chain), query),
    );
    const firstRead = Math.max(1, Math.min(limit, Math.ceil(REPORT_READ_BUDGET / chains.length)));
    await Promise.all(readers.map((reader) => reader.fill(firstRead)));
    const found: StoredAuditRecord[] = [];
    while (found.length < limit) {
      let next: ChainIndexReader | undefined;
      for (const reader of readers) {
        const head = reader.peek();
        if (head && (!next || compareAuditOrder(head, next.peek()!) < 0)) next = reader;
      }
      if (!next) break;
      found.push(next.take());
      if (!next.peek() && found.length < limit) await next.fill(limit - found.length);
    }
    return found;
  }

  /** The chains a tenant's registry for `target` lists, paged by chain id bytes. */
  private async registeredChains(
    tenantId: string,
    target: RedisAuditTarget,
  ): Promise<AuditChainRef[]> {
    const registry = this.reads.layout.auditRegistry(tenantId, target);
    const chains: AuditChainRef[] = [];
    for (let after = '-'; ;) {
      const members = await this.reads.call(() =>
        this.reads.client.zrangeBuffer(registry, after, '+', 'BYLEX', 'LIMIT', 0, REGISTRY_PAGE),
      );
      if (members.length === 0) return chains;
      const chainIds = members.map((member) => unpackAuditChainId(member, tenantId));
      chains.push(...(await this.locateChains(tenantId, chainIds)));
      if (members.length < REGISTRY_PAGE) return chains;
      after = `(${chainIds.at(-1)!}`;
    }
  }

  /** Where each chain lives, from the tenant's index; a chain without a location is damage. */
  private async locateChains(tenantId: string, chainIds: string[]): Promise<AuditChainRef[]> {
    const { locations } = this.reads.layout.auditIndex(tenantId);
    const stored = await this.reads.call(() =>
      this.reads.client.hmgetBuffer(locations, ...chainIds),
    );
    return chainIds.map((chainId, position) => {
      const location = stored[position];
      if (!location) {
        throw malformedAudit(
          redisAuditChainLabel({ chainId }),
          'audit chain index entry',
          'no location',
        );
      }
      return unpackAuditChainLocation(tenantId, chainId, location);
    });
  }

  /**
   * Up to `count` index entries of `index` (a zset of `chain`) between two BYLEX bounds, each
   * with the records stored at its seq.
   */
  async readIndex(
    chain: AuditChainRef,
    index: string,
    min: string,
    max: string,
    count: number,
  ): Promise<Array<{ readonly member: Buffer; readonly records: readonly Buffer[] }>> {
    const { records } = this.reads.layout.forAuditChain(chain);
    const read = this.command(`${READ_INDEX_COMMAND}Buffer`);
    const reply = await this.reads.call(() => read(index, records, min, max, String(count)));
    const owner = redisAuditChainLabel(chain);
    if (!Array.isArray(reply)) throw malformedAudit(owner, 'audit index', 'unexpected reply');
    return reply.map((entry: unknown) => {
      if (!Array.isArray(entry) || !entry.every((part) => Buffer.isBuffer(part)) || !entry[0]) {
        throw malformedAudit(owner, 'audit index', 'unexpected reply');
      }
      const [member, ...stored] = entry;
      return { member, records: stored };
    });
  }

  /**
   * Adds chains about to get records to their tenant's index and to the registries of their
   * session and of the subjects and actors the records name, before the commit that writes
   * them (see the class comment for why before). Idempotent.
   */
  async registerChains(
    chains: ReadonlyArray<AuditChainRef | AuditChainRegistration>,
  ): Promise<void> {
    const register = this.command(REGISTER_CHAIN_COMMAND);
    const { layout } = this.reads;
    await Promise.all(
      chains.map(async (entry) => {
        const { chain, subjectRefs, actorIds } =
          'chain' in entry ? entry : { chain: entry, subjectRefs: [], actorIds: [] };
        const index = layout.auditIndex(chain.tenantId);
        const registries = [
          ...(chain.sessionId === null ? [] : [{ sessionId: chain.sessionId }]),
          ...subjectRefs.map((subjectRef) => ({ subjectRef })),
          ...actorIds.map((actorId) => ({ actorId })),
        ].map((target) => layout.auditRegistry(chain.tenantId, target));
        const reply = await this.reads.call(() =>
          register(
            String(2 + registries.length),
            index.chains,
            index.locations,
            ...registries,
            chain.chainId,
            packAuditChainLocation(chain),
          ),
        );
        if (Number(reply) !== 1) {
          throw new AuditWriteError(
            `Audit ${redisAuditChainLabel(chain)} is already a chain of another session of the tenant; chain ids must be unique within a tenant. Nothing of the operation was stored`,
          );
        }
      }),
    );
  }

  /** True when applied, false on a conflict. */
  private async commit(pending: LockedAuditChain): Promise<boolean> {
    await this.registerChains(chainRegistrations([pending], true));
    const index = indexEntryKeys(pending);
    const reply = await this.send(pending, index.mustExist);
    if (reply !== AUDIT_COMMIT_REPLY.unregistered) return reply === AUDIT_COMMIT_REPLY.applied;
    // The chain starts records of a subject or actor it has none of yet: it joins their
    // registries, then the commit goes again without the check (nothing was written).
    await this.registerChains(chainRegistrations([pending]));
    return (await this.send(pending, [])) === AUDIT_COMMIT_REPLY.applied;
  }

  /** Runs the commit script; returns applied, conflict or unregistered, throws for the rest. */
  private async send(pending: LockedAuditChain, mustExist: readonly number[]): Promise<number> {
    const { keys } = pending;
    const index = indexEntryKeys(pending);
    const commitId = randomBytes(12).toString('base64url');
    const run = this.command(AUDIT_COMMIT_COMMAND);
    let reply: unknown;
    try {
      reply = await this.reads.call(() =>
        run(
          String(3 + index.keys.length),
          keys.records,
          keys.head,
          keys.fenced,
          ...index.keys,
          commitId,
          pending.headBytes,
          pending.newHead!,
          String(pending.members.length),
          mustExist.map((position) => String(3 + position)).join(' '),
          ...pending.members.flat(),
          ...index.entries.flatMap(([position, member]) => [String(3 + position), member]),
        ),
      );
    } catch (error) {
      if (!(error instanceof StorageUnavailableError)) throw error;
      return (await this.settleLostCommit(pending, commitId))
        ? AUDIT_COMMIT_REPLY.applied
        : AUDIT_COMMIT_REPLY.conflict;
    }
    switch (Number(reply)) {
      case AUDIT_COMMIT_REPLY.applied:
      case AUDIT_COMMIT_REPLY.conflict:
      case AUDIT_COMMIT_REPLY.unregistered:
        return Number(reply);
      case AUDIT_COMMIT_REPLY.ahead:
        throw auditChainAhead([pending.chain]);
      case AUDIT_COMMIT_REPLY.wrongType:
        throw redisAuditKeyWrongType();
      default:
        throw new Error('Unexpected reply from the Redis audit commit script');
    }
  }

  /**
   * An audit commit got no reply: one more bounded round trip tells whether it was applied
   * (true) or fences it off for good (a retryable error saying nothing was written).
   */
  private async settleLostCommit(pending: LockedAuditChain, commitId: string): Promise<boolean> {
    const label = redisAuditChainLabel(pending.chain);
    const fence = this.command(AUDIT_FENCE_COMMAND);
    let settled: unknown;
    try {
      settled = await this.reads.call(() =>
        fence(pending.keys.records, pending.keys.fenced, commitId, pending.members[0][1]),
      );
    } catch {
      throw new StorageUnavailableError(
        `Redis did not answer an append to ${label} (reply lost or connection broken) and could not tell whether it was applied: it may or may not be stored; read the chain before you repeat it`,
      );
    }
    if (Number(settled) === AUDIT_FENCE_REPLY.applied) return true;
    throw new StorageUnavailableError(
      `Redis did not answer an append to ${label} in time (reply lost or connection broken); nothing was written; retry the call`,
    );
  }

  private command(name: string): ScriptCommand {
    const client = this.reads.client;
    const command = (client as unknown as Record<string, ScriptCommand>)[name];
    return (...args) => command.call(client, ...args);
  }
}

/** The IntegrityError for records at or above a seq the head says is free. */
export function auditChainAhead(chains: readonly AuditChainRef[]): IntegrityError {
  const label = chains.map((chain) => redisAuditChainLabel(chain)).join(', ');
  return new IntegrityError(
    `The stored records of ${label} in Redis run past its head: the head was rolled back or deleted outside this module. Nothing was written; verify the chain and restore its head from a backup`,
  );
}

/**
 * One chain's side of an access report page: the index the query selects by, read from the
 * page's cursor on, a batch at a time, each entry checked against its record.
 */
class ChainIndexReader {
  private readonly index: string;
  private readonly owner: string;
  private buffered: StoredAuditRecord[] = [];
  /** BYLEX min of the next read; undefined once the index is read to `max`. */
  private min: string | undefined;
  private readonly max: string;

  constructor(
    private readonly storage: RedisAuditStorage,
    private readonly chain: AuditChainRef,
    keys: RedisAuditChainKeys,
    private readonly query: AuditRecordQuery,
  ) {
    const { by } = query;
    this.index =
      'sessionId' in by
        ? keys.byTime
        : 'subjectRef' in by
          ? keys.bySubject(by.subjectRef)
          : keys.byActor(by.actorId);
    this.owner = redisAuditChainLabel(chain);
    this.min = this.firstMin();
    // Record times are integers: time < toTime is time < ceil(toTime), and every member at a
    // time sorts after the bare time prefix.
    this.max =
      query.toTime > Number.MAX_SAFE_INTEGER ? '+' : `(${auditIndexTime(Math.ceil(query.toTime))}`;
  }

  /**
   * Where this chain's part of the page starts: at fromTime, or past the previous page's last
   * record: for a chain before it by bytes, past its time; after it, at its time; for its own
   * chain, past its time and seq. Whichever is later.
   */
  private firstMin(): string {
    const from = `[${auditIndexTime(Math.ceil(this.query.fromTime))}`;
    const { after } = this.query;
    if (!after) return from;
    const order = Buffer.compare(Buffer.from(this.chain.chainId), Buffer.from(after.chainId));
    const cursor =
      order < 0
        ? `[${auditIndexTime(after.time + 1)}`
        : order > 0
          ? `[${auditIndexTime(after.time)}`
          : after.time < 0
            ? from
            : `(${packAuditIndexMember(after.time, Math.max(after.seq, 0))}`;
    // The bounds share one fixed-width encoding after their '[' or '(': the later one is the
    // larger string, and at an equal string the exclusive one.
    const [later, earlier] = [cursor.slice(1), from.slice(1)];
    return later > earlier || (later === earlier && cursor.startsWith('(')) ? cursor : from;
  }

  peek(): StoredAuditRecord | undefined {
    return this.buffered[0];
  }

  take(): StoredAuditRecord {
    return this.buffered.shift()!;
  }

  /** Reads up to `count` more entries unless the index is read to the end of the range. */
  async fill(count: number): Promise<void> {
    if (count <= 0) return;
    while (this.buffered.length === 0 && this.min !== undefined) {
      const entries = await this.storage.readIndex(
        this.chain,
        this.index,
        this.min,
        this.max,
        count,
      );
      for (const { member, records } of entries) {
        const entry = unpackAuditIndexMember(member, this.owner);
        // The record is not there: written only with its entry, so lost outside this module;
        // the chain's verification reports the gap, the report goes on without it.
        if (records.length === 0) continue;
        if (records.length > 1) {
          throw malformedAudit(this.owner, 'audit record', 'two records at one seq');
        }
        const record = unpackAuditRecord(records[0], this.owner);
        if (!this.indexes(record, entry)) {
          throw malformedAudit(this.owner, 'audit index entry', 'does not match its record');
        }
        this.buffered.push(record);
      }
      this.min =
        entries.length < count ? undefined : `(${entries.at(-1)!.member.toString('latin1')}`;
    }
  }

  /** Whether `record` is the one an entry of this index at (time, seq) points at. */
  private indexes(record: StoredAuditRecord, entry: { time: number; seq: number }): boolean {
    const { chain, query } = this;
    const { by } = query;
    return (
      record.seq === entry.seq &&
      record.time === entry.time &&
      record.chainId === chain.chainId &&
      record.tenantId === chain.tenantId &&
      record.sessionId === chain.sessionId &&
      ('sessionId' in by
        ? record.sessionId === by.sessionId
        : 'subjectRef' in by
          ? record.subjectRef === by.subjectRef
          : record.actorId === by.actorId)
    );
  }
}
