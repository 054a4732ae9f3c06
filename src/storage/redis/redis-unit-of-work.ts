import { randomBytes } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import { IntegrityError } from '../../errors/index.js';
import type {
  AdapterDataKeys,
  AdapterHolds,
  AdapterScope,
  AdapterSessionRows,
} from '../adapter-scope.js';
import type {
  AuditChainRef,
  DataKeyRecord,
  HistoryOperationRecord,
  JobLease,
  LegalHoldRecord,
  SessionRecord,
  SessionRef,
  StoredItem,
} from '../storage.records.js';
import { copyDataKeyRecord, copyStoredItem } from '../storage.records.js';
import {
  AuditChainBuffer,
  chainRegistrations,
  indexEntryKeys,
  type AuditChainRegistration,
} from './redis-audit-appends.js';
import { COMMIT_OP, SESSION_COMMIT_KEYS } from './redis-commit-script.js';
import { expiryIndexEntry } from './redis-expiry-index.js';
import { redisSessionTag, type RedisSessionKeys } from './redis-keys.js';
import type { SubjectIndexEntry } from './redis-subject-index.js';
import {
  assertDataKeyId,
  packDataKey,
  packItem,
  packOperation,
  redisSessionLabel,
  SESSION_FIELDS,
  sessionHashFlag,
  sessionHashNumber,
  sessionRecordFields,
  sessionRecordFromHash,
  unpackItem,
  unpackOperation,
} from './redis-record-codec.js';
import {
  highestGeneration,
  newestActiveKey,
  RedisSessionReads,
  scanVisibleItems,
  type ItemScanRange,
  type ItemWindowFetch,
} from './redis-session-reads.js';

/**
 * Raised by a read inside a unit of work that finds another writer committed since the
 * snapshot: the unit is run again from scratch, as after a failed commit.
 */
export class SnapshotChangedSignal extends Error {
  constructor() {
    super('The session changed while a unit of work read it; the unit of work is run again');
  }
}

/** What a unit of work hands to the commit script. */
export interface UnitCommit {
  readonly keys: RedisSessionKeys;
  readonly tag: string;
  /** How error messages name the session. */
  readonly owner: string;
  /** The snapshot's version, '' when the session hash had none. */
  readonly expectedVersion: string;
  /** Data keys inserted by the unit: their id pointers are written before the commit. */
  readonly newDataKeyIds: readonly string[];
  /** The buffered writes as op code + arguments, in the order the unit made them. */
  readonly ops: ReadonlyArray<string | Buffer>;
  /** Epoch ms for PEXPIREAT, or 0 for PERSIST. */
  readonly expireAt: number;
  /**
   * The session and the subject its hash names, when the commit would give the session's keys
   * an expiry: an active legal hold on either turns it into PERSIST (checked right before the
   * commit), so Redis never drops held data. Undefined when the commit persists them anyway.
   */
  readonly expiryHoldCheck:
    | { readonly tenantId: string; readonly sessionId: string; readonly subjectId: string | null }
    | undefined;
  /** KEYS after the session's four: records zset, head and index zsets of each audit chain. */
  readonly auditKeys: readonly string[];
  /** The audit chains the unit appends to, for messages. */
  readonly auditChains: readonly AuditChainRef[];
  /** Chains getting their first record: they join their tenant's index before the commit. */
  /** Every audit chain appended to, with its subjects and actors, for their registries. */
  readonly auditRegistrations: readonly AuditChainRegistration[];
  /** The chains getting their first record: registered before the commit, unasked. */
  readonly newAuditRegistrations: readonly AuditChainRegistration[];
  /** Ops checking that the subject and actor indexes of the other chains exist (reply 5). */
  readonly auditIndexChecks: readonly string[];
  /** Job leases the unit was fenced with: checked again at (standalone: in) the commit. */
  readonly leases: readonly JobLease[];
  /** The unit's id in the pins it put on those leases. */
  readonly unitId: string;
  /**
   * The subject index entry of a session this unit creates with a subject: added before the
   * commit, so the index never misses a committed session.
   */
  readonly subjectIndexEntry: SubjectIndexEntry | undefined;
  /**
   * Entries that go stale once the commit applies (the unit forgot the subject or deleted the
   * session), with the version the commit gives the session: removed after it, best effort.
   */
  readonly staleSubjectEntries: ReadonlyArray<Omit<SubjectIndexEntry, 'token'>>;
  /** The session version once this commit applied. */
  readonly committedVersion: number;
}

/** What a Redis unit of work offers: the optional members of {@link AdapterScope} too. */
export interface RedisAdapterScope extends AdapterScope {
  readonly sessions: Required<AdapterSessionRows>;
  readonly dataKeys: Required<AdapterDataKeys>;
  /** The active holds covering the session (absent: the unit was given no hold reader). */
  readonly holds?: AdapterHolds;
}

/** The active holds of a tenant on a session or on a subject (LegalHoldStorage.activeCovering). */
export type HoldsCovering = (
  tenantId: string,
  sessionId: string,
  subjectId: string | null,
) => Promise<LegalHoldRecord[]>;

/** How long the version of a deleted session stays, so units that read it before conflict. */
export const DELETED_SESSION_VERSION_MS = 86_400_000;

/**
 * Fences unit `unitId` with `lease`: throws LeaseLostError unless the lease is still held (its
 * owner and token, unexpired by the server's clock, or pinned by this unit), and pins it.
 */
export type LeaseFence = (lease: JobLease, unitId: string) => Promise<void>;

const copyOperation = (record: HistoryOperationRecord): HistoryOperationRecord => ({
  ...record,
  digest: Buffer.from(record.digest),
});

/**
 * The one session a unit of work touches: its snapshot plus the unit's buffered writes, which
 * every read inside the unit sees. Items and operations are not in the snapshot; they are read
 * on demand, each read checking that the session version is still the snapshot's.
 */
class SessionWorkspace {
  readonly expectedVersion: string;
  record: SessionRecord | undefined;
  recordChanged = false;
  /** Largest expiresAt of any item ever inserted (0: none), for the expiry backstop. */
  maxExpiresAt: number;
  /** Whether an item without expiry was ever inserted. */
  neverExpires: boolean;
  /** Whether every stored item is in the expiry index (false: written before the index). */
  readonly expiryIndexed: boolean;
  /** The subject the stored session hash names (null: none, or no session). */
  readonly storedSubject: string | null;
  /** Whether this unit inserted the session record. */
  inserted = false;
  /** Whether this unit deleted the stored session. */
  deleted = false;
  expiryChanged = false;
  readonly dataKeys: Map<string, DataKeyRecord>;
  readonly changedDataKeys = new Set<string>();
  readonly newDataKeyIds = new Set<string>();
  /** True once the unit deleted every stored item: only buffered inserts remain. */
  itemsCleared = false;
  /** Stored items the unit deleted. */
  readonly deletedStoredSeqs = new Set<number>();
  /** Items the unit inserted and still holds. */
  readonly insertedItems = new Map<number, StoredItem>();
  /** Stored items the unit sealed again under another data key, as they will be stored. */
  readonly resealedItems = new Map<number, StoredItem>();
  operationsCleared = false;
  /** Operations looked up or inserted: a record, or null for "not recorded". */
  readonly knownOperations = new Map<string, HistoryOperationRecord | null>();
  readonly insertedOperationIds = new Set<string>();
  /** Item and operation writes in order (their order matters: a clear, then an insert). */
  readonly ops: Array<string | Buffer> = [];

  /** How error messages name the session. */
  readonly owner: string;

  constructor(
    readonly ref: SessionRef,
    readonly tag: string,
    readonly keys: RedisSessionKeys,
    hash: Record<string, string>,
    dataKeys: Map<string, DataKeyRecord>,
  ) {
    this.owner = redisSessionLabel(ref);
    // The commit script increments the version: a damaged one would fail it half-way.
    if (hash[SESSION_FIELDS.version] !== undefined) {
      sessionHashNumber(ref, hash, SESSION_FIELDS.version);
    }
    this.expectedVersion = RedisSessionReads.versionOf(hash);
    this.record = sessionRecordFromHash(ref, hash);
    this.maxExpiresAt = sessionHashNumber(ref, hash, SESSION_FIELDS.maxExpiresAt, {
      fallback: 0,
    });
    this.neverExpires = sessionHashFlag(ref, hash, SESSION_FIELDS.neverExpires);
    this.expiryIndexed = sessionHashFlag(ref, hash, SESSION_FIELDS.expiryIndexed);
    this.storedSubject = this.record?.subjectId ?? null;
    this.dataKeys = dataKeys;
  }

  get hasWrites(): boolean {
    return (
      this.recordChanged ||
      this.expiryChanged ||
      this.changedDataKeys.size > 0 ||
      this.ops.length > 0
    );
  }

  isStoredItemHidden(seq: number): boolean {
    return this.itemsCleared || this.deletedStoredSeqs.has(seq);
  }
}

/** Items read per window when looking for those under one data key. */
const SEALED_UNDER_WINDOW = 500;

function positionTampered(owner: string): IntegrityError {
  return new IntegrityError(
    `An item to delete from ${owner} in Redis is not at its own position (a score differs from its sequence number, or two members share it): the sorted set was altered outside this module. Nothing was deleted; restore it from a backup or clear the session`,
  );
}

/** The session of a session's audit chain (a control chain has none, and no session unit). */
function sessionOf(chain: AuditChainRef): SessionRef {
  if (chain.sessionId === null) {
    throw new Error("A session's unit of work cannot append to the tenant's control chain");
  }
  return { tenantId: chain.tenantId, sessionId: chain.sessionId };
}

function assertSessionExists(space: SessionWorkspace, what: string): void {
  if (!space.record) throw new Error(`${what} for a session that does not exist`);
}

/**
 * One attempt of a unit of work on Redis: builds the scope `work` runs against, buffers its
 * writes, and describes them for the commit. Return values come from the snapshot and the
 * buffer; the commit's compare-and-set on the version makes them true at commit time.
 */
export class RedisUnitOfWork {
  readonly scope: RedisAdapterScope;
  /** Set when a read saw another writer's commit: the attempt must not commit. */
  invalidated = false;
  private workspace: Promise<SessionWorkspace> | undefined;
  private workspaceTag: string | undefined;
  private loaded: SessionWorkspace | undefined;
  /** Audit chains this attempt locked and appended to; a new unit (attempt) starts empty. */
  private readonly auditChains = new AuditChainBuffer();
  /** Leases this attempt was fenced with (and pinned), by job. */
  private readonly leases = new Map<string, JobLease>();
  /** This attempt's id in the pins of its leases. */
  readonly unitId = randomBytes(12).toString('base64url');
  /** The error of a fence that failed: the unit must not commit, even if the work caught it. */
  lost: Error | undefined;
  /** Jobs whose lease this attempt pinned (or tried to): their pins go when it ends. */
  readonly pinnedJobs = new Set<string>();

  constructor(
    private readonly reads: RedisSessionReads,
    /** Backstop added to the last expiry, in ms. */
    private readonly expiryBackstopMs: number,
    /** Checks and pins a job lease on the server (absent: the unit offers no fence). */
    private readonly leaseFence?: LeaseFence,
    /** Reads the active holds (absent: the unit offers no hold check). */
    private readonly holdsCovering?: HoldsCovering,
  ) {
    this.scope = this.createScope();
  }

  /** The commit of the buffered writes, or undefined when the unit wrote nothing. */
  describeCommit(now: number): UnitCommit | undefined {
    const space = this.loaded;
    const audited = this.auditChains.appended;
    if (!space || (!space.hasWrites && audited.length === 0)) return undefined;
    const ops = [...space.ops];
    if (space.recordChanged && space.record) {
      for (const [field, value] of Object.entries(sessionRecordFields(space.record))) {
        if (value === undefined) ops.push(COMMIT_OP.deleteSessionField, field);
        else ops.push(COMMIT_OP.setSessionField, field, value);
      }
    }
    if (space.expiryChanged) {
      ops.push(COMMIT_OP.setSessionField, SESSION_FIELDS.maxExpiresAt, String(space.maxExpiresAt));
      ops.push(
        COMMIT_OP.setSessionField,
        SESSION_FIELDS.neverExpires,
        space.neverExpires ? '1' : '0',
      );
    }
    for (const dekId of space.changedDataKeys) {
      ops.push(COMMIT_OP.setDataKey, dekId, packDataKey(space.dataKeys.get(dekId)!));
    }
    // Each chain's keys join KEYS (the script may touch only declared keys on a Cluster); the
    // ops name them by index.
    const auditKeys: string[] = [];
    const auditIndexChecks: string[] = [];
    for (const locked of audited) {
      auditKeys.push(locked.keys.records, locked.keys.head);
      const records = String(SESSION_COMMIT_KEYS + auditKeys.length - 1);
      const head = String(SESSION_COMMIT_KEYS + auditKeys.length);
      ops.push(
        COMMIT_OP.auditChain,
        records,
        head,
        locked.headBytes,
        locked.newHead!,
        locked.members[0][0],
      );
      for (const [seq, member] of locked.members) {
        ops.push(COMMIT_OP.auditRecord, records, seq, member);
      }
      // The access-report indexes, written with the records they point at.
      const index = indexEntryKeys(locked);
      const first = SESSION_COMMIT_KEYS + auditKeys.length;
      auditKeys.push(...index.keys);
      for (const [position, member] of index.entries) {
        ops.push(COMMIT_OP.auditIndex, String(first + position), member);
      }
      for (const position of index.mustExist) {
        auditIndexChecks.push(COMMIT_OP.auditIndexExists, String(first + position));
      }
    }
    const committedVersion = Number(space.expectedVersion || '0') + 1;
    const expireAt = this.expireAt(space, now);
    const subject = space.record?.subjectId ?? null;
    const ref = { tenantId: space.ref.tenantId, sessionId: space.ref.sessionId };
    return {
      subjectIndexEntry:
        space.inserted && subject !== null
          ? { ...ref, subjectId: subject, token: committedVersion }
          : undefined,
      staleSubjectEntries:
        space.storedSubject !== null && subject !== space.storedSubject
          ? [{ ...ref, subjectId: space.storedSubject }]
          : [],
      committedVersion,
      keys: space.keys,
      tag: space.tag,
      owner: space.owner,
      expectedVersion: space.expectedVersion,
      newDataKeyIds: [...space.newDataKeyIds],
      ops,
      expireAt,
      expiryHoldCheck:
        expireAt !== 0 && space.record
          ? { ...ref, subjectId: space.storedSubject ?? space.record.subjectId }
          : undefined,
      auditKeys,
      auditChains: audited.map((locked) => locked.chain),
      auditRegistrations: chainRegistrations(audited),
      newAuditRegistrations: chainRegistrations(audited, true),
      auditIndexChecks,
      leases: [...this.leases.values()],
      unitId: this.unitId,
    };
  }

  /**
   * Rebuilds the expiry index of a session written before it existed (`expiry_indexed`
   * absent): every stored item with an expiry gets its entry, in one commit that also marks the
   * session indexed. False when there is nothing to rebuild: the session is indexed already, or
   * its hash holds no session record (items left without a session are nobody's to scan; the
   * backstop expiry deletes them).
   */
  async rebuildExpiryIndex(ref: SessionRef): Promise<boolean> {
    const space = await this.touch(ref);
    if (space.expiryIndexed || !space.record) return false;
    const items = await scanVisibleItems(
      this.checkedItemWindows(space),
      { newestFirst: false, afterSeq: 0, throughSeq: Number.MAX_SAFE_INTEGER },
      // Every stored expiry is >= 1: none is hidden as expired at 0.
      0,
      Number.MAX_SAFE_INTEGER,
      space.owner,
    );
    space.ops.push(COMMIT_OP.clearExpiryIndex);
    for (const item of items) {
      if (item.expiresAt !== null) {
        space.ops.push(COMMIT_OP.addExpiryEntry, expiryIndexEntry(item.expiresAt, item.seq));
      }
    }
    space.ops.push(COMMIT_OP.setSessionField, SESSION_FIELDS.expiryIndexed, '1');
    return true;
  }

  /**
   * Redis expiry is only a backstop behind the module's own TTL filtering: a session whose
   * items all expire is dropped `expiryBackstopMs` after the last one does. Never while an item
   * without expiry exists or ever existed, under legal hold, or before the first item. Clamped
   * to `now`, so a write to a session whose items expired long ago does not delete it at once.
   */
  private expireAt(space: SessionWorkspace, now: number): number {
    // A deleted session leaves only its version behind, for a while.
    if (space.deleted && !space.record) return now + DELETED_SESSION_VERSION_MS;
    if (!space.record || space.record.legalHold) return 0;
    if (space.neverExpires || space.maxExpiresAt === 0) return 0;
    return Math.max(space.maxExpiresAt, now) + this.expiryBackstopMs;
  }

  /** The workspace of `ref`, loading its snapshot on the first touch. */
  private touch(ref: SessionRef): Promise<SessionWorkspace> {
    const tag = redisSessionTag(ref);
    if (this.workspace) {
      if (tag !== this.workspaceTag) {
        throw new Error(
          'A Redis unit of work touched a second session; each storage transaction must stay within one session',
        );
      }
      return this.workspace;
    }
    const keys = this.reads.layout.forTag(tag);
    this.workspaceTag = tag;
    this.workspace = this.reads.snapshot(ref, keys).then((snapshot) => {
      this.loaded = new SessionWorkspace(ref, tag, keys, snapshot.hash, snapshot.dataKeys);
      return this.loaded;
    });
    return this.workspace;
  }

  /** Runs reads in one round trip with the version, failing when it moved since the snapshot. */
  private async readChecked(
    space: SessionWorkspace,
    build: (pipeline: ChainableCommander) => void,
  ): Promise<unknown[]> {
    const [version, ...replies] = await this.reads.exec((pipeline) => {
      pipeline.hget(space.keys.session, SESSION_FIELDS.version);
      build(pipeline);
    });
    if ((version ?? '') !== space.expectedVersion) {
      this.invalidated = true;
      throw new SnapshotChangedSignal();
    }
    return replies;
  }

  private checkedItemWindows(space: SessionWorkspace): ItemWindowFetch {
    return async (start, stop, newestFirst, count) => {
      const [members] = await this.readChecked(space, (pipeline) =>
        newestFirst
          ? pipeline.zrangeBuffer(
              space.keys.items,
              start,
              stop,
              'BYSCORE',
              'REV',
              'LIMIT',
              0,
              count,
              'WITHSCORES',
            )
          : pipeline.zrangeBuffer(
              space.keys.items,
              start,
              stop,
              'BYSCORE',
              'LIMIT',
              0,
              count,
              'WITHSCORES',
            ),
      );
      return members as Buffer[];
    };
  }

  /**
   * The items under `dekId` after `afterSeq`, expired ones too (they still reference the key),
   * as this unit sees them: stored ones in windows of the sorted set, then buffered inserts.
   */
  private async itemsSealedUnder(
    space: SessionWorkspace,
    dekId: string,
    afterSeq: number,
    limit: number,
  ): Promise<StoredItem[]> {
    const found: StoredItem[] = [];
    let from = afterSeq;
    // A retiring key's items are the session's oldest, so the first windows hold most of them.
    while (!space.itemsCleared && found.length < limit) {
      const window = await scanVisibleItems(
        this.checkedItemWindows(space),
        { newestFirst: false, afterSeq: from, throughSeq: Number.POSITIVE_INFINITY },
        Number.NEGATIVE_INFINITY,
        Math.max(limit, SEALED_UNDER_WINDOW),
        space.owner,
        (seq) => space.deletedStoredSeqs.has(seq),
      );
      for (const stored of window) {
        const item = space.resealedItems.get(stored.seq) ?? stored;
        if (item.dekId === dekId && found.length < limit) found.push(item);
      }
      if (window.length < Math.max(limit, SEALED_UNDER_WINDOW)) break;
      from = window.at(-1)!.seq;
    }
    const buffered = [...space.insertedItems.values()].filter(
      (item) => item.dekId === dekId && item.seq > afterSeq,
    );
    return [...found, ...buffered]
      .toSorted((a, b) => a.seq - b.seq)
      .slice(0, limit)
      .map(copyStoredItem);
  }

  /** Visible items of the snapshot and the buffer, merged in scan order. */
  private async visibleItems(
    space: SessionWorkspace,
    range: ItemScanRange,
    now: number,
    limit: number,
  ): Promise<StoredItem[]> {
    const stored = space.itemsCleared
      ? []
      : await scanVisibleItems(
          this.checkedItemWindows(space),
          range,
          now,
          limit,
          space.owner,
          (seq) => space.deletedStoredSeqs.has(seq),
        );
    const current = stored.map((item) => space.resealedItems.get(item.seq) ?? item);
    const buffered = [...space.insertedItems.values()].filter(
      (item) =>
        (item.expiresAt === null || item.expiresAt > now) &&
        (range.newestFirst || (item.seq > range.afterSeq && item.seq <= range.throughSeq)),
    );
    const merged = [...current, ...buffered].toSorted((a, b) =>
      range.newestFirst ? b.seq - a.seq : a.seq - b.seq,
    );
    return merged.slice(0, limit).map(copyStoredItem);
  }

  private async operationOf(
    space: SessionWorkspace,
    operationId: string,
  ): Promise<HistoryOperationRecord | null> {
    const known = space.knownOperations.get(operationId);
    if (known !== undefined) return known;
    if (space.operationsCleared) return null;
    const [packed] = await this.readChecked(space, (pipeline) =>
      pipeline.hgetBuffer(space.keys.operations, operationId),
    );
    const found = packed ? unpackOperation(operationId, packed as Buffer, space.owner) : null;
    space.knownOperations.set(operationId, found);
    return found;
  }

  private changeKeys(
    space: SessionWorkspace,
    change: (key: DataKeyRecord) => DataKeyRecord | undefined,
  ): number {
    let changed = 0;
    for (const [dekId, key] of space.dataKeys) {
      const next = change(key);
      if (!next) continue;
      space.dataKeys.set(dekId, next);
      space.changedDataKeys.add(dekId);
      changed++;
    }
    return changed;
  }

  private createScope(): RedisAdapterScope {
    const touch = (ref: SessionRef) => this.touch(ref);
    const leaseFence = this.leaseFence;
    const holdsCovering = this.holdsCovering;

    return {
      ...(holdsCovering && {
        holds: {
          covering: async (ref: SessionRef) => {
            // The subject as the session hash names it (or as this unit's new record does).
            const space = await touch(ref);
            const subject = space.storedSubject ?? space.record?.subjectId ?? null;
            return holdsCovering(ref.tenantId, ref.sessionId, subject);
          },
        },
      }),
      ...(leaseFence && {
        fence: async (lease: JobLease) => {
          // Checked now, so a stale job stops before it works; and again at the commit.
          if (typeof lease?.job === 'string') this.pinnedJobs.add(lease.job);
          try {
            await leaseFence(lease, this.unitId);
          } catch (error) {
            this.lost ??= error as Error;
            throw error;
          }
          this.leases.set(lease.job, { ...lease });
        },
      }),
      sessions: {
        find: async (ref) => {
          const record = (await touch(ref)).record;
          return record ? { ...record } : undefined;
        },
        insertIfAbsent: async (record) => {
          const space = await touch(record);
          if (space.record) return false;
          space.record = { ...record };
          space.recordChanged = true;
          space.inserted = true;
          return true;
        },
        reserveSequence: async (ref, count, now) => {
          const space = await touch(ref);
          if (!space.record) return undefined;
          const first = space.record.nextSeq;
          space.record = { ...space.record, nextSeq: first + count, lastActivityAt: now };
          space.recordChanged = true;
          return first;
        },
        lockForWrite: async (ref, now) => {
          // The commit's compare-and-set is the lock: any commit in between makes this one retry.
          const space = await touch(ref);
          if (!space.record) return false;
          space.record = {
            ...space.record,
            lastActivityAt: Math.max(space.record.lastActivityAt, now),
          };
          space.recordChanged = true;
          return true;
        },
        forgetSubject: async (ref) => {
          const space = await touch(ref);
          if (space.record && space.record.subjectId !== null) {
            space.record = { ...space.record, subjectId: null };
            space.recordChanged = true;
          }
          this.changeKeys(space, (key) =>
            key.subjectId === null ? undefined : { ...key, subjectId: null },
          );
        },
        deleteSession: async (ref) => {
          const space = await touch(ref);
          if (!space.record) return false;
          // Everything buffered so far goes with the session; the commit deletes what is stored.
          space.ops.push(COMMIT_OP.deleteSession);
          space.record = undefined;
          space.recordChanged = false;
          space.inserted = false;
          space.deleted = true;
          space.dataKeys.clear();
          space.changedDataKeys.clear();
          space.newDataKeyIds.clear();
          space.itemsCleared = true;
          space.deletedStoredSeqs.clear();
          space.insertedItems.clear();
          space.operationsCleared = true;
          space.knownOperations.clear();
          space.insertedOperationIds.clear();
          space.maxExpiresAt = 0;
          space.neverExpires = false;
          space.expiryChanged = false;
          return true;
        },
      },

      items: {
        insertMany: async (ref, rows) => {
          const space = await touch(ref);
          assertSessionExists(space, 'Items inserted');
          const seen = new Set<number>();
          for (const row of rows) {
            if (seen.has(row.seq) || space.insertedItems.has(row.seq)) {
              throw new Error(`Duplicate item sequence ${row.seq}`);
            }
            seen.add(row.seq);
          }
          // Stored duplicates are caught by the commit script, before it writes anything.
          for (const row of rows) {
            const member = packItem(row);
            space.ops.push(COMMIT_OP.addItem, String(row.seq), member);
            if (row.expiresAt !== null) {
              space.ops.push(COMMIT_OP.addExpiryEntry, expiryIndexEntry(row.expiresAt, row.seq));
            }
            space.insertedItems.set(row.seq, copyStoredItem(row));
            if (row.expiresAt === null) {
              if (!space.neverExpires) space.expiryChanged = true;
              space.neverExpires = true;
            } else if (row.expiresAt > space.maxExpiresAt) {
              space.maxExpiresAt = row.expiresAt;
              space.expiryChanged = true;
            }
          }
        },
        listVisible: async (ref, now, limit) => {
          const space = await touch(ref);
          const newestFirst = await this.visibleItems(space, { newestFirst: true }, now, limit);
          return newestFirst.toReversed();
        },
        listVisiblePage: async (ref, now, afterSeq, throughSeq, limit) => {
          const space = await touch(ref);
          return this.visibleItems(space, { newestFirst: false, afterSeq, throughSeq }, now, limit);
        },
        deleteBySeq: async (ref, seqs) => {
          const space = await touch(ref);
          let deleted = 0;
          const storedCandidates: number[] = [];
          for (const seq of new Set(seqs)) {
            const inserted = space.insertedItems.get(seq);
            if (inserted) {
              space.insertedItems.delete(seq);
              space.ops.push(COMMIT_OP.removeItem, String(seq), packItem(inserted));
              if (inserted.expiresAt !== null) {
                space.ops.push(
                  COMMIT_OP.removeExpiryEntry,
                  expiryIndexEntry(inserted.expiresAt, inserted.seq),
                );
              }
              deleted++;
            } else if (!space.isStoredItemHidden(seq)) {
              storedCandidates.push(seq);
            }
          }
          if (storedCandidates.length === 0) return deleted;
          const found = await this.readChecked(space, (pipeline) => {
            for (const seq of storedCandidates) {
              pipeline.zrangeBuffer(space.keys.items, seq, seq, 'BYSCORE', 'LIMIT', 0, 2);
            }
          });
          // Exactly the member whose authenticated seq is `seq` goes, never "whatever has this
          // score": checked here, and again by the commit script against the member itself.
          const members = storedCandidates.map((seq, index) => {
            const atScore = found[index] as Buffer[];
            if (atScore.length > 1) throw positionTampered(space.owner);
            if (!atScore[0]) return undefined;
            const item = unpackItem(atScore[0], space.owner);
            if (item.seq !== seq) throw positionTampered(space.owner);
            return { member: atScore[0], expiresAt: item.expiresAt };
          });
          storedCandidates.forEach((seq, index) => {
            const stored = members[index];
            if (!stored) return;
            space.deletedStoredSeqs.add(seq);
            space.ops.push(COMMIT_OP.removeItem, String(seq), stored.member);
            // The index entry goes with its item (a session from before the index has none).
            if (stored.expiresAt !== null) {
              space.ops.push(COMMIT_OP.removeExpiryEntry, expiryIndexEntry(stored.expiresAt, seq));
            }
            deleted++;
          });
          return deleted;
        },
        deleteAll: async (ref) => {
          const space = await touch(ref);
          let stored = 0;
          if (!space.itemsCleared) {
            const [count] = await this.readChecked(space, (pipeline) =>
              pipeline.zcard(space.keys.items),
            );
            stored = Number(count) - space.deletedStoredSeqs.size;
          }
          const deleted = stored + space.insertedItems.size;
          if (deleted > 0) space.ops.push(COMMIT_OP.clearItems);
          space.itemsCleared = true;
          space.deletedStoredSeqs.clear();
          space.insertedItems.clear();
          space.resealedItems.clear();
          return deleted;
        },
        listSealedUnder: async (ref, dekId, afterSeq, limit) => {
          const space = await touch(ref);
          return this.itemsSealedUnder(space, dekId, afterSeq, limit);
        },
        // A unit that reseals items does nothing else to them (the re-encryption unit): the
        // commit checks each seq it replaces once, and refuses a later op on it.
        reseal: async (ref, fromDekId, resealed) => {
          const space = await touch(ref);
          const seqs = [...new Set(resealed.map((item) => item.seq))].filter(
            (seq) => !space.isStoredItemHidden(seq) && !space.resealedItems.has(seq),
          );
          if (seqs.length === 0) return 0;
          const found = await this.readChecked(space, (pipeline) => {
            for (const seq of seqs) {
              pipeline.zrangeBuffer(space.keys.items, seq, seq, 'BYSCORE', 'LIMIT', 0, 2);
            }
          });
          const storedAt = new Map<number, { member: Buffer; item: StoredItem }>();
          seqs.forEach((seq, index) => {
            const atScore = found[index] as Buffer[];
            if (atScore.length > 1) throw positionTampered(space.owner);
            if (!atScore[0]) return;
            const item = unpackItem(atScore[0], space.owner);
            if (item.seq !== seq) throw positionTampered(space.owner);
            storedAt.set(seq, { member: atScore[0], item });
          });
          let replaced = 0;
          for (const next of resealed) {
            const stored = storedAt.get(next.seq);
            // Only while it is still sealed under the key being retired (a pop, a history
            // rewrite or another run may have got to it first).
            if (stored?.item.dekId !== fromDekId || space.resealedItems.has(next.seq)) continue;
            const item: StoredItem = {
              seq: stored.item.seq,
              dekId: next.dekId,
              expiresAt: stored.item.expiresAt,
              createdAt: stored.item.createdAt,
              ciphertext: Buffer.from(next.ciphertext),
            };
            space.ops.push(COMMIT_OP.replaceItem, String(next.seq), stored.member, packItem(item));
            space.resealedItems.set(next.seq, item);
            replaced++;
          }
          return replaced;
        },
      },

      dataKeys: {
        findById: async (dekId) => {
          const own = this.loaded?.dataKeys.get(dekId);
          if (own) return copyDataKeyRecord(own);
          // A key of another session (or none): read it as it is now, outside the snapshot.
          return this.reads.findDataKey(dekId);
        },
        findActive: async (ref) => {
          const active = newestActiveKey((await touch(ref)).dataKeys.values());
          return active ? copyDataKeyRecord(active) : undefined;
        },
        maxGeneration: async (ref) => highestGeneration((await touch(ref)).dataKeys.values()),
        insertIfAbsent: async (record) => {
          assertDataKeyId(record.dekId);
          const space = await touch(record);
          if (space.dataKeys.has(record.dekId)) return false;
          for (const key of space.dataKeys.values()) {
            if (key.generation === record.generation) return false;
          }
          // dekIds are unique across sessions; a pointer to another session may be left over
          // from a commit that failed, so only a key actually stored there counts.
          const ownerTag = await this.reads.ownerTagOf(record.dekId);
          if (ownerTag !== null && ownerTag !== space.tag) {
            if (await this.reads.findDataKeyIn(ownerTag, record.dekId)) return false;
          }
          space.dataKeys.set(record.dekId, copyDataKeyRecord(record));
          space.changedDataKeys.add(record.dekId);
          space.newDataKeyIds.add(record.dekId);
          return true;
        },
        retireActiveBelow: async (ref, generation) =>
          this.changeKeys(await touch(ref), (key) =>
            key.state === 'active' && key.generation < generation
              ? { ...key, state: 'retiring' }
              : undefined,
          ),
        listAllForSession: async (ref) =>
          [...(await touch(ref)).dataKeys.values()]
            .toSorted((a, b) => a.generation - b.generation)
            .map(copyDataKeyRecord),
        destroyByIds: async (ref, dekIds, now) => {
          const ids = new Set(dekIds);
          return this.changeKeys(await touch(ref), (key) =>
            ids.has(key.dekId) && key.state !== 'destroyed'
              ? { ...key, state: 'destroyed', wrappedKey: Buffer.alloc(0), destroyedAt: now }
              : undefined,
          );
        },
        destroyAllForSession: async (ref, now) =>
          this.changeKeys(await touch(ref), (key) =>
            key.state === 'destroyed'
              ? undefined
              : { ...key, state: 'destroyed', wrappedKey: Buffer.alloc(0), destroyedAt: now },
          ),
        replaceWrapping: async (target, expectedKekId, next) =>
          this.changeKeys(await touch(target), (key) =>
            key.dekId === target.dekId && key.kekId === expectedKekId && key.state !== 'destroyed'
              ? { ...key, kekId: next.kekId, wrappedKey: Buffer.from(next.wrappedKey) }
              : undefined,
          ) === 1,
      },

      audit: {
        lockHead: async (chain) => {
          // The binding opens a session unit's chains for the unit's own session only.
          const space = await touch(sessionOf(chain));
          const keys = this.reads.layout.forAuditChain(chain);
          // Read with the version check, like every read of the unit; the commit checks the
          // head again, byte for byte.
          const [stored] = await this.readChecked(space, (pipeline) =>
            pipeline.getBuffer(keys.head),
          );
          return this.auditChains.lock(chain, keys, stored as Buffer | null);
        },
        append: async (chain, _head, records) => this.auditChains.append(chain, records),
      },

      historyOperations: {
        find: async (ref, operationId) => {
          const found = await this.operationOf(await touch(ref), operationId);
          return found ? copyOperation(found) : undefined;
        },
        insertIfAbsent: async (ref, record) => {
          const space = await touch(ref);
          assertSessionExists(space, 'Operation recorded');
          if (await this.operationOf(space, record.operationId)) return false;
          space.knownOperations.set(record.operationId, copyOperation(record));
          space.insertedOperationIds.add(record.operationId);
          space.ops.push(COMMIT_OP.setOperation, record.operationId, packOperation(record));
          return true;
        },
        deleteAll: async (ref) => {
          const space = await touch(ref);
          let stored = 0;
          if (!space.operationsCleared) {
            const [count] = await this.readChecked(space, (pipeline) =>
              pipeline.hlen(space.keys.operations),
            );
            // Operations inserted by this unit are buffered, not yet in the stored count.
            stored = Number(count);
          }
          const deleted = stored + space.insertedOperationIds.size;
          if (deleted > 0) space.ops.push(COMMIT_OP.clearOperations);
          space.operationsCleared = true;
          space.knownOperations.clear();
          space.insertedOperationIds.clear();
          return deleted;
        },
      },
    };
  }
}
