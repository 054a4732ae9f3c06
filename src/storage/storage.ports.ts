import type {
  DataKeyRecord,
  HistoryOperationRecord,
  SessionRecord,
  SessionRef,
  StoredItem,
} from './storage.records.js';

/** Session rows. */
export interface SessionRecordRepository {
  find(ref: SessionRef): Promise<SessionRecord | undefined>;
  /** Inserts the record unless the session exists; true when this call created it. */
  insertIfAbsent(record: SessionRecord): Promise<boolean>;
  /**
   * Reserves `count` consecutive sequence numbers and records activity at `now`.
   * Returns the first reserved number, or undefined when the session row does not exist.
   * Atomic against every other writer of the session.
   */
  reserveSequence(ref: SessionRef, count: number, now: number): Promise<number | undefined>;
  /**
   * Records activity at `now` and takes the session's write lock for the rest of the unit of
   * work, so a clear cannot interleave with an append of another process. False when the
   * session row does not exist.
   */
  lockForWrite(ref: SessionRef, now: number): Promise<boolean>;
}

/** Item rows. */
export interface ItemRepository {
  /** Inserts all items in one batched statement (or as few as the backend's limits allow). */
  insertMany(ref: SessionRef, items: readonly StoredItem[]): Promise<void>;
  /**
   * The newest `limit` items not expired at `now`, in ascending sequence order. The
   * newest-first scan stops after `limit` rows, so expired history costs nothing. (Whole
   * histories are read page by page with {@link listVisiblePage}.)
   */
  listVisible(ref: SessionRef, now: number, limit: number): Promise<StoredItem[]>;
  /**
   * Up to `limit` items not expired at `now` with `afterSeq < seq <= throughSeq`, in ascending
   * order: one page of a long history, so a full read never holds it all at once.
   */
  listVisiblePage(
    ref: SessionRef,
    now: number,
    afterSeq: number,
    throughSeq: number,
    limit: number,
  ): Promise<StoredItem[]>;
  /** Deletes the given sequence numbers; returns how many rows went. */
  deleteBySeq(ref: SessionRef, seqs: readonly number[]): Promise<number>;
  /** Deletes every item of the session; returns how many rows went. */
  deleteAll(ref: SessionRef): Promise<number>;
}

/** Wrapped data keys. */
export interface DataKeyRepository {
  findById(dekId: string): Promise<DataKeyRecord | undefined>;
  /** The session's active key with the highest generation, if any. */
  findActive(ref: SessionRef): Promise<DataKeyRecord | undefined>;
  /** The highest generation the session ever had, in any state; 0 when it has none. */
  maxGeneration(ref: SessionRef): Promise<number>;
  /** Inserts unless a key with the same session and generation exists; true when inserted. */
  insertIfAbsent(record: DataKeyRecord): Promise<boolean>;
  /**
   * Moves the session's active keys older than `generation` to `retiring` (the newer
   * generation takes over writes; retiring keys still open old items).
   */
  retireActiveBelow(ref: SessionRef, generation: number): Promise<number>;
  /** Crypto-shreds every key of the session: state `destroyed`, wrapped bytes wiped. */
  destroyAllForSession(ref: SessionRef, now: number): Promise<number>;
  /**
   * One page of the data keys (of every session) that are not destroyed and not wrapped by
   * `kekId`, for KEK rotation. Pass the returned cursor to get the next page; undefined means
   * the scan is done. Pages may overlap: callers update conditionally.
   */
  listWrappedByOtherKek(
    kekId: string,
    cursor: string | undefined,
    limit: number,
  ): Promise<DataKeyPage>;
  /**
   * Replaces a data key's wrapping if it is still wrapped by `expectedKekId` and not destroyed;
   * true when replaced. Only `kek_id` and `wrapped_key` change, never an item.
   */
  replaceWrapping(
    key: SessionRef & { dekId: string },
    expectedKekId: string,
    next: { kekId: string; wrappedKey: Buffer },
  ): Promise<boolean>;
  /** How many data keys that are not destroyed each root key wraps. */
  countByKek(): Promise<Record<string, number>>;
}

/** A page of {@link DataKeyRepository.listWrappedByOtherKek}. */
export interface DataKeyPage {
  readonly records: DataKeyRecord[];
  /** Where the next page starts; undefined when there is none. */
  readonly cursor: string | undefined;
}

/** Applied history transactions (agents-core `applyHistoryTransaction`). */
export interface HistoryOperationRepository {
  find(ref: SessionRef, operationId: string): Promise<HistoryOperationRecord | undefined>;
  /** Records the operation; false if the id was already recorded (another writer won). */
  insertIfAbsent(ref: SessionRef, record: HistoryOperationRecord): Promise<boolean>;
  deleteAll(ref: SessionRef): Promise<number>;
}

/**
 * Everything one unit of work can touch. Later layers (the audit trail) add their own
 * repositories here, so an audit record commits or rolls back with the change it describes.
 */
export interface StorageScope {
  readonly sessions: SessionRecordRepository;
  readonly items: ItemRepository;
  readonly dataKeys: DataKeyRepository;
  readonly historyOperations: HistoryOperationRepository;
}

/** Injection token for {@link SessionStorage}. */
export const SESSION_STORAGE = Symbol('SESSION_STORAGE');

/**
 * The storage port. Adapters: in-memory, TypeORM (better-sqlite3, Postgres, MySQL/MariaDB), Redis.
 */
export interface SessionStorage {
  /** Short name of the backend, for logs and health output (`memory`, `sqlite`, ...). */
  readonly backend: string;
  /** Runs read-only work against a consistent view. */
  read<T>(work: (scope: StorageScope) => Promise<T>): Promise<T>;
  /**
   * Runs work atomically: every write made through `scope` commits when `work` resolves and
   * none survives when it throws. The error is rethrown unchanged.
   *
   * A unit of work touches one session. Adapters with optimistic concurrency (Redis) run `work`
   * again after a conflicting commit, so it must have no effect outside `scope`.
   */
  transaction<T>(work: (scope: StorageScope) => Promise<T>): Promise<T>;
  /** Releases what the adapter itself opened (not a host's DataSource). Idempotent. */
  close(): Promise<void>;
}
