import type {
  AuditChainHeadRecord,
  AuditChainRef,
  AuditRecordQuery,
  DataKeyRecord,
  ErasureLedgerRecord,
  ExpiredItemRecord,
  HistoryOperationRecord,
  JobLease,
  LegalHoldQuery,
  LegalHoldRecord,
  ResealedItem,
  SessionRecord,
  SessionRef,
  StoredAuditRecord,
  StoredChainLink,
  StoredCheckpoint,
  StoredItem,
} from './storage.records.js';

// ---------------------------------------------------------------------------------------------
// Units of work bound to one session. Every method acts on the session the unit was opened for
// (`scope.ref`); none takes a session argument, so no code path can reach another session's
// rows from inside a unit of work.

/**
 * The session row, read side.
 *
 * @publicApi
 */
export interface SessionRowReads {
  find(): Promise<SessionRecord | undefined>;
}

/**
 * The `now` of a {@link SessionRowWrites.lockForWrite} that takes the session's write lock and
 * records no activity (activity never moves back): a job's or a hold's lock is not use of the
 * session, and must not reset its idle clock.
 */
export const LOCK_WITHOUT_ACTIVITY = 0;

/**
 * The session row, write side.
 *
 * @publicApi
 */
export interface SessionRowWrites extends SessionRowReads {
  /**
   * Inserts the record unless the session exists; true when this call created it. The
   * record's tenant and session must be the unit's own.
   */
  insertIfAbsent(record: SessionRecord): Promise<boolean>;
  /**
   * Reserves `count` consecutive sequence numbers and records activity at `now`.
   * Returns the first reserved number, or undefined when the session row does not exist.
   * Atomic against every other writer of the session.
   */
  reserveSequence(count: number, now: number): Promise<number | undefined>;
  /**
   * Records activity at `now` (never moving it back: a later time a writer committed first
   * stays) and takes the session's write lock for the rest of the unit of work, so a clear
   * cannot interleave with an append of another process. False when the session row does not
   * exist.
   */
  lockForWrite(now: number): Promise<boolean>;
  /**
   * Sets the subject of the session row and of every data key of the session to null (an
   * erased subject's id leaves the tables). Absent on an adapter that cannot erase.
   */
  forgetSubject?(): Promise<void>;
  /**
   * Deletes the session row and everything of the session (items, data keys, applied history
   * operations), never its audit chain. False when there was no row. Absent on an adapter that
   * cannot delete sessions.
   */
  deleteSession?(): Promise<boolean>;
}

/**
 * The session's items, read side.
 *
 * @publicApi
 */
export interface ItemReads {
  /**
   * The newest `limit` items not expired at `now`, in ascending sequence order. The
   * newest-first scan stops after `limit` rows, so expired history costs nothing. (Whole
   * histories are read page by page with {@link listVisiblePage}.)
   */
  listVisible(now: number, limit: number): Promise<StoredItem[]>;
  /**
   * Up to `limit` items not expired at `now` with `afterSeq < seq <= throughSeq`, in ascending
   * order: one page of a long history, so a full read never holds it all at once.
   */
  listVisiblePage(
    now: number,
    afterSeq: number,
    throughSeq: number,
    limit: number,
  ): Promise<StoredItem[]>;
}

/**
 * The session's items, write side.
 *
 * @publicApi
 */
export interface ItemWrites extends ItemReads {
  /** Inserts all items in one batched statement (or as few as the backend's limits allow). */
  insertMany(items: readonly StoredItem[]): Promise<void>;
  /** Deletes the given sequence numbers; returns how many rows went. */
  deleteBySeq(seqs: readonly number[]): Promise<number>;
  /** Deletes every item of the session; returns how many rows went. */
  deleteAll(): Promise<number>;
  /**
   * Items sealed under `dekId`, expired or not, by ascending seq after `afterSeq`, at most
   * `limit` (re-encryption of a retiring key). Absent on an adapter without it.
   */
  listSealedUnder?(dekId: string, afterSeq: number, limit: number): Promise<StoredItem[]>;
  /**
   * Replaces each item's data key id and envelope where the item is still sealed under
   * `fromDekId` (conditional on the session, the seq and the key id); returns how many were
   * replaced. Absent on an adapter without it.
   */
  reseal?(fromDekId: string, items: readonly ResealedItem[]): Promise<number>;
}

/**
 * The session's wrapped data keys, read side.
 *
 * @publicApi
 */
export interface DataKeyReads {
  /** The session's key with this id; undefined when there is none (or it is another session's). */
  findById(dekId: string): Promise<DataKeyRecord | undefined>;
  /** The session's active key with the highest generation, if any. */
  findActive(): Promise<DataKeyRecord | undefined>;
  /** The highest generation the session ever had, in any state; 0 when it has none. */
  maxGeneration(): Promise<number>;
  /** Every key of the session, destroyed ones too, by generation. Absent on an adapter without it. */
  listAll?(): Promise<DataKeyRecord[]>;
}

/**
 * The session's wrapped data keys, write side.
 *
 * @publicApi
 */
export interface DataKeyWrites extends DataKeyReads {
  /**
   * Inserts unless a key with the same session and generation exists; true when inserted. The
   * record's tenant and session must be the unit's own.
   */
  insertIfAbsent(record: DataKeyRecord): Promise<boolean>;
  /**
   * Moves the session's active keys older than `generation` to `retiring` (the newer
   * generation takes over writes; retiring keys still open old items).
   */
  retireActiveBelow(generation: number): Promise<number>;
  /** Crypto-shreds every key of the session: state `destroyed`, wrapped bytes wiped. */
  destroyAll(now: number): Promise<number>;
  /**
   * Crypto-shreds the session's keys with these ids that are not destroyed yet; returns how
   * many. Absent on an adapter without it.
   */
  destroyByIds?(dekIds: readonly string[], now: number): Promise<number>;
  /**
   * Replaces a data key's wrapping if it is still wrapped by `expectedKekId` and not destroyed;
   * true when replaced. Only `kek_id` and `wrapped_key` change, never an item.
   */
  replaceWrapping(
    dekId: string,
    expectedKekId: string,
    next: { kekId: string; wrappedKey: Buffer },
  ): Promise<boolean>;
}

/**
 * Applied history transactions (agents-core `applyHistoryTransaction`), read side.
 *
 * @publicApi
 */
export interface HistoryOperationReads {
  find(operationId: string): Promise<HistoryOperationRecord | undefined>;
}

/**
 * Applied history transactions, write side.
 *
 * @publicApi
 */
export interface HistoryOperationWrites extends HistoryOperationReads {
  /** Records the operation; false if the id was already recorded (another writer won). */
  insertIfAbsent(record: HistoryOperationRecord): Promise<boolean>;
  deleteAll(): Promise<number>;
}

/**
 * The legal holds that cover the unit's session.
 *
 * @publicApi
 */
export interface SessionHoldReads {
  /**
   * The active holds on the session or on its subject (as its row names it), by hold id. Sees
   * every hold committed before the call, also inside a write unit that began earlier (SQL: a
   * locking read), so a unit that checks after taking the session's write lock cannot miss a
   * hold whose placing waited on that lock.
   */
  covering(): Promise<LegalHoldRecord[]>;
}

/**
 * What a read-only unit of work may do: read one session's rows. It has no write methods.
 *
 * @publicApi
 */
export interface SessionReadScope {
  /** The session this unit of work is bound to. */
  readonly ref: SessionRef;
  readonly session: SessionRowReads;
  readonly items: ItemReads;
  readonly dataKeys: DataKeyReads;
  readonly historyOperations: HistoryOperationReads;
  /** The holds covering the session; present when the storage keeps {@link LegalHoldStorage}. */
  readonly holds?: SessionHoldReads;
}

/**
 * Appends to one audit chain inside a unit of work. Records persist in the same atomic step as
 * the unit's other writes, exactly once per committed unit (also when Redis runs the work again
 * after a conflict: only the last run's records are written), and never under a session's
 * expiry (an audit record outlives the items it describes). A unit that throws persists none.
 *
 * @publicApi
 */
export interface AuditChainWrites {
  /**
   * The chain's head, undefined for a chain with no record yet. From here to the end of the
   * unit no other unit appends to the chain (SQL: a row lock; Redis: the commit fails and the
   * work runs again).
   */
  lockHead(chainId: string): Promise<AuditChainHeadRecord | undefined>;
  /**
   * Appends records that continue the head `lockHead` returned: seq rising by one from it,
   * each `prevMac` the MAC before it. Anything else is refused with an IntegrityError and
   * the unit fails. Each record's tenant and session must be the unit's own.
   */
  append(records: readonly StoredAuditRecord[]): Promise<void>;
}

/**
 * What a transaction may do: read and write one session's rows, atomically, and append to the
 * session's audit chain in the same step (when the adapter keeps an audit trail).
 *
 * @publicApi
 */
export interface SessionWriteScope extends SessionReadScope {
  readonly session: SessionRowWrites;
  readonly items: ItemWrites;
  readonly dataKeys: DataKeyWrites;
  readonly historyOperations: HistoryOperationWrites;
  /** The session's audit chain; present when the storage offers {@link AuditStorage}. */
  readonly audit?: AuditChainWrites;
  /**
   * Fences the unit with a job's lease: throws LeaseLostError unless `lease.token` is the
   * job's current token and unexpired by the storage's clock, and from then until the unit
   * ends no other owner can take the lease (SQL: the lease row stays locked), so a job that
   * lost its lease commits nothing. Present when the storage keeps {@link LeaseStorage}.
   */
  readonly fence?: (lease: JobLease) => Promise<void>;
}

/**
 * One atomic unit over several sessions of one tenant ({@link SessionStorage.transactionAcross}):
 * a write scope per session, in the order asked, the tenant's control chain, and the erasure
 * ledger, all committed together or not at all.
 *
 * @publicApi
 */
export interface MultiSessionUnit {
  /** One scope per session asked for, in that order. */
  readonly scopes: readonly SessionWriteScope[];
  /** The tenant's control chain; present when the storage offers {@link AuditStorage}. */
  readonly control?: AuditChainWrites;
  /** The erasure ledger, in this unit; present when the storage keeps one. */
  readonly erasureLedger?: Pick<ErasureLedgerStorage, 'insert'>;
}

/**
 * The audit trail's own storage: append-only records and per-chain heads, kept by the same
 * backend as the sessions.
 *
 * @publicApi
 */
export interface AuditStorage {
  /**
   * Runs work that appends to one chain only, atomically: the event of a read, of a refused or
   * failed attempt (which changed nothing, so it commits on its own), or of the tenant's control
   * chain. Adapters with optimistic concurrency run `work` again after a conflicting commit.
   */
  transaction<T>(chain: AuditChainRef, work: (audit: AuditChainWrites) => Promise<T>): Promise<T>;
  /** Up to `limit` records of a chain with `seq > afterSeq`, in ascending seq order. */
  readChain(chain: AuditChainRef, afterSeq: number, limit: number): Promise<StoredAuditRecord[]>;
  /**
   * As {@link readChain}, only the fields a verifier reads: what an adapter can fetch faster than
   * whole records implements it (a verifier falls back to `readChain`).
   */
  readChainLinks?(
    chain: AuditChainRef,
    afterSeq: number,
    limit: number,
  ): Promise<StoredChainLink[]>;
  /** The head of a chain, undefined when it has no record. */
  findHead(chain: AuditChainRef): Promise<AuditChainHeadRecord | undefined>;
  /**
   * Up to `limit` heads of the tenant's chains whose chain id sorts after `afterChainId` by
   * its UTF-8 bytes (`''` for the first page), in that order.
   */
  listHeads(tenantId: string, afterChainId: string, limit: number): Promise<AuditChainHeadRecord[]>;
  /**
   * One page of a tenant's records about a session, a subject or an actor in a time range, in
   * (time, chain id by bytes, seq) order, served by an index: the access report.
   */
  listRecords(query: AuditRecordQuery): Promise<StoredAuditRecord[]>;
  /**
   * Stores a tenant's next checkpoint unless one with its seq exists (another replica took it
   * first): true when stored. Absent on an adapter that keeps no checkpoints yet.
   */
  appendCheckpoint?(checkpoint: StoredCheckpoint): Promise<boolean>;
  /** The tenant's checkpoint with the highest seq, if any. */
  latestCheckpoint?(tenantId: string): Promise<StoredCheckpoint | undefined>;
}

// ---------------------------------------------------------------------------------------------
// Work across sessions (KEK rotation today; expired-item scans and lookups by subject later):
// an optional capability, apart from the per-session units of work. Job leases have a port of
// their own ({@link LeaseStorage}).

/**
 * A page of {@link StorageMaintenance.listDataKeysWrappedByOtherKek}.
 *
 * @publicApi
 */
export interface DataKeyPage {
  readonly records: DataKeyRecord[];
  /** Where the next page starts; undefined when there is none. */
  readonly cursor: string | undefined;
}

/**
 * How old the data keys are, over every session (from {@link StorageMaintenance.dataKeyAges}),
 * for the key rotation's health check and `keys status`. Times are milliseconds since the epoch.
 *
 * @publicApi
 */
export interface DataKeyAges {
  /** Data keys in state `active` (one per session that has sealed or will seal). */
  readonly activeKeys: number;
  /** When the oldest active key was created; null when there is none. */
  readonly oldestActiveCreatedAt: number | null;
  /** Active keys created before the time asked about (the policy's age limit). */
  readonly activeKeysCreatedBefore: number;
  /** Data keys in state `retiring`: replaced, their items not yet all re-encrypted. */
  readonly retiringKeys: number;
  /**
   * When the longest-waiting retiring key was retired: the creation time of the key that
   * replaced it (its session's next generation); null when no key is retiring.
   */
  readonly oldestRetiredAt: number | null;
}

/**
 * Cross-session scans. Pages are resumable through an opaque cursor, so an adapter over several
 * nodes (a Redis Cluster scans every master) can encode where it is in each. Pages may overlap:
 * callers change what they find through a session's unit of work, conditionally.
 *
 * @publicApi
 */
export interface StorageMaintenance {
  readonly supported: true;
  /**
   * How many units of a job (a session's purge batch, a retiring key's re-encryption) the store
   * runs side by side to advantage. Absent, or 1, where units queue for one connection (SQLite,
   * memory) or share one (Redis); on a server database, half its connection pool, at most 4,
   * so the app's own calls keep the rest.
   */
  jobConcurrency?(): number;
  /**
   * One page of the data keys (of every session) that are not destroyed and not wrapped by
   * `kekId`, for KEK rotation. Pass the returned cursor to get the next page.
   */
  listDataKeysWrappedByOtherKek(
    kekId: string,
    cursor: string | undefined,
    limit: number,
  ): Promise<DataKeyPage>;
  /** How many data keys that are not destroyed each root key wraps. */
  countDataKeysByKek(): Promise<Record<string, number>>;
  /**
   * One page of the `retiring` data keys (of every session), by key id, for their
   * re-encryption. Pass the returned cursor to get the next page. Absent on an adapter that
   * cannot re-encrypt yet.
   */
  listRetiringDataKeys?(cursor: string | undefined, limit: number): Promise<DataKeyPage>;
  /**
   * How old the active and retiring data keys are, over every session but those of tenant
   * `exceptTenantId` (the audit trail's own keys); `createdBefore` is the time active keys are
   * counted as created before. A full scan of the data keys: callers cache it. Absent on an
   * adapter that cannot tell.
   */
  dataKeyAges?(createdBefore: number, exceptTenantId: string): Promise<DataKeyAges>;
  /**
   * One page of the items (of every session) whose expiry is at or before `now`, by expiry,
   * then tenant, session and seq (ids by their bytes), served by the expiry index. Pass the
   * returned cursor to get the next page; items the caller left in place are not found again.
   * Absent on an adapter that cannot scan by expiry yet.
   */
  listExpiredItems?(
    now: number,
    cursor: string | undefined,
    limit: number,
  ): Promise<ExpiredItemPage>;
  /**
   * One page of the session rows (of every tenant) whose last activity is before `before`, by
   * (last activity, tenant bytes, session bytes). Pass the returned cursor for the next page.
   * Absent on an adapter that cannot scan by activity.
   */
  listIdleSessions?(
    before: number,
    cursor: string | undefined,
    limit: number,
  ): Promise<IdleSessionPage>;
  /**
   * Up to `limit` session rows of the tenant whose subject is `subjectId`, by session id bytes,
   * after `afterSessionId` ('' for the first page), served by an index. Absent on an adapter
   * that cannot look sessions up by subject.
   */
  listSessionsOfSubject?(
    tenantId: string,
    subjectId: string,
    afterSessionId: string,
    limit: number,
  ): Promise<SessionRecord[]>;
}

/**
 * A page of {@link StorageMaintenance.listIdleSessions}.
 *
 * @publicApi
 */
export interface IdleSessionPage {
  readonly sessions: SessionRecord[];
  /** Where the next page starts; undefined when there is none. */
  readonly cursor: string | undefined;
}

/**
 * A page of {@link StorageMaintenance.listExpiredItems}.
 *
 * @publicApi
 */
export interface ExpiredItemPage {
  readonly items: ExpiredItemRecord[];
  /** Where the next page starts; undefined when there is none. */
  readonly cursor: string | undefined;
}

/**
 * An adapter's up-front word that it cannot do cross-session work, and why.
 *
 * @publicApi
 */
export interface MaintenanceUnsupported {
  readonly supported: false;
  /** What is missing and what to do, for the error a caller raises before it starts. */
  readonly reason: string;
}

// ---------------------------------------------------------------------------------------------
// Leases of scheduled jobs, so that one replica of many acts for a job at a time.

/**
 * Leases of scheduled jobs: one holder per job at a time, each taking fenced by a rising token.
 * Every operation is one atomic step on the backend, timed by the backend's own clock (not the
 * caller's), so replicas with skewed clocks agree on who holds a lease.
 *
 * @publicApi
 */
export interface LeaseStorage {
  /**
   * Takes `job`'s lease for `owner` for `ttlMs` when nobody holds it or it lapsed (token + 1),
   * or extends it when `owner` already holds it unexpired (same token). Undefined while
   * another owner holds it.
   */
  acquire(job: string, owner: string, ttlMs: number): Promise<JobLease | undefined>;
  /** Extends the lease to now + ttlMs while `lease.token` is current and unexpired; undefined once lost. */
  renew(lease: JobLease, ttlMs: number): Promise<JobLease | undefined>;
  /** Gives the lease up (lapses it now) if `lease.token` is still current; otherwise does nothing. */
  release(lease: JobLease): Promise<void>;
  /** The job's lease as stored, held or lapsed; undefined when it was never taken. */
  current(job: string): Promise<JobLease | undefined>;
}

// ---------------------------------------------------------------------------------------------
// Legal holds and the erasure ledger: records of their own, outside any session's unit of work.

/**
 * Legal holds. Each call is one atomic step. Placing a hold stores it here first; the caller
 * then takes the write lock of each session it covers, so a unit already deciding a deletion
 * ends before the placing returns and every later unit sees the hold
 * ({@link SessionHoldReads.covering}).
 *
 * @publicApi
 */
export interface LegalHoldStorage {
  /** Stores a new hold; throws when its id exists. */
  insert(hold: LegalHoldRecord): Promise<void>;
  /**
   * Releases the hold at `releasedAt` by `releasedBy` if it is active. Returns the hold as
   * stored afterwards (released now, or already before: compare `releasedAt`), or undefined
   * when there is no hold with that id.
   */
  release(
    holdId: string,
    releasedAt: number,
    releasedBy: string,
  ): Promise<LegalHoldRecord | undefined>;
  find(holdId: string): Promise<LegalHoldRecord | undefined>;
  /** One page of holds, by hold id bytes. */
  list(query: LegalHoldQuery): Promise<LegalHoldRecord[]>;
  /** The active holds of the tenant on `sessionId` or, when given, on `subjectId`, by hold id. */
  activeCovering(
    tenantId: string,
    sessionId: string,
    subjectId: string | null,
  ): Promise<LegalHoldRecord[]>;
  /** The active holds of the tenant on `subjectId` itself (not on its sessions), by hold id. */
  activeOnSubject(tenantId: string, subjectId: string): Promise<LegalHoldRecord[]>;
}

/**
 * The erasure ledger. Each call is one atomic step.
 *
 * @publicApi
 */
export interface ErasureLedgerStorage {
  /** Stores a pending entry; throws when its id exists. */
  insert(entry: ErasureLedgerRecord): Promise<void>;
  /** Completes a pending entry with its receipt; false when it is unknown or already complete. */
  complete(erasureId: string, completedAt: number, receipt: string): Promise<boolean>;
  find(erasureId: string): Promise<ErasureLedgerRecord | undefined>;
  /** Up to `limit` entries by erasure id bytes (UUIDv7: time order) after `afterErasureId`. */
  list(afterErasureId: string, limit: number): Promise<ErasureLedgerRecord[]>;
}

// ---------------------------------------------------------------------------------------------

/** Injection token for {@link SessionStorage}. */
export const SESSION_STORAGE = Symbol('SESSION_STORAGE');

/**
 * The storage port. Adapters: in-memory, TypeORM (better-sqlite3, Postgres, MySQL/MariaDB), Redis.
 *
 * @publicApi
 */
export interface SessionStorage {
  /** Short name of the backend, for logs and health output (`memory`, `sqlite`, ...). */
  readonly backend: string;
  /** Runs read-only work on one session's rows against a consistent view. */
  read<T>(ref: SessionRef, work: (scope: SessionReadScope) => Promise<T>): Promise<T>;
  /**
   * Runs work on one session's rows atomically: every write made through `scope` commits when
   * `work` resolves and none survives when it throws. The error is rethrown unchanged.
   *
   * Adapters with optimistic concurrency (Redis) run `work` again after a conflicting commit,
   * so it must have no effect outside `scope`.
   */
  transaction<T>(ref: SessionRef, work: (scope: SessionWriteScope) => Promise<T>): Promise<T>;
  /**
   * Runs work on several sessions of one tenant, its control chain and the erasure ledger in
   * one transaction: everything written through the unit commits when `work` resolves, nothing
   * when it throws. Sessions are locked in the order given (give them in a stable order, e.g. by
   * id bytes, so two such units cannot deadlock). Absent on an adapter whose sessions cannot
   * share a transaction (Redis: each session lives in a hash slot of its own).
   */
  transactionAcross?<T>(
    tenantId: string,
    refs: readonly SessionRef[],
    work: (unit: MultiSessionUnit) => Promise<T>,
  ): Promise<T>;
  /**
   * Cross-session work, or the reason the adapter cannot do it. Absent means unsupported
   * (a host's own adapter need not offer it). Check it with {@link supportsMaintenance}.
   */
  readonly maintenance?: StorageMaintenance | MaintenanceUnsupported;
  /** The audit trail's records and chain heads; absent when the adapter keeps none. */
  readonly audit?: AuditStorage;
  /** Leases of scheduled jobs; absent on an adapter without them (a host's own, say). */
  readonly leases?: LeaseStorage;
  /** Legal holds; absent on an adapter without them. */
  readonly holds?: LegalHoldStorage;
  /** The erasure ledger; absent on an adapter without one. */
  readonly erasureLedger?: ErasureLedgerStorage;
  /** Releases what the adapter itself opened (not a host's DataSource). Idempotent. */
  close(): Promise<void>;
}

/** A storage whose adapter can do cross-session work. */
export type MaintainableStorage = SessionStorage & { readonly maintenance: StorageMaintenance };

/**
 * True when `storage` offers {@link StorageMaintenance}.
 *
 * @publicApi
 */
export function supportsMaintenance(storage: SessionStorage): storage is MaintainableStorage {
  return storage.maintenance?.supported === true;
}

/** Why `storage` offers no {@link StorageMaintenance}, for an error message. */
export function maintenanceUnsupportedReason(storage: SessionStorage): string {
  const maintenance = storage.maintenance;
  if (maintenance && !maintenance.supported) return maintenance.reason;
  return `the ${storage.backend} storage adapter offers no cross-session maintenance`;
}
