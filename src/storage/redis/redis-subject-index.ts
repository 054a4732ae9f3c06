import type { SessionRecord } from '../storage.records.js';
import { sessionRefOfTag } from './redis-keys.js';
import { SESSION_FIELDS, sessionRecordFromHash } from './redis-record-codec.js';
import { RedisSessionReads } from './redis-session-reads.js';

/*
 * The subject index of the Redis adapter: per (tenant, subject), in a slot of its own, a ZSET of
 * the ids of the sessions that may name the subject (score 0, so ZRANGE BYLEX lists them by their
 * bytes) and a HASH of a token per entry.
 *
 * A session created with a subject joins the index before its creating commit, so the index
 * is a superset: it never misses a committed session, and may list one whose commit failed, or
 * that was deleted or forgot its subject since. A lookup reads the session hash of each entry
 * and keeps only the sessions that really name the subject.
 *
 * Stale entries go (after a unit that forgot the subject or deleted the session, and when a
 * lookup meets one), but only when no creating commit can still be in flight for them: an
 * entry's token is the version the creating commit gives the session hash (its compare-and-set
 * expects one below), so once the session hash is at that version or later and names no such
 * subject, that commit was applied and undone since, or can never apply. A creation that starts
 * later writes a higher token, which the removal (one script in the index's slot) sees and
 * leaves the entry alone. Without that, a removal that read "no subject" just before a creating
 * commit would drop the entry of a session that then exists.
 *
 * Sessions written before the index existed are not in it. A store-wide marker says the index
 * is complete; until it is set, the first lookup adds every session hash that names a subject
 * (a SCAN of every master), then sets it.
 */

const ADD_ENTRIES_COMMAND = 'nesAddSubjectIndexEntries';
const REMOVE_STALE_COMMAND = 'nesRemoveStaleSubjectIndexEntry';

/**
 * Adds entries. KEYS: the sessions zset, the tokens hash. ARGV: session id, token, ... A token
 * only ever grows (the higher one is the later creation's, or the later rebuild's).
 */
const ADD_ENTRIES_SCRIPT = `
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
  local token = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') or 0
  if tonumber(ARGV[i + 1]) > token then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 1
`;

/**
 * Removes an entry found stale at a session version. KEYS: the sessions zset, the tokens hash.
 * ARGV: session id, the version at which the session hash named no such subject. Replies 1
 * removed, 0 kept (a creation may still commit: its token is above that version).
 */
const REMOVE_STALE_SCRIPT = `
local stored = redis.call('HGET', KEYS[2], ARGV[1])
local token = stored and (tonumber(stored) or math.huge) or 0
if token > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;

/** One entry of the subject index. */
export interface SubjectIndexEntry {
  readonly tenantId: string;
  readonly subjectId: string;
  readonly sessionId: string;
  /** The session version from which the entry may be stale (see the file comment). */
  readonly token: number;
}

/** Session hashes read at once by a rebuild or a lookup. */
const READS_PER_ROUND = 64;
/** Entries read from the index per round trip, at least. */
const MIN_INDEX_WINDOW = 16;

type ScriptCommand = (...args: Array<string | number>) => Promise<unknown>;

/** A session hash's version as a number; undefined when it is not a whole number. */
function versionNumber(hash: Record<string, string>): number | undefined {
  const text = RedisSessionReads.versionOf(hash);
  if (text === '') return 0;
  const value = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Runs `work` on every element, `READS_PER_ROUND` at a time, results in order. */
async function inRounds<T, R>(values: readonly T[], work: (value: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < values.length; start += READS_PER_ROUND) {
    results.push(...(await Promise.all(values.slice(start, start + READS_PER_ROUND).map(work))));
  }
  return results;
}

/** The subject index and `StorageMaintenance.listSessionsOfSubject` on Redis. */
export class RedisSubjectIndex {
  constructor(private readonly reads: RedisSessionReads) {
    reads.client.defineCommand(ADD_ENTRIES_COMMAND, { numberOfKeys: 2, lua: ADD_ENTRIES_SCRIPT });
    reads.client.defineCommand(REMOVE_STALE_COMMAND, {
      numberOfKeys: 2,
      lua: REMOVE_STALE_SCRIPT,
    });
  }

  /** Adds entries, one script per (tenant, subject). */
  async add(entries: readonly SubjectIndexEntry[]): Promise<void> {
    const bySubject = new Map<string, { sessions: string; tokens: string; args: string[] }>();
    for (const entry of entries) {
      const keys = this.reads.layout.subjectIndex(entry.tenantId, entry.subjectId);
      const group = bySubject.get(keys.sessions) ?? { ...keys, args: [] };
      group.args.push(entry.sessionId, String(entry.token));
      bySubject.set(keys.sessions, group);
    }
    await inRounds([...bySubject.values()], (group) =>
      this.run(ADD_ENTRIES_COMMAND, [group.sessions, group.tokens, ...group.args]),
    );
  }

  /**
   * Removes the entry of a session whose hash named no such subject at `version`, unless a
   * creating commit may still give it one. True when removed.
   */
  async removeStale(entry: Omit<SubjectIndexEntry, 'token'>, version: number): Promise<boolean> {
    const keys = this.reads.layout.subjectIndex(entry.tenantId, entry.subjectId);
    const removed = await this.run(REMOVE_STALE_COMMAND, [
      keys.sessions,
      keys.tokens,
      entry.sessionId,
      String(version),
    ]);
    return Number(removed) === 1;
  }

  /**
   * Up to `limit` sessions of the tenant whose hash names `subjectId`, by session id bytes,
   * after `afterSessionId`. Entries whose session does not name the subject are skipped (and
   * removed when no creation can still commit them).
   */
  async listSessionsOfSubject(
    tenantId: string,
    subjectId: string,
    afterSessionId: string,
    limit: number,
  ): Promise<SessionRecord[]> {
    if (!Number.isSafeInteger(limit) || limit <= 0) return [];
    for (const id of [tenantId, subjectId, afterSessionId]) {
      if (typeof id !== 'string' || !id.isWellFormed()) return [];
    }
    await this.ensureComplete();
    const { client, layout } = this.reads;
    const keys = layout.subjectIndex(tenantId, subjectId);
    const found: SessionRecord[] = [];
    let after = afterSessionId;
    for (;;) {
      const window = Math.max(limit - found.length, MIN_INDEX_WINDOW);
      const start = after === '' ? '-' : `(${after}`;
      const sessionIds = await this.reads.call(() =>
        client.zrangebylex(keys.sessions, start, '+', 'LIMIT', 0, window),
      );
      const hashes = await inRounds(sessionIds, (sessionId) =>
        this.reads.call(() => client.hgetall(layout.forSession({ tenantId, sessionId }).session)),
      );
      const stale: Array<{ sessionId: string; version: number }> = [];
      for (const [index, sessionId] of sessionIds.entries()) {
        const hash = hashes[index];
        const record = sessionRecordFromHash({ tenantId, sessionId }, hash);
        if (record?.subjectId === subjectId) {
          if (found.length < limit) found.push(record);
          continue;
        }
        const version = versionNumber(hash);
        if (version !== undefined) stale.push({ sessionId, version });
      }
      // Best effort: an entry left behind is skipped again by the next lookup.
      await inRounds(stale, ({ sessionId, version }) =>
        this.removeStale({ tenantId, subjectId, sessionId }, version).catch(() => false),
      );
      if (found.length === limit || sessionIds.length < window) return found;
      after = sessionIds.at(-1)!;
    }
  }

  /** Adds every session written before the index existed, once per store. */
  private async ensureComplete(): Promise<void> {
    const { client, layout } = this.reads;
    const marker = await this.reads.call(() => client.get(layout.subjectIndexComplete));
    if (marker !== null) return;
    await this.rebuild();
    await this.reads.call(() => client.set(layout.subjectIndexComplete, '1'));
  }

  /**
   * Adds an entry for every session hash (on every master) that names a subject, with the
   * version read as its token. Only the ids are read, so a hash damaged elsewhere does not stop
   * the rebuild (its lookup reports it).
   */
  private async rebuild(): Promise<void> {
    const { client, layout } = this.reads;
    const tags = new Set<string>();
    for (const key of await this.reads.scanEveryMaster(layout.sessionPattern)) {
      const tag = layout.tagOfSessionKey(key);
      if (tag !== undefined) tags.add(tag);
    }
    const entries = await inRounds([...tags], async (tag): Promise<SubjectIndexEntry[]> => {
      const ref = sessionRefOfTag(tag);
      if (!ref) return [];
      const [tenantId, sessionId, subjectId, version] = await this.reads.call(() =>
        client.hmget(
          layout.forTag(tag).session,
          SESSION_FIELDS.tenantId,
          SESSION_FIELDS.sessionId,
          SESSION_FIELDS.subjectId,
          SESSION_FIELDS.version,
        ),
      );
      if (tenantId !== ref.tenantId || sessionId !== ref.sessionId || subjectId === null) {
        return [];
      }
      // A damaged version: an entry no removal takes (the lookup reports the damage).
      const token =
        versionNumber({ [SESSION_FIELDS.version]: version ?? '' }) ?? Number.MAX_SAFE_INTEGER;
      return [{ ...ref, subjectId, token }];
    });
    await this.add(entries.flat());
  }

  private run(command: string, args: Array<string | number>): Promise<unknown> {
    const client = this.reads.client;
    const script = (client as unknown as Record<string, ScriptCommand>)[command];
    return this.reads.call(() => script.call(client, ...args));
  }
}
