import { Logger } from '@nestjs/common';
import type { ChainableCommander } from 'ioredis';
import { IntegrityError } from '../../errors/index.js';
import {
  checkExpiredItemScan,
  decodeExpiredItemCursor,
  encodeExpiredItemCursor,
  type ExpiredItemKey,
} from '../expired-items.js';
import type { ExpiredItemPage } from '../storage.ports.js';
import type { ExpiredItemRecord, SessionRef } from '../storage.records.js';
import { copyStoredItem } from '../storage.records.js';
import { sessionRefOfTag, type RedisSessionKeys } from './redis-keys.js';
import { redisSessionLabel, SESSION_FIELDS, unpackItem } from './redis-record-codec.js';
import { isRedisCluster, type RedisSessionReads } from './redis-session-reads.js';

/*
 * The per-item expiry index of the Redis adapter and the scan that reads it.
 *
 * Each session keeps a zset `{tag}:expiry` in its own slot: one entry per item with an expiry,
 * score 0, member `<expiresAt>:<seq>` as 16-digit decimals, so ZRANGEBYLEX reads a session's
 * entries in (expiresAt, seq) order and can start right after any (expiresAt, seq). The commit
 * script writes an entry with its item, removes it with its item and drops the index with a
 * clear, atomically; it shares the session's native expiry backstop.
 *
 * No key spans sessions (on a Cluster every key of a script must share one slot), so the scan
 * finds the sessions by SCAN over every master's keyspace (MATCH on the items keys), then reads
 * only the index entries at or before `now` of the sessions that have any.
 */

const logger = new Logger('RedisSessionStorage');

/** Digits of each number of an index entry: 2^53 - 1 has 16. */
const ENTRY_DIGITS = 16;
const ENTRY = /^(\d{16}):(\d{16})$/;
/** Requests in flight at once. */
const SESSIONS_PER_ROUND = 64;
/** Sessions whose reads share one pipeline, on a standalone server. */
const SESSIONS_PER_PIPELINE = 128;

const fixed = (value: number): string => String(value).padStart(ENTRY_DIGITS, '0');

/** The index entry of the item at `seq` expiring at `expiresAt` (both whole, >= 0). */
export function expiryIndexEntry(expiresAt: number, seq: number): string {
  return `${fixed(expiresAt)}:${fixed(seq)}`;
}

/** A session found by the scan, with its ids as bytes for the order. */
interface ScannedSession {
  readonly ref: SessionRef;
  readonly keys: RedisSessionKeys;
  readonly tenantBytes: Buffer;
  readonly sessionBytes: Buffer;
}

/** An index entry of a session, decoded. */
interface FoundEntry {
  readonly session: ScannedSession;
  readonly expiresAt: number;
  readonly seq: number;
}

const compareNumbers = (a: number, b: number): number => (a < b ? -1 : a > b ? 1 : 0);

const compareSessions = (a: ScannedSession, b: ScannedSession): number =>
  Buffer.compare(a.tenantBytes, b.tenantBytes) || Buffer.compare(a.sessionBytes, b.sessionBytes);

/** The scan order: expiry, then tenant and session by their UTF-8 bytes, then seq. */
const compareEntries = (a: FoundEntry, b: FoundEntry): number =>
  compareNumbers(a.expiresAt, b.expiresAt) ||
  compareSessions(a.session, b.session) ||
  compareNumbers(a.seq, b.seq);

/** Runs `work` on every element, `SESSIONS_PER_ROUND` at a time, results in order. */
async function inRounds<T, R>(values: readonly T[], work: (value: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < values.length; start += SESSIONS_PER_ROUND) {
    results.push(...(await Promise.all(values.slice(start, start + SESSIONS_PER_ROUND).map(work))));
  }
  return results;
}

function damagedIndex(session: ScannedSession): IntegrityError {
  return new IntegrityError(
    `The expiry index of ${redisSessionLabel(session.ref)} in Redis holds an entry this module never writes: it was altered outside this module. Delete the field '${SESSION_FIELDS.expiryIndexed}' of its session hash (${session.keys.session}); the next expired-item scan rebuilds the index from the items`,
  );
}

function itemOutOfPlace(session: ScannedSession): IntegrityError {
  return new IntegrityError(
    `The stored items of ${redisSessionLabel(session.ref)} in Redis are out of place (a score differs from its sequence number, or two members share it): the sorted set was altered outside this module. Nothing was deleted; restore it from a backup or clear the session`,
  );
}

/**
 * `StorageMaintenance.listExpiredItems` on Redis, standalone or Cluster.
 *
 * Each page SCANs every master for the sessions' items keys, reads each session's
 * `expiry_indexed` flag and its first index entry after the cursor (pipelined: many sessions per
 * round trip on a standalone server, one each on a Cluster, whose pipelines stay in one slot),
 * takes the `limit` sessions whose first entries come first, reads of each the entries that can
 * still reach the page, and merges them: a page costs a full keyspace SCAN plus a few small
 * reads per session, never the unpacking of items that are not on the page. A session
 * written before the index (no flag) gets its index rebuilt from its items first, in a unit of
 * work of its own, so no item is ever left out of the scan.
 */
export class RedisExpiredItemScan {
  constructor(
    private readonly reads: RedisSessionReads,
    /** Rebuilds the index of a session written before it, in a unit of work of its own. */
    private readonly rebuildIndex: (ref: SessionRef) => Promise<void>,
  ) {}

  async listExpiredItems(
    now: number,
    cursor: string | undefined,
    limit: number,
  ): Promise<ExpiredItemPage> {
    checkExpiredItemScan(now, limit);
    let after = decodeExpiredItemCursor(cursor);
    // Every stored expiry is >= 1 (0 means none in the packed item).
    if (now < 1) return { items: [], cursor: undefined };
    const sessions = await this.sessionsWithItems();
    const end = `(${fixed(now + 1)}`;

    let heads = await this.firstEntries(sessions, after, end);
    const unindexed = sessions.filter((_, index) => !heads[index].indexed);
    if (unindexed.length > 0) {
      for (const session of unindexed) await this.rebuildIndex(session.ref);
      heads = await this.firstEntries(sessions, after, end);
      for (const [index, head] of heads.entries()) {
        if (!head.indexed) {
          logger.warn(
            `Items of ${redisSessionLabel(sessions[index].ref)} have no session record: they are not scanned for expiry; the Redis expiry backstop deletes them`,
          );
        }
      }
    }

    // An entry whose item a writer deleted since it was read gives no item, and a leading
    // session may lose its entries between the reads: the page goes on past both, so a page is
    // short only when no session has an entry left after it.
    const items: ExpiredItemRecord[] = [];
    for (;;) {
      const wanted = limit - items.length;
      const entries = await this.nextEntries(heads, wanted, after, end);
      items.push(...(await this.itemsOf(entries)));
      const last = entries.at(-1);
      if (last) {
        after = {
          expiresAt: last.expiresAt,
          tenantId: last.session.ref.tenantId,
          sessionId: last.session.ref.sessionId,
          seq: last.seq,
        };
      }
      if (items.length === limit) return { items, cursor: encodeExpiredItemCursor(after) };
      heads = await this.firstEntries(sessions, after, end);
      if (entries.length < wanted && heads.every((head) => head.entry === undefined)) {
        return { items, cursor: undefined };
      }
    }
  }

  /**
   * The first `count` entries after `after` over every session, from each session's first
   * entry (`heads`). They come from the sessions whose first entries are among the first
   * `count`: each session gives its first entry before any other of its own, and the one whose
   * first entry ranks r-th (from 0) has r entries of others before it, so it gives at most
   * count - r.
   */
  private async nextEntries(
    heads: ReadonlyArray<{ readonly entry: FoundEntry | undefined }>,
    count: number,
    after: ExpiredItemKey,
    end: string,
  ): Promise<FoundEntry[]> {
    const leading = heads
      .map((head) => head.entry)
      .filter((entry): entry is FoundEntry => entry !== undefined)
      .toSorted(compareEntries)
      .slice(0, count)
      .map((head, rank) => ({ session: head.session, count: count - rank }));
    return (await this.entriesOf(leading, after, end)).toSorted(compareEntries).slice(0, count);
  }

  /** Every session with an items zset, on every master. */
  private async sessionsWithItems(): Promise<ScannedSession[]> {
    const { layout } = this.reads;
    const found = new Map<string, ScannedSession>();
    for (const key of await this.reads.scanEveryMaster(layout.itemsPattern)) {
      const tag = layout.tagOfItemsKey(key);
      const ref = tag === undefined ? undefined : sessionRefOfTag(tag);
      // SCAN may return a key twice; a key that is no session's was written by someone else.
      if (!ref || found.has(tag!)) continue;
      found.set(tag!, {
        ref,
        keys: layout.forTag(tag!),
        tenantBytes: Buffer.from(ref.tenantId, 'utf8'),
        sessionBytes: Buffer.from(ref.sessionId, 'utf8'),
      });
    }
    return [...found.values()];
  }

  /**
   * Runs each session's reads in its slot and hands it its replies: `build` adds the session's
   * commands to a pipeline and returns how many. A pipeline may only span one slot on a Cluster,
   * so there each session gets one of its own; a standalone server takes many per round trip.
   */
  private async perSession<T, R>(
    values: readonly T[],
    build: (pipeline: ChainableCommander, value: T) => number,
    read: (replies: unknown[], value: T) => R,
  ): Promise<R[]> {
    const perPipeline = isRedisCluster(this.reads.client) ? 1 : SESSIONS_PER_PIPELINE;
    const batches: T[][] = [];
    for (let start = 0; start < values.length; start += perPipeline) {
      batches.push(values.slice(start, start + perPipeline));
    }
    const results = await inRounds(batches, async (batch) => {
      const counts: number[] = [];
      const replies = await this.reads.exec((pipeline) => {
        for (const value of batch) counts.push(build(pipeline, value));
      });
      let offset = 0;
      return batch.map((value, index) => {
        const own = replies.slice(offset, offset + counts[index]);
        offset += counts[index];
        return read(own, value);
      });
    });
    return results.flat();
  }

  /** Each session's `expiry_indexed` flag and first entry after `after`, up to `end`. */
  private firstEntries(
    sessions: readonly ScannedSession[],
    after: ExpiredItemKey,
    end: string,
  ): Promise<Array<{ indexed: boolean; entry: FoundEntry | undefined }>> {
    return this.perSession(
      sessions,
      (pipeline, session) => {
        pipeline
          .hget(session.keys.session, SESSION_FIELDS.expiryIndexed)
          .zrangebylex(session.keys.expiry, startAfter(session, after), end, 'LIMIT', 0, 1);
        return 2;
      },
      ([flag, members], session) => {
        const first = (members as string[])[0];
        return {
          indexed: flag === '1',
          entry: first === undefined ? undefined : decodeEntry(session, first),
        };
      },
    );
  }

  /** Up to `count` entries of each session after `after`, up to `end`. */
  private async entriesOf(
    sessions: ReadonlyArray<{ readonly session: ScannedSession; readonly count: number }>,
    after: ExpiredItemKey,
    end: string,
  ): Promise<FoundEntry[]> {
    const entries = await this.perSession(
      sessions,
      (pipeline, { session, count }) => {
        pipeline.zrangebylex(
          session.keys.expiry,
          startAfter(session, after),
          end,
          'LIMIT',
          0,
          count,
        );
        return 1;
      },
      ([members], { session }) =>
        (members as string[]).map((member) => decodeEntry(session, member)),
    );
    return entries.flat();
  }

  /**
   * The stored items of `entries`, in their order, each read at its own position and checked
   * there: exactly one member, whose packed seq is the entry's. An entry whose item is gone (a
   * writer deleted it since the entries were read) is left out. The item is returned as stored:
   * its own expiresAt is the one its envelope is sealed with, for the caller to confirm.
   */
  private async itemsOf(entries: readonly FoundEntry[]): Promise<ExpiredItemRecord[]> {
    const bySession = new Map<ScannedSession, FoundEntry[]>();
    for (const entry of entries) {
      const list = bySession.get(entry.session) ?? [];
      list.push(entry);
      bySession.set(entry.session, list);
    }
    const found = new Map<FoundEntry, ExpiredItemRecord>();
    await this.perSession(
      [...bySession],
      (pipeline, [session, own]) => {
        for (const entry of own) {
          pipeline.zrangeBuffer(session.keys.items, entry.seq, entry.seq, 'BYSCORE', 'LIMIT', 0, 2);
        }
        return own.length;
      },
      (replies, [session, own]) => {
        own.forEach((entry, index) => {
          const members = replies[index] as Buffer[];
          if (members.length === 0) return;
          if (members.length > 1) throw itemOutOfPlace(session);
          const item = unpackItem(members[0], redisSessionLabel(session.ref));
          if (item.seq !== entry.seq) throw itemOutOfPlace(session);
          // Written out, not spread: this runs per expired item.
          found.set(entry, {
            tenantId: session.ref.tenantId,
            sessionId: session.ref.sessionId,
            item: copyStoredItem(item),
          });
        });
      },
    );
    return entries.flatMap((entry) => found.get(entry) ?? []);
  }
}

/** The ZRANGEBYLEX start of `session`'s entries after `after` in the scan order. */
function startAfter(session: ScannedSession, after: ExpiredItemKey): string {
  // Stored expiries are >= 1: a cursor below that (the first page's) is before every entry.
  if (after.expiresAt < 1) return '-';
  const relative =
    Buffer.compare(session.tenantBytes, Buffer.from(after.tenantId, 'utf8')) ||
    Buffer.compare(session.sessionBytes, Buffer.from(after.sessionId, 'utf8'));
  // A session before the cursor's has its entries at the cursor's expiry behind it; one after it
  // has them still ahead; the cursor's own continues after the cursor's seq.
  if (relative < 0) return `[${fixed(after.expiresAt + 1)}`;
  if (relative > 0 || after.seq < 0) return `[${fixed(after.expiresAt)}`;
  return `(${expiryIndexEntry(after.expiresAt, after.seq)}`;
}

function decodeEntry(session: ScannedSession, member: string): FoundEntry {
  const match = ENTRY.exec(member);
  const expiresAt = match ? Number(match[1]) : Number.NaN;
  const seq = match ? Number(match[2]) : Number.NaN;
  if (!Number.isSafeInteger(expiresAt) || !Number.isSafeInteger(seq) || expiresAt < 1 || seq < 1) {
    throw damagedIndex(session);
  }
  return { session, expiresAt, seq };
}
