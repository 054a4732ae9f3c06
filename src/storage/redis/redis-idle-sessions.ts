import type { Redis } from 'ioredis';
import {
  checkIdleSessionScan,
  compareIdleSessionKeys,
  decodeIdleSessionCursor,
  encodeIdleSessionCursor,
  type IdleSessionKey,
} from '../idle-sessions.js';
import type { IdleSessionPage } from '../storage.ports.js';
import type { SessionRecord, SessionRef } from '../storage.records.js';
import { sessionRefOfTag } from './redis-keys.js';
import { SESSION_FIELDS, sessionRecordFromHash } from './redis-record-codec.js';
import type { RedisSessionReads } from './redis-session-reads.js';

/*
 * The idle-session scan of the Redis adapter (`StorageMaintenance.listIdleSessions`).
 *
 * Redis keeps no index by last activity: an index spanning sessions would add a write in another
 * slot to every commit (a session's keys, and so its commit script, live in one slot of their
 * own), and one per slot (16,384 of them) would cost every page a read of every slot. So each
 * page SCANs the session hashes of every master (the standalone server, or each master of a
 * Cluster) and reads the last activity of each, then the record fields of those that can still
 * make the page: a page costs O(sessions in the store) reads, whatever its size (see
 * docs/redis-expiry-index.md for figures). Memory stays bounded: the SCAN is streamed a batch
 * at a time and only the best `limit` sessions after the cursor are kept (a sorted array that a
 * session enters only when it beats the last one kept).
 *
 * Correctness rests on SCAN's guarantee (a key present for the whole SCAN is returned at least
 * once) and on the keyset cursor (last activity, tenant bytes, session bytes) of the page's last
 * session: each page is a full walk, so a session that stays idle for a page's walk and sorts
 * after the cursor is seen by that page; a full page ends at its last session, so no idle session
 * sorting after it is lost. A session whose activity moves to `before` or later drops out, as it
 * should. Behind the cursor nothing is looked at again: a session whose activity was set back
 * behind it, or whose key a resharding moved between masters while a page walked them (SCAN may
 * then miss it), is found by the next run from the first page. Nothing is indexed, so sessions
 * written by earlier versions of the module are found like any other.
 */

/** Keys asked of SCAN per step. */
const SCAN_COUNT = 1000;

/** The fields of the session record, read for each session hash (not the commit bookkeeping). */
const RECORD_FIELDS = [
  SESSION_FIELDS.tenantId,
  SESSION_FIELDS.sessionId,
  SESSION_FIELDS.subjectId,
  SESSION_FIELDS.createdAt,
  SESSION_FIELDS.lastActivityAt,
  SESSION_FIELDS.nextSeq,
  SESSION_FIELDS.itemTtlSeconds,
  SESSION_FIELDS.legalHold,
] as const;

const DECIMAL = /^\d{1,16}$/;

/** A session hash found by SCAN. */
interface FoundHash {
  readonly tag: string;
  readonly ref: SessionRef;
  readonly key: string;
}

/**
 * The `limit` least sessions offered, in scan order, each session at most once (SCAN may return
 * a key twice; the later read wins).
 */
class BestSessions {
  private readonly kept: Array<{ readonly tag: string; readonly record: SessionRecord }> = [];
  private readonly tags = new Set<string>();

  constructor(private readonly limit: number) {}

  /** True when a session at `key` could still make the page. */
  wants(key: IdleSessionKey): boolean {
    const last = this.kept.at(-1);
    return this.kept.length < this.limit || !last || compareIdleSessionKeys(key, last.record) < 0;
  }

  offer(tag: string, record: SessionRecord): void {
    if (this.tags.has(tag)) {
      this.kept.splice(
        this.kept.findIndex((entry) => entry.tag === tag),
        1,
      );
      this.tags.delete(tag);
    }
    if (!this.wants(record)) return;
    // Binary search for the first kept session after `record`.
    let low = 0;
    let high = this.kept.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareIdleSessionKeys(this.kept[middle].record, record) < 0) low = middle + 1;
      else high = middle;
    }
    this.kept.splice(low, 0, { tag, record });
    this.tags.add(tag);
    if (this.kept.length > this.limit) this.tags.delete(this.kept.pop()!.tag);
  }

  sessions(): SessionRecord[] {
    return this.kept.map((entry) => entry.record);
  }
}

/** `StorageMaintenance.listIdleSessions` on Redis, standalone or Cluster. */
export class RedisIdleSessionScan {
  constructor(private readonly reads: RedisSessionReads) {}

  async listIdleSessions(
    before: number,
    cursor: string | undefined,
    limit: number,
  ): Promise<IdleSessionPage> {
    checkIdleSessionScan(before, limit);
    const after = decodeIdleSessionCursor(cursor);
    // A stored last activity is >= 0: nothing is before 0.
    if (before <= 0) return { sessions: [], cursor: undefined };
    const best = new BestSessions(limit);
    for (const node of await this.reads.masters()) {
      const scan = (scanCursor: string) => {
        const step = this.reads.call(() =>
          node.scan(scanCursor, 'MATCH', this.reads.layout.sessionPattern, 'COUNT', SCAN_COUNT),
        );
        // Awaited below unless a read of the batch before it failed first.
        step.catch(() => undefined);
        return step;
      };
      let step = scan('0');
      for (;;) {
        const [next, keys] = await step;
        // The next step is in flight while this batch is read: two batches at most.
        if (next !== '0') step = scan(next);
        // Most sessions cannot make the page (active, behind the cursor, or behind the best
        // kept so far): their last activity alone rules them out, and only the others' record
        // fields are read and parsed.
        const found = this.sessionHashes(keys);
        const activities = await this.readFields(node, found, [SESSION_FIELDS.lastActivityAt]);
        const candidates = found.filter((hash, index) => {
          const activity = activities[index][0];
          // No or a damaged last activity: the record read tells which (none, or IntegrityError).
          if (activity === null || !DECIMAL.test(activity)) return true;
          const key = { ...hash.ref, lastActivityAt: Number(activity) };
          return (
            key.lastActivityAt < before && compareIdleSessionKeys(key, after) > 0 && best.wants(key)
          );
        });
        const fields = await this.readFields(node, candidates, RECORD_FIELDS);
        for (const [index, hash] of candidates.entries()) {
          // Read again, so it may have changed: only the record read now counts.
          const record = sessionRecordFromHash(hash.ref, hashOf(fields[index]));
          if (!record || record.lastActivityAt >= before) continue;
          if (compareIdleSessionKeys(record, after) <= 0) continue;
          best.offer(hash.tag, record);
        }
        if (next === '0') break;
      }
    }
    const sessions = best.sessions();
    const last = sessions.at(-1);
    return {
      sessions,
      cursor: last && sessions.length === limit ? encodeIdleSessionCursor(last) : undefined,
    };
  }

  /** The session hashes among `keys`, each once; keys that are no session's are left out. */
  private sessionHashes(keys: readonly string[]): FoundHash[] {
    const { layout } = this.reads;
    const found = new Map<string, FoundHash>();
    for (const key of keys) {
      const tag = layout.tagOfSessionKey(key);
      const ref = tag === undefined ? undefined : sessionRefOfTag(tag);
      if (ref && !found.has(tag!)) found.set(tag!, { tag: tag!, ref, key });
    }
    return [...found.values()];
  }

  /** `fields` of each hash, read on the node that SCAN found them on. */
  private async readFields(
    node: Redis,
    found: readonly FoundHash[],
    fields: readonly string[],
  ): Promise<Array<Array<string | null>>> {
    const replies = await this.reads.pipelineOnNode(
      node,
      found.map((hash) => hash.key),
      (pipeline, key) => pipeline.hmget(key, ...fields),
      (key) => this.reads.client.hmget(key, ...fields),
    );
    return replies as Array<Array<string | null>>;
  }
}

/** The fields read, as the hash {@link sessionRecordFromHash} takes (absent fields left out). */
function hashOf(values: ReadonlyArray<string | null>): Record<string, string> {
  const hash: Record<string, string> = {};
  for (const [index, field] of RECORD_FIELDS.entries()) {
    const value = values[index];
    if (value !== null && value !== undefined) hash[field] = value;
  }
  return hash;
}
