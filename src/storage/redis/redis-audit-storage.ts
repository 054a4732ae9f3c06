import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay, type BackoffPolicy } from '../../errors/backoff.js';
import { IntegrityError, StorageUnavailableError } from '../../errors/index.js';
import { bindAuditChains, type AdapterAuditChains } from '../adapter-scope.js';
import type { AuditChainWrites, AuditStorage } from '../storage.ports.js';
import { compareAuditOrder, matchesAuditQuery } from '../audit-record-query.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  AuditRecordQuery,
  StoredAuditRecord,
} from '../storage.records.js';

/** Records or heads per read when the access report scans a tenant's chains. */
const AUDIT_SCAN_PAGE = 500;
import { AuditChainBuffer, newChains, type LockedAuditChain } from './redis-audit-appends.js';
import {
  AUDIT_COMMIT_REPLY,
  AUDIT_COMMIT_SCRIPT,
  AUDIT_FENCE_REPLY,
  AUDIT_FENCE_SCRIPT,
  REGISTER_AUDIT_CHAIN_SCRIPT,
} from './redis-audit-scripts.js';
import {
  malformedAudit,
  packAuditChainLocation,
  redisAuditChainLabel,
  unpackAuditChainId,
  unpackAuditChainLocation,
  unpackAuditHead,
  unpackAuditRecord,
} from './redis-record-codec.js';
import type { RedisSessionReads } from './redis-session-reads.js';

/** Names of the audit scripts on the client; namespaced, as a host client may define its own. */
const AUDIT_COMMIT_COMMAND = 'nesCommitAuditUnit';
const AUDIT_FENCE_COMMAND = 'nesFenceLostAuditCommit';
const REGISTER_CHAIN_COMMAND = 'nesRegisterAuditChain';

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
 */
export class RedisAuditStorage implements AuditStorage {
  constructor(
    private readonly reads: RedisSessionReads,
    /** The storage's policy for units that lost a race. */
    private readonly conflictBackoff: BackoffPolicy,
  ) {
    const { client } = reads;
    client.defineCommand(AUDIT_COMMIT_COMMAND, { numberOfKeys: 3, lua: AUDIT_COMMIT_SCRIPT });
    client.defineCommand(AUDIT_FENCE_COMMAND, { numberOfKeys: 2, lua: AUDIT_FENCE_SCRIPT });
    client.defineCommand(REGISTER_CHAIN_COMMAND, {
      numberOfKeys: 2,
      lua: REGISTER_AUDIT_CHAIN_SCRIPT,
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
      if (!pending || (await this.commit(pending))) return result;
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
   * Reads the tenant's index by chain id bytes (ZRANGE BYLEX compares bytes), then each
   * chain's head in its own slot. Index entries whose chain has no head yet (a first commit
   * that failed or is still under way) are skipped, reading on until `limit` heads are found.
   */
  async listHeads(
    tenantId: string,
    afterChainId: string,
    limit: number,
  ): Promise<AuditChainHeadRecord[]> {
    return (await this.chainsWithHeads(tenantId, afterChainId, limit)).map(({ head }) => head);
  }

  /** As {@link listHeads}, each head with where its chain lives. */
  private async chainsWithHeads(
    tenantId: string,
    afterChainId: string,
    limit: number,
  ): Promise<Array<{ readonly chain: AuditChainRef; readonly head: AuditChainHeadRecord }>> {
    const index = this.reads.layout.auditIndex(tenantId);
    const { client } = this.reads;
    const heads: Array<{ chain: AuditChainRef; head: AuditChainHeadRecord }> = [];
    let after = afterChainId === '' ? '-' : `(${afterChainId}`;
    while (heads.length < limit) {
      const wanted = limit - heads.length;
      const members = await this.reads.call(() =>
        client.zrangeBuffer(index.chains, after, '+', 'BYLEX', 'LIMIT', 0, wanted),
      );
      if (members.length === 0) break;
      const chainIds = members.map((member) => unpackAuditChainId(member, tenantId));
      const locations = await this.reads.call(() =>
        client.hmgetBuffer(index.locations, ...chainIds),
      );
      const chains = chainIds.map((chainId, position) => {
        const location = locations[position];
        if (!location) {
          throw malformedAudit(
            redisAuditChainLabel({ chainId }),
            'audit chain index entry',
            'no location',
          );
        }
        return unpackAuditChainLocation(tenantId, chainId, location);
      });
      // One command per head: on a Cluster they live in as many slots as there are sessions.
      const stored = await Promise.all(
        chains.map((chain) =>
          this.reads.call(() => client.getBuffer(this.reads.layout.forAuditChain(chain).head)),
        ),
      );
      chains.forEach((chain, position) => {
        const head = stored[position];
        if (head) heads.push({ chain, head: unpackAuditHead(head, chain) });
      });
      if (members.length < wanted) break;
      after = `(${chainIds.at(-1)!}`;
    }
    return heads;
  }

  /**
   * The access report over the tenant's chains, each read page by page and filtered in process.
   * A session's records are read from its own chain only; a subject's or an actor's from every
   * chain of the tenant (no secondary index on Redis yet: cost grows with the tenant's trail).
   */
  async listRecords(query: AuditRecordQuery): Promise<StoredAuditRecord[]> {
    const { by } = query;
    const chains = (await this.tenantChains(query.tenantId)).filter(
      (chain) => !('sessionId' in by) || chain.sessionId === by.sessionId,
    );
    const found: StoredAuditRecord[] = [];
    for (const chain of chains) {
      for (let after = 0; ;) {
        const page = await this.readChain(chain, after, AUDIT_SCAN_PAGE);
        found.push(...page.filter((record) => matchesAuditQuery(record, query)));
        if (page.length < AUDIT_SCAN_PAGE) break;
        after = page.at(-1)!.seq;
      }
    }
    return found.toSorted(compareAuditOrder).slice(0, query.limit);
  }

  /** Every chain of the tenant that has a record, from its index. */
  private async tenantChains(tenantId: string): Promise<AuditChainRef[]> {
    const chains: AuditChainRef[] = [];
    for (let after = ''; ;) {
      const page = await this.chainsWithHeads(tenantId, after, AUDIT_SCAN_PAGE);
      chains.push(...page.map(({ chain }) => chain));
      if (page.length < AUDIT_SCAN_PAGE) return chains;
      after = page.at(-1)!.chain.chainId;
    }
  }

  /**
   * Adds chains about to get their first record to their tenant's index, before the commit
   * that writes it (see the class comment for why before).
   */
  async registerChains(chains: readonly AuditChainRef[]): Promise<void> {
    const register = this.command(REGISTER_CHAIN_COMMAND);
    await Promise.all(
      chains.map(async (chain) => {
        const index = this.reads.layout.auditIndex(chain.tenantId);
        const reply = await this.reads.call(() =>
          register(index.chains, index.locations, chain.chainId, packAuditChainLocation(chain)),
        );
        if (Number(reply) !== 1) {
          throw new Error(
            `Audit ${redisAuditChainLabel(chain)} is already a chain of another session of the tenant; chain ids must be unique within a tenant`,
          );
        }
      }),
    );
  }

  /** True when applied, false on a conflict. */
  private async commit(pending: LockedAuditChain): Promise<boolean> {
    await this.registerChains(newChains([pending]));
    const { keys } = pending;
    const commitId = randomBytes(12).toString('base64url');
    const run = this.command(AUDIT_COMMIT_COMMAND);
    let reply: unknown;
    try {
      reply = await this.reads.call(() =>
        run(
          keys.records,
          keys.head,
          keys.fenced,
          commitId,
          pending.headBytes,
          pending.newHead!,
          ...pending.members.flat(),
        ),
      );
    } catch (error) {
      if (!(error instanceof StorageUnavailableError)) throw error;
      return this.settleLostCommit(pending, commitId);
    }
    switch (Number(reply)) {
      case AUDIT_COMMIT_REPLY.applied:
        return true;
      case AUDIT_COMMIT_REPLY.conflict:
        return false;
      case AUDIT_COMMIT_REPLY.ahead:
        throw auditChainAhead([pending.chain]);
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
