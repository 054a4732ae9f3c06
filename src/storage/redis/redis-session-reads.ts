import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import type {
  DataKeyRecord,
  HistoryOperationRecord,
  SessionRecord,
  SessionRef,
  StoredItem,
} from '../storage.records.js';
import {
  IntegrityError,
  InvalidArgumentError,
  StorageUnavailableError,
} from '../../errors/index.js';
import { DataKeyAgesTally } from '../data-key-ages.js';
import type { DataKeyAges } from '../storage.ports.js';
import { translateRedisErrors } from './redis-errors.js';
import type { RedisKeyLayout, RedisSessionKeys } from './redis-keys.js';
import {
  malformed,
  redisSessionLabel,
  SESSION_FIELDS,
  sessionRecordFromHash,
  unpackDataKey,
  unpackItem,
  unpackOperation,
} from './redis-record-codec.js';

/** A standalone or cluster ioredis client. */
export type RedisClient = Redis | Cluster;

/** Keys asked of SCAN per step when a scan reads every keys hash. */
const FULL_SCAN_COUNT = 1000;

const KEY_SCAN_CURSOR = /^(\d{1,4}):(\d{1,20})$/;

/** A data-key scan's cursor: the master's place in address order, and SCAN's cursor on it. */
function decodeKeyScanCursor(cursor: string | undefined): { master: number; scan: string } {
  if (cursor === undefined) return { master: 0, scan: '0' };
  const match = KEY_SCAN_CURSOR.exec(cursor);
  if (!match) {
    throw new InvalidArgumentError(
      'The data-key scan cursor is not one this storage returned; start the scan again without one',
    );
  }
  return { master: Number(match[1]), scan: match[2] };
}

/** A node's address, to put the masters of a Cluster in an order that holds between pages. */
const nodeAddress = (node: Redis): string => `${node.options.host}:${node.options.port}`;

/** True for an ioredis Cluster client (it has `nodes()`; a standalone client does not). */
export function isRedisCluster(client: RedisClient): client is Cluster {
  return typeof (client as { nodes?: unknown }).nodes === 'function';
}

/** The first rows fetched by an item scan, and the floor of every later window. */
const MIN_ITEM_WINDOW = 16;
/** Windows double while expired rows keep them from filling `limit`, up to this size. */
const MAX_GROWN_ITEM_WINDOW = 1024;

/**
 * Fetches up to `count` packed items between two ZRANGE BYSCORE bounds, WITHSCORES: the reply
 * alternates member and score.
 */
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
 * The IntegrityError for members whose positions cannot be trusted: a score that is not the
 * member's own (authenticated) sequence number, or two members at one position.
 */
function positionTampered(owner: string, reason: string): IntegrityError {
  return new IntegrityError(
    `The stored items of ${owner} in Redis are out of place (${reason}): the sorted set was altered outside this module. Nothing was deleted; restore it from a backup or clear the session`,
  );
}

/**
 * Up to `limit` items not expired at `now` (and not `hidden`), in scan order. Reads window by
 * window, so its cost follows `limit`, not the history length.
 *
 * Nothing about a member's place is taken on trust. Every member of every window read must sit
 * at its own position: the score must equal the sequence number packed in the member (the one
 * the envelope's AAD binds), and sequence numbers must strictly progress. A re-scored, swapped
 * or duplicated member is therefore an IntegrityError, never an item out of order, twice, or
 * silently left out. Each window resumes at the score Redis returned for the last member
 * (inclusive, skipping that member itself), so a second member at that score is seen too.
 *
 * An ascending page starts below every score on the first page and reads on past `throughSeq`
 * once its range is exhausted (checking, not returning, what lies beyond), so a member re-scored
 * out of the range is seen. What lies beyond is only what was appended since the caller read
 * `throughSeq`, so this costs nothing in the usual case.
 */
export async function scanVisibleItems(
  fetch: ItemWindowFetch,
  range: ItemScanRange,
  now: number,
  limit: number,
  owner: string,
  hidden: (seq: number) => boolean = () => false,
): Promise<StoredItem[]> {
  const found: StoredItem[] = [];
  if (limit <= 0) return found;
  let start = range.newestFirst ? '+inf' : range.afterSeq < 1 ? '-inf' : `(${range.afterSeq}`;
  const stop = range.newestFirst ? '-inf' : '+inf';
  const throughSeq = range.newestFirst ? Infinity : range.throughSeq;
  let window = Math.max(limit, MIN_ITEM_WINDOW);
  let last: { member: Buffer; score: string; seq: number } | undefined;
  for (;;) {
    const reply = await fetch(start, stop, range.newestFirst, window);
    for (let index = 0; index < reply.length; index += 2) {
      const member = reply[index];
      const score = reply[index + 1].toString('latin1');
      if (index === 0 && last && score === last.score && member.equals(last.member)) continue;
      const item = unpackItem(member, owner);
      if (Number(score) !== item.seq) {
        throw positionTampered(owner, 'a score differs from its sequence number');
      }
      if (last && (range.newestFirst ? item.seq >= last.seq : item.seq <= last.seq)) {
        throw positionTampered(owner, 'two members at one position');
      }
      last = { member, score, seq: item.seq };
      if (found.length === limit || item.seq > throughSeq) continue;
      if (hidden(item.seq) || (item.expiresAt !== null && item.expiresAt <= now)) continue;
      found.push(item);
    }
    if (found.length === limit || reply.length < window * 2 || !last) return found;
    start = last.score;
    window = Math.max(window, Math.min(window * 2, MAX_GROWN_ITEM_WINDOW));
  }
}

/** The session's data keys, from its keys hash. */
export function dataKeysFromHash(
  packed: Record<string, Buffer>,
  owner: string,
): Map<string, DataKeyRecord> {
  const records = new Map<string, DataKeyRecord>();
  for (const [dekId, value] of Object.entries(packed))
    records.set(dekId, unpackDataKey(dekId, value, owner));
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

/** A session hash tag as {@link redisSessionTag} builds it. */
const SESSION_TAG = /^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** How messages name a data key found by id alone (ids are generated UUIDs, not content). */
const dataKeyLabel = (dekId: string): string => `data key '${dekId}'`;

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
    /** Bound of every round trip: past it, the call fails with StorageUnavailableError. */
    readonly commandTimeoutMs: number,
  ) {}

  /**
   * Runs one round trip, bounded by `commandTimeoutMs` whatever the client's own options, with
   * unavailability translated to StorageUnavailableError.
   */
  call<T>(request: () => Promise<T>): Promise<T> {
    return translateRedisErrors(request, this.commandTimeoutMs);
  }

  /** Runs commands in one round trip; throws the first failed command's error. */
  exec(build: (pipeline: ChainableCommander) => void): Promise<unknown[]> {
    return this.call(async () => {
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
    const hash = await this.call(() => this.client.hgetall(keys.session));
    return sessionRecordFromHash(ref, hash);
  }

  async snapshot(ref: SessionRef, keys: RedisSessionKeys): Promise<SessionSnapshot> {
    const [hash, dataKeys] = await this.exec((pipeline) =>
      pipeline.hgetall(keys.session).hgetallBuffer(keys.dataKeys),
    );
    return {
      hash: hash as Record<string, string>,
      dataKeys: dataKeysFromHash(dataKeys as Record<string, Buffer>, redisSessionLabel(ref)),
    };
  }

  async dataKeysOf(ref: SessionRef): Promise<Map<string, DataKeyRecord>> {
    const keys = this.layout.forSession(ref);
    return dataKeysFromHash(
      await this.call(() => this.client.hgetallBuffer(keys.dataKeys)),
      redisSessionLabel(ref),
    );
  }

  /** The tag of the session that owns `dekId`, from its pointer (which may dangle). */
  ownerTagOf(dekId: string): Promise<string | null> {
    return this.call(() => this.client.get(this.layout.dataKeyPointer(dekId)));
  }

  /** Follows the pointer to the owning session's keys hash; undefined when either is missing. */
  async findDataKey(dekId: string): Promise<DataKeyRecord | undefined> {
    const tag = await this.ownerTagOf(dekId);
    return tag === null ? undefined : this.findDataKeyIn(tag, dekId);
  }

  /** The key `dekId` in the keys hash of the session with hash tag `tag`. */
  async findDataKeyIn(tag: string, dekId: string): Promise<DataKeyRecord | undefined> {
    // A pointer holds a hash tag of base64url ids; anything else was written by someone else.
    if (!SESSION_TAG.test(tag)) throw malformed(dataKeyLabel(dekId), 'data key pointer', 'tag');
    const packed = await this.call(() =>
      this.client.hgetBuffer(this.layout.forTag(tag).dataKeys, dekId),
    );
    return packed ? unpackDataKey(dekId, packed, dataKeyLabel(dekId)) : undefined;
  }

  /**
   * One SCAN step over the sessions' keys hashes of one master: the data keys not destroyed and
   * not wrapped by `kekId`. A page may hold more or fewer than `count` keys, or repeat some; the
   * cursor names the master (standalone Redis is the one master) and SCAN's cursor on it.
   */
  async dataKeysWrappedByOtherKek(
    kekId: string,
    cursor: string | undefined,
    count: number,
  ): Promise<{ records: DataKeyRecord[]; cursor: string | undefined }> {
    const { sessions, next } = await this.keysHashesStep(cursor, count);
    const records = sessions
      .flat()
      .filter((key) => key.state !== 'destroyed' && key.kekId !== kekId);
    return { records, cursor: next };
  }

  /**
   * One SCAN step over the sessions' keys hashes of one master: the `retiring` data keys, for
   * their re-encryption. Pages as {@link dataKeysWrappedByOtherKek}.
   */
  async retiringDataKeys(
    cursor: string | undefined,
    count: number,
  ): Promise<{ records: DataKeyRecord[]; cursor: string | undefined }> {
    const { sessions, next } = await this.keysHashesStep(cursor, count);
    return { records: sessions.flat().filter((key) => key.state === 'retiring'), cursor: next };
  }

  /** Data keys not destroyed, counted per root key, over every session (a full SCAN). */
  async countDataKeysByKek(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    await this.everyKeysHash((keys) => {
      for (const key of keys) {
        if (key.state !== 'destroyed') counts[key.kekId] = (counts[key.kekId] ?? 0) + 1;
      }
    });
    return counts;
  }

  /**
   * How old the active and retiring data keys are, over every session but `exceptTenantId`'s
   * (a full SCAN).
   */
  async dataKeyAges(createdBefore: number, exceptTenantId: string): Promise<DataKeyAges> {
    const tally = new DataKeyAgesTally(createdBefore, exceptTenantId);
    await this.everyKeysHash((keys) => tally.addSession(keys));
    return tally.result();
  }

  /** Calls `visit` with the data keys of every session's keys hash, on every master. */
  private async everyKeysHash(visit: (keys: DataKeyRecord[]) => void): Promise<void> {
    let cursor: string | undefined;
    do {
      const step = await this.keysHashesStep(cursor, FULL_SCAN_COUNT);
      for (const keys of step.sessions) visit(keys);
      cursor = step.next;
    } while (cursor !== undefined);
  }

  /**
   * One SCAN step for sessions' keys hashes on one master, from `cursor` (undefined: the
   * first master, from the start), and the data keys in each hash found. Masters go in the
   * order of their addresses; a resharding or failover during a scan may make it miss or repeat
   * a session, which the next scan finds.
   */
  private async keysHashesStep(
    cursor: string | undefined,
    count: number,
  ): Promise<{ sessions: DataKeyRecord[][]; next: string | undefined }> {
    const masters = (await this.masters()).toSorted((a, b) => {
      const [first, second] = [nodeAddress(a), nodeAddress(b)];
      return first < second ? -1 : first > second ? 1 : 0;
    });
    const at = decodeKeyScanCursor(cursor);
    // The cluster has fewer masters than when the scan began: nothing is left to visit.
    if (at.master >= masters.length) return { sessions: [], next: undefined };
    const node = masters[at.master];
    const [scanNext, keys] = await this.call(() =>
      node.scan(at.scan, 'MATCH', `${this.layout.prefix}{*}:keys`, 'COUNT', count),
    );
    const next =
      scanNext !== '0'
        ? `${at.master}:${scanNext}`
        : at.master + 1 < masters.length
          ? `${at.master + 1}:0`
          : undefined;
    return { sessions: await this.readKeysHashes(node, keys), next };
  }

  /**
   * The data keys in each of the keys hashes `keys`, a list per hash, in one pipeline on the
   * node SCAN found them on (its own slots). A read that node refuses (its slot moved meanwhile)
   * goes again through the client, which follows the redirect.
   */
  private async readKeysHashes(node: Redis, keys: readonly string[]): Promise<DataKeyRecord[][]> {
    const hashes = await this.pipelineOnNode(
      node,
      keys,
      (pipeline, key) => pipeline.hgetallBuffer(key),
      (key) => this.client.hgetallBuffer(key),
    );
    return hashes.map((hash, index) => [
      ...dataKeysFromHash(hash as Record<string, Buffer>, `keys hash '${keys[index]}'`).values(),
    ]);
  }

  /**
   * One command per key of `keys`, in one pipeline on `node` (a master: keys SCAN found there
   * are in its own slots, so one round trip on a Cluster too), and their replies in order. A
   * command the node refuses (its slot moved meanwhile, by a resharding) goes again through
   * the client, which follows the redirect.
   */
  async pipelineOnNode(
    node: Redis,
    keys: readonly string[],
    queue: (pipeline: ChainableCommander, key: string) => void,
    again: (key: string) => Promise<unknown>,
  ): Promise<unknown[]> {
    if (keys.length === 0) return [];
    const replies = await this.call(async () => {
      const pipeline = node.pipeline();
      for (const key of keys) queue(pipeline, key);
      const results = await pipeline.exec();
      if (!results) throw new Error('Connection is closed.');
      return results;
    });
    return Promise.all(
      keys.map(async (key, index) => {
        const [error, reply] = replies[index];
        return error ? this.call(() => again(key)) : reply;
      }),
    );
  }

  /**
   * Every key matching `pattern` on every master: the standalone server, or each master of a
   * Cluster (replicas hold copies). A key that exists for the whole scan is found at least once
   * (it may be found twice); one written meanwhile, or moved by a resharding meanwhile, may be
   * missed, and is found by the next scan.
   */
  async scanEveryMaster(pattern: string): Promise<string[]> {
    const found: string[] = [];
    for (const node of await this.masters()) {
      let cursor = '0';
      do {
        const [next, keys] = await this.call(() =>
          node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000),
        );
        found.push(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
    return found;
  }

  /** The standalone client, or a Cluster's masters as it knows them once connected. */
  async masters(): Promise<Redis[]> {
    const client = this.client;
    if (!isRedisCluster(client)) return [client];
    // The node list fills in once the client has loaded the slots: a round trip waits for that.
    if (client.status !== 'ready') await this.call(() => client.ping());
    const masters = client.nodes('master');
    if (masters.length === 0) {
      throw new StorageUnavailableError(
        'The Redis Cluster client knows no master node yet; retry once the cluster is reachable',
      );
    }
    return masters;
  }

  async findOperation(
    ref: SessionRef,
    operationId: string,
  ): Promise<HistoryOperationRecord | undefined> {
    const keys = this.layout.forSession(ref);
    const packed = await this.call(() => this.client.hgetBuffer(keys.operations, operationId));
    return packed ? unpackOperation(operationId, packed, redisSessionLabel(ref)) : undefined;
  }

  /** Item windows read straight from the items zset. */
  itemWindows(keys: RedisSessionKeys): ItemWindowFetch {
    return (start, stop, newestFirst, count) =>
      this.call(() =>
        newestFirst
          ? this.client.zrangeBuffer(
              keys.items,
              start,
              stop,
              'BYSCORE',
              'REV',
              'LIMIT',
              0,
              count,
              'WITHSCORES',
            )
          : this.client.zrangeBuffer(
              keys.items,
              start,
              stop,
              'BYSCORE',
              'LIMIT',
              0,
              count,
              'WITHSCORES',
            ),
      );
  }

  /** The commit version recorded in a session hash ('' when there is none). */
  static versionOf(hash: Record<string, string>): string {
    return hash[SESSION_FIELDS.version] ?? '';
  }
}
