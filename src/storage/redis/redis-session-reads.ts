import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import type {
  DataKeyRecord,
  HistoryOperationRecord,
  SessionRecord,
  SessionRef,
  StoredItem,
} from '../storage.records.js';
import { ConfigurationError } from '../../errors/index.js';
import { translateRedisErrors } from './redis-errors.js';
import type { RedisKeyLayout, RedisSessionKeys } from './redis-keys.js';
import {
  SESSION_FIELDS,
  seqOfPackedItem,
  sessionRecordFromHash,
  unpackDataKey,
  unpackItem,
  unpackOperation,
} from './redis-record-codec.js';

/** A standalone or cluster ioredis client. */
export type RedisClient = Redis | Cluster;

/** The first rows fetched by an item scan, and the floor of every later window. */
const MIN_ITEM_WINDOW = 16;
/** Windows double while expired rows keep them from filling `limit`, up to this size. */
const MAX_GROWN_ITEM_WINDOW = 1024;

/** Fetches up to `count` packed items between two ZRANGE BYSCORE bounds. */
export type ItemWindowFetch = (
  start: string,
  stop: string,
  newestFirst: boolean,
  count: number,
) => Promise<Buffer[]>;

/** Which items an item scan visits. */
export type ItemScanRange =
  | { readonly newestFirst: true }
  | { readonly newestFirst: false; readonly afterSeq: number; readonly throughSeq: number };

/**
 * Up to `limit` items not expired at `now` (and not `hidden`), in scan order. Reads window by
 * window from where the last one stopped, so its cost follows `limit`, not the history length.
 * Windows continue from the last seq seen rather than an offset: a concurrent append or
 * delete can neither repeat nor skip a row.
 */
export async function scanVisibleItems(
  fetch: ItemWindowFetch,
  range: ItemScanRange,
  now: number,
  limit: number,
  hidden: (seq: number) => boolean = () => false,
): Promise<StoredItem[]> {
  const found: StoredItem[] = [];
  if (limit <= 0) return found;
  let start = range.newestFirst ? '+inf' : `(${range.afterSeq}`;
  const stop = range.newestFirst ? '-inf' : String(range.throughSeq);
  let window = Math.max(limit, MIN_ITEM_WINDOW);
  for (;;) {
    const members = await fetch(start, stop, range.newestFirst, window);
    for (const member of members) {
      const item = unpackItem(member);
      if (hidden(item.seq) || (item.expiresAt !== null && item.expiresAt <= now)) continue;
      found.push(item);
      if (found.length === limit) return found;
    }
    if (members.length < window) return found;
    start = `(${seqOfPackedItem(members.at(-1)!)}`;
    window = Math.max(window, Math.min(window * 2, MAX_GROWN_ITEM_WINDOW));
  }
}

/** The session's data keys, from its keys hash. */
export function dataKeysFromHash(packed: Record<string, Buffer>): Map<string, DataKeyRecord> {
  const records = new Map<string, DataKeyRecord>();
  for (const [dekId, value] of Object.entries(packed))
    records.set(dekId, unpackDataKey(dekId, value));
  return records;
}

/** The session's active key with the highest generation. */
export function newestActiveKey(keys: Iterable<DataKeyRecord>): DataKeyRecord | undefined {
  let newest: DataKeyRecord | undefined;
  for (const key of keys) {
    if (key.state === 'active' && (!newest || key.generation > newest.generation)) newest = key;
  }
  return newest;
}

/** The highest generation among the keys; 0 when there are none. */
export function highestGeneration(keys: Iterable<DataKeyRecord>): number {
  let highest = 0;
  for (const key of keys) highest = Math.max(highest, key.generation);
  return highest;
}

/** What a unit of work starts from: the session hash and the data keys, read together. */
export interface SessionSnapshot {
  readonly hash: Record<string, string>;
  readonly dataKeys: Map<string, DataKeyRecord>;
}

/**
 * Plain reads of the adapter's keys, each translated to StorageUnavailableError when Redis is
 * unreachable. Used directly by read scopes and for the snapshot of a unit of work.
 */
export class RedisSessionReads {
  constructor(
    readonly client: RedisClient,
    readonly layout: RedisKeyLayout,
  ) {}

  /** Runs commands in one round trip; throws the first failed command's error. */
  exec(build: (pipeline: ChainableCommander) => void): Promise<unknown[]> {
    return translateRedisErrors(async () => {
      const pipeline = this.client.pipeline();
      build(pipeline);
      const replies = await pipeline.exec();
      if (!replies) throw new Error('Connection is closed.');
      return replies.map(([error, value]) => {
        if (error) throw error;
        return value;
      });
    });
  }

  async findSession(ref: SessionRef): Promise<SessionRecord | undefined> {
    const keys = this.layout.forSession(ref);
    const hash = await translateRedisErrors(() => this.client.hgetall(keys.session));
    return sessionRecordFromHash(ref, hash);
  }

  async snapshot(keys: RedisSessionKeys): Promise<SessionSnapshot> {
    const [hash, dataKeys] = await this.exec((pipeline) =>
      pipeline.hgetall(keys.session).hgetallBuffer(keys.dataKeys),
    );
    return {
      hash: hash as Record<string, string>,
      dataKeys: dataKeysFromHash(dataKeys as Record<string, Buffer>),
    };
  }

  async dataKeysOf(ref: SessionRef): Promise<Map<string, DataKeyRecord>> {
    const keys = this.layout.forSession(ref);
    return dataKeysFromHash(
      await translateRedisErrors(() => this.client.hgetallBuffer(keys.dataKeys)),
    );
  }

  /** The tag of the session that owns `dekId`, from its pointer (which may dangle). */
  ownerTagOf(dekId: string): Promise<string | null> {
    return translateRedisErrors(() => this.client.get(this.layout.dataKeyPointer(dekId)));
  }

  /** Follows the pointer to the owning session's keys hash; undefined when either is missing. */
  async findDataKey(dekId: string): Promise<DataKeyRecord | undefined> {
    const tag = await this.ownerTagOf(dekId);
    return tag === null ? undefined : this.findDataKeyIn(tag, dekId);
  }

  /** The key `dekId` in the keys hash of the session with hash tag `tag`. */
  async findDataKeyIn(tag: string, dekId: string): Promise<DataKeyRecord | undefined> {
    const packed = await translateRedisErrors(() =>
      this.client.hgetBuffer(this.layout.forTag(tag).dataKeys, dekId),
    );
    return packed ? unpackDataKey(dekId, packed) : undefined;
  }

  /**
   * One SCAN step over every session's keys hash: the data keys not destroyed and not wrapped by
   * `kekId`. A page may hold more or fewer than `count` keys, or repeat some; the cursor is
   * SCAN's. Standalone Redis only: a Cluster would need a scan per master.
   */
  async dataKeysWrappedByOtherKek(
    kekId: string,
    cursor: string | undefined,
    count: number,
  ): Promise<{ records: DataKeyRecord[]; cursor: string | undefined }> {
    const { keys, next } = await this.scanKeysHashes(cursor ?? '0', count);
    const records: DataKeyRecord[] = [];
    for (const key of await this.readKeysHashes(keys)) {
      if (key.state !== 'destroyed' && key.kekId !== kekId) records.push(key);
    }
    return { records, cursor: next === '0' ? undefined : next };
  }

  /** Data keys not destroyed, counted per root key, over every session (a full SCAN). */
  async countDataKeysByKek(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    let cursor = '0';
    do {
      const { keys, next } = await this.scanKeysHashes(cursor, 1000);
      for (const key of await this.readKeysHashes(keys)) {
        if (key.state !== 'destroyed') counts[key.kekId] = (counts[key.kekId] ?? 0) + 1;
      }
      cursor = next;
    } while (cursor !== '0');
    return counts;
  }

  private async scanKeysHashes(cursor: string, count: number) {
    if (typeof (this.client as { nodes?: unknown }).nodes === 'function') {
      throw new ConfigurationError(
        'Listing data keys across sessions (KEK rotation, key status) is not supported on a Redis Cluster yet; run it against a standalone Redis or a replica of each shard',
      );
    }
    const [next, keys] = await translateRedisErrors(() =>
      (this.client as Redis).scan(cursor, 'MATCH', `${this.layout.prefix}{*}:keys`, 'COUNT', count),
    );
    return { keys, next };
  }

  private async readKeysHashes(keys: readonly string[]): Promise<DataKeyRecord[]> {
    if (keys.length === 0) return [];
    const hashes = await this.exec((pipeline) => {
      for (const key of keys) pipeline.hgetallBuffer(key);
    });
    return hashes.flatMap((hash) => [...dataKeysFromHash(hash as Record<string, Buffer>).values()]);
  }

  async findOperation(
    ref: SessionRef,
    operationId: string,
  ): Promise<HistoryOperationRecord | undefined> {
    const keys = this.layout.forSession(ref);
    const packed = await translateRedisErrors(() =>
      this.client.hgetBuffer(keys.operations, operationId),
    );
    return packed ? unpackOperation(operationId, packed) : undefined;
  }

  /** Item windows read straight from the items zset. */
  itemWindows(keys: RedisSessionKeys): ItemWindowFetch {
    return (start, stop, newestFirst, count) =>
      translateRedisErrors(() =>
        newestFirst
          ? this.client.zrangeBuffer(keys.items, start, stop, 'BYSCORE', 'REV', 'LIMIT', 0, count)
          : this.client.zrangeBuffer(keys.items, start, stop, 'BYSCORE', 'LIMIT', 0, count),
      );
  }

  /** The commit version recorded in a session hash ('' when there is none). */
  static versionOf(hash: Record<string, string>): string {
    return hash[SESSION_FIELDS.version] ?? '';
  }
}
