import {
  bindAuditChains,
  bindReadScope,
  bindWriteScope,
  type AdapterAuditChains,
  type AdapterDataKeys,
  type AdapterHistoryOperations,
  type AdapterItems,
  type AdapterScope,
  type AdapterSessionRows,
} from '../adapter-scope.js';
import { compareAuditOrder, matchesAuditQuery } from '../audit-record-query.js';
import type { LeaseLostError } from '../../errors/index.js';
import {
  checkExpiredItemScan,
  compareExpiredItemKeys,
  decodeExpiredItemCursor,
  encodeExpiredItemCursor,
  type ExpiredItemKey,
} from '../expired-items.js';
import {
  checkIdleSessionScan,
  compareIdleSessionKeys,
  decodeIdleSessionCursor,
  encodeIdleSessionCursor,
} from '../idle-sessions.js';
import {
  acquiredLease,
  checkJobLease,
  checkLeaseName,
  checkLeaseTtl,
  holdsLease,
  leaseLostError,
} from '../job-leases.js';
import { DataKeyAgesTally } from '../data-key-ages.js';
import { checkSameTenant } from '../multi-session.js';
import { sequenceBehindItemsError } from '../sequence-behind-items.js';
import { SerialQueue } from '../serial-queue.js';
import type {
  AuditStorage,
  DataKeyPage,
  ErasureLedgerStorage,
  ExpiredItemPage,
  LeaseStorage,
  LegalHoldStorage,
  MultiSessionUnit,
  SessionReadScope,
  SessionStorage,
  SessionWriteScope,
  StorageMaintenance,
} from '../storage.ports.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  DataKeyRecord,
  ErasureLedgerRecord,
  ExpiredItemRecord,
  HistoryOperationRecord,
  JobLease,
  LegalHoldRecord,
  SessionRecord,
  SessionRef,
  StoredAuditRecord,
  StoredCheckpoint,
  StoredItem,
} from '../storage.records.js';
import { copyAuditRecord, copyDataKeyRecord, copyStoredItem } from '../storage.records.js';

interface SessionState {
  record: SessionRecord;
  /** Items by sequence number; kept sorted by insertion since sequence numbers only grow. */
  items: Map<number, StoredItem>;
  operations: Map<string, HistoryOperationRecord>;
}

/** One audit chain: its records by ascending seq, and its head (the last of them). */
interface AuditChainState {
  readonly tenantId: string;
  readonly records: StoredAuditRecord[];
}

const headOf = (record: StoredAuditRecord): AuditChainHeadRecord => ({
  chainId: record.chainId,
  tenantId: record.tenantId,
  seq: record.seq,
  mac: Buffer.from(record.mac),
  time: record.time,
});

/** Undo actions of the running transaction, replayed in reverse on failure. */
type UndoLog = Array<() => void>;

/** A write unit's fences: the error of one that failed, which keeps the unit from committing. */
interface FencedUnit {
  lost?: LeaseLostError;
}

function sessionKey(ref: SessionRef): string {
  // Length prefix keeps ('a:b', 'c') and ('a', 'b:c') apart.
  return `${ref.tenantId.length}:${ref.tenantId}:${ref.sessionId}`;
}

/** The session's items not expired at `now`, by ascending sequence number. */
function visibleInOrder(state: SessionState, now: number): StoredItem[] {
  return [...state.items.values()]
    .filter((item) => item.expiresAt === null || item.expiresAt > now)
    .sort((a, b) => a.seq - b.seq);
}

/**
 * In-process storage for tests and single-process demos. Nothing survives a restart. Units of
 * work run one at a time; a failed one is rolled back from an undo log.
 *
 * @publicApi
 */
export class MemorySessionStorage implements SessionStorage {
  readonly backend = 'memory';
  private readonly sessions = new Map<string, SessionState>();
  private readonly dataKeys = new Map<string, DataKeyRecord>();
  /** Checkpoints by tenant. */
  private readonly checkpoints = new Map<string, StoredCheckpoint[]>();
  /** Audit chains by chain id; never deleted with their session. */
  private readonly auditChains = new Map<string, AuditChainState>();
  private readonly queue = new SerialQueue();
  /** Job leases by job; a released or lapsed lease stays, so its token never goes back. */
  private readonly jobLeases = new Map<string, JobLease>();
  /** Jobs whose lease the running unit of work fenced: nobody takes them afresh until it ends. */
  private readonly fencedJobs = new Set<string>();
  /** Legal holds by id, released ones too. */
  private readonly legalHolds = new Map<string, LegalHoldRecord>();
  /** The erasure ledger by erasure id. */
  private readonly ledger = new Map<string, ErasureLedgerRecord>();

  /** Cross-session scans, each run alone like a unit of work. */
  readonly maintenance: StorageMaintenance = {
    supported: true,
    listDataKeysWrappedByOtherKek: (kekId, cursor, limit) =>
      this.queue.run(async () => this.listWrappedByOtherKek(kekId, cursor, limit)),
    countDataKeysByKek: () => this.queue.run(async () => this.countByKek()),
    listRetiringDataKeys: (cursor, limit) =>
      this.queue.run(async () => {
        const records = [...this.dataKeys.values()]
          .filter((key) => key.state === 'retiring' && (cursor === undefined || key.dekId > cursor))
          .toSorted((a, b) => (a.dekId < b.dekId ? -1 : 1))
          .slice(0, limit)
          .map(copyDataKeyRecord);
        return { records, cursor: records.length === limit ? records.at(-1)!.dekId : undefined };
      }),
    dataKeyAges: (createdBefore, exceptTenantId) =>
      this.queue.run(async () => {
        // Map.groupBy is not in Node 20.
        const bySession = new Map<string, DataKeyRecord[]>();
        for (const key of this.dataKeys.values()) {
          const session = JSON.stringify([key.tenantId, key.sessionId]);
          const keys = bySession.get(session);
          if (keys) keys.push(key);
          else bySession.set(session, [key]);
        }
        const tally = new DataKeyAgesTally(createdBefore, exceptTenantId);
        for (const keys of bySession.values()) tally.addSession(keys);
        return tally.result();
      }),
    listExpiredItems: async (now, cursor, limit) => {
      checkExpiredItemScan(now, limit);
      const after = decodeExpiredItemCursor(cursor);
      return this.queue.run(async () => this.listExpired(now, after, limit));
    },
    listIdleSessions: async (before, cursor, limit) => {
      checkIdleSessionScan(before, limit);
      const after = decodeIdleSessionCursor(cursor);
      return this.queue.run(async () => {
        const page = [...this.sessions.values()]
          .map(({ record }) => record)
          .filter(
            (record) => record.lastActivityAt < before && compareIdleSessionKeys(record, after) > 0,
          )
          .toSorted(compareIdleSessionKeys)
          .slice(0, limit)
          .map((record) => ({ ...record }));
        const last = page.at(-1);
        return {
          sessions: page,
          cursor: last && page.length === limit ? encodeIdleSessionCursor(last) : undefined,
        };
      });
    },
    listSessionsOfSubject: (tenantId, subjectId, afterSessionId, limit) =>
      this.queue.run(async () => {
        const after = Buffer.from(afterSessionId);
        return [...this.sessions.values()]
          .map(({ record }) => record)
          .filter((record) => record.tenantId === tenantId && record.subjectId === subjectId)
          .map((record) => ({ record, key: Buffer.from(record.sessionId) }))
          .filter(({ key }) => Buffer.compare(key, after) > 0)
          .toSorted((a, b) => Buffer.compare(a.key, b.key))
          .slice(0, limit)
          .map(({ record }) => ({ ...record }));
      }),
  };

  /**
   * Legal holds. Each call is synchronous up to its result, so none interleaves with another;
   * they do not wait for units of work (as another connection would not).
   */
  readonly holds: LegalHoldStorage = {
    insert: async (hold) => {
      if (this.legalHolds.has(hold.holdId)) {
        throw new Error(`A legal hold with id ${hold.holdId} exists`);
      }
      this.legalHolds.set(hold.holdId, { ...hold });
    },
    release: async (holdId, releasedAt, releasedBy) => {
      const stored = this.legalHolds.get(holdId);
      if (stored && stored.releasedAt === null) {
        this.legalHolds.set(holdId, { ...stored, releasedAt, releasedBy });
      }
      const after = this.legalHolds.get(holdId);
      return after && { ...after };
    },
    find: async (holdId) => {
      const stored = this.legalHolds.get(holdId);
      return stored && { ...stored };
    },
    list: async (query) =>
      this.holdsWhere(
        (hold) =>
          (query.tenantId === undefined || hold.tenantId === query.tenantId) &&
          (!query.activeOnly || hold.releasedAt === null) &&
          Buffer.compare(Buffer.from(hold.holdId), Buffer.from(query.afterHoldId ?? '')) > 0,
      ).slice(0, query.limit),
    activeCovering: async (tenantId, sessionId, subjectId) =>
      this.activeHoldsCovering(tenantId, sessionId, subjectId),
    activeOnSubject: async (tenantId, subjectId) =>
      this.holdsWhere(
        (hold) =>
          hold.releasedAt === null && hold.tenantId === tenantId && hold.subjectId === subjectId,
      ),
  };

  /** The erasure ledger; each call synchronous up to its result. */
  readonly erasureLedger: ErasureLedgerStorage = {
    insert: async (entry) => {
      if (this.ledger.has(entry.erasureId)) {
        throw new Error(`An erasure ledger entry with id ${entry.erasureId} exists`);
      }
      this.ledger.set(entry.erasureId, { ...entry });
    },
    complete: async (erasureId, completedAt, receipt) => {
      const stored = this.ledger.get(erasureId);
      if (!stored || stored.completedAt !== null) return false;
      this.ledger.set(erasureId, { ...stored, completedAt, receipt });
      return true;
    },
    find: async (erasureId) => {
      const stored = this.ledger.get(erasureId);
      return stored && { ...stored };
    },
    list: async (afterErasureId, limit) => {
      const after = Buffer.from(afterErasureId);
      return [...this.ledger.values()]
        .filter((entry) => Buffer.compare(Buffer.from(entry.erasureId), after) > 0)
        .toSorted((a, b) => Buffer.compare(Buffer.from(a.erasureId), Buffer.from(b.erasureId)))
        .slice(0, limit)
        .map((entry) => ({ ...entry }));
    },
  };

  /** The audit trail, each call run alone like a unit of work. */
  readonly audit: AuditStorage = {
    transaction: (chain, work) =>
      this.undoable((undo) => work(bindAuditChains(this.auditScope(undo), chain, chain.chainId))),
    readChain: (chain, afterSeq, limit) =>
      this.queue.run(async () =>
        (this.chainOf(chain)?.records ?? [])
          .filter((record) => record.seq > afterSeq)
          .slice(0, limit)
          .map(copyAuditRecord),
      ),
    findHead: (chain) =>
      this.queue.run(async () => {
        const last = this.chainOf(chain)?.records.at(-1);
        return last && headOf(last);
      }),
    appendCheckpoint: (checkpoint) =>
      this.queue.run(async () => {
        const stored = this.checkpoints.get(checkpoint.tenantId) ?? [];
        if (stored.some((existing) => existing.seq === checkpoint.seq)) return false;
        this.checkpoints.set(checkpoint.tenantId, [...stored, { ...checkpoint }]);
        return true;
      }),
    latestCheckpoint: (tenantId) =>
      this.queue.run(async () => {
        const stored = this.checkpoints.get(tenantId) ?? [];
        const latest = stored.reduce<StoredCheckpoint | undefined>(
          (best, next) => (best && best.seq > next.seq ? best : next),
          undefined,
        );
        return latest && { ...latest };
      }),
    listRecords: (query) =>
      this.queue.run(async () =>
        [...this.auditChains.values()]
          .flatMap((state) => state.records.filter((record) => matchesAuditQuery(record, query)))
          .toSorted(compareAuditOrder)
          .slice(0, query.limit)
          .map(copyAuditRecord),
      ),
    listHeads: (tenantId, afterChainId, limit) =>
      this.queue.run(async () => {
        const after = Buffer.from(afterChainId);
        return [...this.auditChains.entries()]
          .filter(([, state]) => state.tenantId === tenantId && state.records.length > 0)
          .map(([chainId, state]) => ({ key: Buffer.from(chainId), last: state.records.at(-1)! }))
          .filter(({ key }) => Buffer.compare(key, after) > 0)
          .toSorted((a, b) => Buffer.compare(a.key, b.key))
          .slice(0, limit)
          .map(({ last }) => headOf(last));
      }),
  };

  /**
   * Job leases on this process's clock. Each call is synchronous up to its result, so none
   * interleaves with another; they do not wait for units of work.
   */
  readonly leases: LeaseStorage = {
    acquire: async (job, owner, ttlMs) => {
      checkLeaseName(job, 'job');
      checkLeaseName(owner, 'owner');
      checkLeaseTtl(ttlMs);
      const stored = this.jobLeases.get(job);
      const taken = acquiredLease(stored, job, owner, ttlMs, Date.now());
      // A unit fenced by the lapsed lease is still running: as a locked row on SQL, the lease
      // is not taken afresh before it ends (here refused at once, as if held).
      if (taken && stored && taken.token !== stored.token && this.fencedJobs.has(job)) {
        return undefined;
      }
      if (taken) this.jobLeases.set(job, taken);
      return taken && { ...taken };
    },
    renew: async (lease, ttlMs) => {
      checkJobLease(lease);
      checkLeaseTtl(ttlMs);
      const now = Date.now();
      const stored = this.jobLeases.get(lease.job);
      if (!holdsLease(stored, lease, now)) return undefined;
      const renewed = { ...stored!, expiresAt: now + ttlMs };
      this.jobLeases.set(lease.job, renewed);
      return { ...renewed };
    },
    release: async (lease) => {
      checkJobLease(lease);
      const now = Date.now();
      const stored = this.jobLeases.get(lease.job);
      if (holdsLease(stored, lease, now))
        this.jobLeases.set(lease.job, { ...stored!, expiresAt: now });
    },
    current: async (job) => {
      checkLeaseName(job, 'job');
      const stored = this.jobLeases.get(job);
      return stored && { ...stored };
    },
  };

  read<T>(ref: SessionRef, work: (scope: SessionReadScope) => Promise<T>): Promise<T> {
    return this.queue.run(() => work(bindReadScope(this.createScope(undefined), ref)));
  }

  transaction<T>(ref: SessionRef, work: (scope: SessionWriteScope) => Promise<T>): Promise<T> {
    return this.undoable(async (undo) => {
      const unit: FencedUnit = {};
      try {
        const result = await work(bindWriteScope(this.createScope(undo, unit), ref));
        // A failed fence refuses the commit, also when the work caught its error.
        if (unit.lost) throw unit.lost;
        return result;
      } finally {
        // Units run one at a time, so every fenced job is this unit's.
        this.fencedJobs.clear();
      }
    });
  }

  transactionAcross<T>(
    tenantId: string,
    refs: readonly SessionRef[],
    work: (unit: MultiSessionUnit) => Promise<T>,
  ): Promise<T> {
    checkSameTenant(tenantId, refs);
    return this.undoable(async (undo) => {
      const unit: FencedUnit = {};
      try {
        const scope = this.createScope(undo, unit);
        const result = await work({
          scopes: refs.map((ref) => bindWriteScope(scope, ref)),
          control: bindAuditChains(this.auditScope(undo), { tenantId, sessionId: null }),
          erasureLedger: {
            insert: async (entry) => {
              await this.erasureLedger.insert(entry);
              undo.push(() => this.ledger.delete(entry.erasureId));
            },
          },
        });
        if (unit.lost) throw unit.lost;
        return result;
      } finally {
        this.fencedJobs.clear();
      }
    });
  }

  /** Runs work alone; on failure, undoes what it changed, newest change first. */
  private undoable<T>(work: (undo: UndoLog) => Promise<T>): Promise<T> {
    return this.queue.run(async () => {
      const undo: UndoLog = [];
      try {
        return await work(undo);
      } catch (error) {
        for (let i = undo.length - 1; i >= 0; i--) undo[i]();
        throw error;
      }
    });
  }

  /** Copies of the holds `match` keeps, by hold id bytes. */
  private holdsWhere(match: (hold: LegalHoldRecord) => boolean): LegalHoldRecord[] {
    return [...this.legalHolds.values()]
      .filter(match)
      .toSorted((a, b) => Buffer.compare(Buffer.from(a.holdId), Buffer.from(b.holdId)))
      .map((hold) => ({ ...hold }));
  }

  private activeHoldsCovering(
    tenantId: string,
    sessionId: string,
    subjectId: string | null,
  ): LegalHoldRecord[] {
    return this.holdsWhere(
      (hold) =>
        hold.releasedAt === null &&
        hold.tenantId === tenantId &&
        (hold.sessionId === sessionId || (subjectId !== null && hold.subjectId === subjectId)),
    );
  }

  /** The chain's state, if it belongs to the chain's tenant. */
  private chainOf(chain: AuditChainRef): AuditChainState | undefined {
    const state = this.auditChains.get(chain.chainId);
    return state?.tenantId === chain.tenantId ? state : undefined;
  }

  /** Audit chain writes; units run one at a time, so the head needs no lock of its own. */
  private auditScope(undo: UndoLog): AdapterAuditChains {
    return {
      lockHead: async (chain) => {
        const last = this.chainOf(chain)?.records.at(-1);
        return last && headOf(last);
      },
      append: async (chain, _head, records) => {
        let state = this.auditChains.get(chain.chainId);
        if (!state) {
          const created: AuditChainState = { tenantId: chain.tenantId, records: [] };
          this.auditChains.set(chain.chainId, created);
          undo.push(() => this.auditChains.delete(chain.chainId));
          state = created;
        } else if (state.tenantId !== chain.tenantId) {
          throw new Error('An audit chain id names a chain of another tenant');
        }
        const chainRecords = state.records;
        const before = chainRecords.length;
        chainRecords.push(...records.map(copyAuditRecord));
        undo.push(() => (chainRecords.length = before));
      },
    };
  }

  async close(): Promise<void> {}

  private createScope(undo: UndoLog | undefined, unit: FencedUnit = {}): AdapterScope {
    const writable = (): UndoLog => {
      if (!undo) throw new Error('Write attempted inside a read-only storage scope');
      return undo;
    };
    const state = (ref: SessionRef) => this.sessions.get(sessionKey(ref));

    const sessions: AdapterSessionRows = {
      find: async (ref) => {
        const found = state(ref);
        return found ? { ...found.record } : undefined;
      },
      insertIfAbsent: async (record) => {
        const key = sessionKey(record);
        if (this.sessions.has(key)) return false;
        this.sessions.set(key, { record: { ...record }, items: new Map(), operations: new Map() });
        writable().push(() => this.sessions.delete(key));
        return true;
      },
      lockForWrite: async (ref, now) => {
        const found = state(ref);
        if (!found) return false;
        const before = found.record;
        writable().push(() => (found.record = before));
        found.record = {
          ...found.record,
          lastActivityAt: Math.max(found.record.lastActivityAt, now),
        };
        return true;
      },
      forgetSubject: async (ref) => {
        const found = state(ref);
        if (found) {
          const before = found.record;
          writable().push(() => (found.record = before));
          found.record = { ...found.record, subjectId: null };
        }
        this.updateKeys(ref, writable(), (key) =>
          key.subjectId === null ? undefined : { ...key, subjectId: null },
        );
      },
      deleteSession: async (ref) => {
        const key = sessionKey(ref);
        const found = this.sessions.get(key);
        if (!found) return false;
        const log = writable();
        this.sessions.delete(key);
        log.push(() => this.sessions.set(key, found));
        for (const [dekId, dataKey] of this.dataKeys) {
          if (dataKey.tenantId !== ref.tenantId || dataKey.sessionId !== ref.sessionId) continue;
          this.dataKeys.delete(dekId);
          log.push(() => this.dataKeys.set(dekId, dataKey));
        }
        return true;
      },
      reserveSequence: async (ref, count, now) => {
        const found = state(ref);
        if (!found) return undefined;
        const before = { ...found.record };
        writable().push(() => (found.record = before));
        const first = found.record.nextSeq;
        found.record = { ...found.record, nextSeq: first + count, lastActivityAt: now };
        return first;
      },
    };

    const items: AdapterItems = {
      insertMany: async (ref, rows) => {
        const found = state(ref);
        if (!found) throw new Error('Items inserted into a session that does not exist');
        const log = writable();
        for (const row of rows) {
          // Never overwrite: a taken position means the counter was set back below the items.
          if (found.items.has(row.seq)) throw sequenceBehindItemsError(ref);
        }
        for (const row of rows) {
          found.items.set(row.seq, copyStoredItem(row));
          log.push(() => found.items.delete(row.seq));
        }
      },
      listVisible: async (ref, now, limit) => {
        const found = state(ref);
        if (!found) return [];
        const visible = visibleInOrder(found, now);
        return visible.slice(Math.max(0, visible.length - limit)).map(copyStoredItem);
      },
      listVisiblePage: async (ref, now, afterSeq, throughSeq, limit) => {
        const found = state(ref);
        if (!found) return [];
        return visibleInOrder(found, now)
          .filter((item) => item.seq > afterSeq && item.seq <= throughSeq)
          .slice(0, limit)
          .map(copyStoredItem);
      },
      deleteBySeq: async (ref, seqs) => {
        const found = state(ref);
        if (!found) return 0;
        const log = writable();
        let deleted = 0;
        for (const seq of seqs) {
          const item = found.items.get(seq);
          if (!item) continue;
          found.items.delete(seq);
          log.push(() => found.items.set(seq, item));
          deleted++;
        }
        return deleted;
      },
      deleteAll: async (ref) => {
        const found = state(ref);
        if (!found) return 0;
        const previous = found.items;
        found.items = new Map();
        writable().push(() => (found.items = previous));
        return previous.size;
      },
      listSealedUnder: async (ref, dekId, afterSeq, limit) => {
        const found = state(ref);
        if (!found) return [];
        return [...found.items.values()]
          .filter((item) => item.dekId === dekId && item.seq > afterSeq)
          .toSorted((a, b) => a.seq - b.seq)
          .slice(0, limit)
          .map(copyStoredItem);
      },
      reseal: async (ref, fromDekId, resealed) => {
        const found = state(ref);
        if (!found) return 0;
        const log = writable();
        let replaced = 0;
        for (const next of resealed) {
          const item = found.items.get(next.seq);
          if (item?.dekId !== fromDekId) continue;
          found.items.set(next.seq, {
            seq: item.seq,
            dekId: next.dekId,
            expiresAt: item.expiresAt,
            createdAt: item.createdAt,
            ciphertext: Buffer.from(next.ciphertext),
          });
          log.push(() => found.items.set(next.seq, item));
          replaced++;
        }
        return replaced;
      },
    };

    const dataKeys: AdapterDataKeys = {
      findById: async (dekId) => {
        const key = this.dataKeys.get(dekId);
        return key ? copyDataKeyRecord(key) : undefined;
      },
      findActive: async (ref) => {
        let newest: DataKeyRecord | undefined;
        for (const key of this.dataKeys.values()) {
          if (key.tenantId !== ref.tenantId || key.sessionId !== ref.sessionId) continue;
          if (key.state !== 'active') continue;
          if (!newest || key.generation > newest.generation) newest = key;
        }
        return newest ? copyDataKeyRecord(newest) : undefined;
      },
      maxGeneration: async (ref) => {
        let max = 0;
        for (const key of this.dataKeys.values()) {
          if (key.tenantId === ref.tenantId && key.sessionId === ref.sessionId)
            max = Math.max(max, key.generation);
        }
        return max;
      },
      insertIfAbsent: async (record) => {
        for (const key of this.dataKeys.values()) {
          if (
            key.dekId === record.dekId ||
            (key.tenantId === record.tenantId &&
              key.sessionId === record.sessionId &&
              key.generation === record.generation)
          ) {
            return false;
          }
        }
        this.dataKeys.set(record.dekId, copyDataKeyRecord(record));
        writable().push(() => this.dataKeys.delete(record.dekId));
        return true;
      },
      retireActiveBelow: async (ref, generation) =>
        this.updateKeys(ref, writable(), (key) =>
          key.state === 'active' && key.generation < generation
            ? { ...key, state: 'retiring' }
            : undefined,
        ),
      replaceWrapping: async (key, expectedKekId, next) => {
        const current = this.dataKeys.get(key.dekId);
        if (
          !current ||
          current.tenantId !== key.tenantId ||
          current.sessionId !== key.sessionId ||
          current.state === 'destroyed' ||
          current.kekId !== expectedKekId
        ) {
          return false;
        }
        const log = writable();
        this.dataKeys.set(key.dekId, {
          ...current,
          kekId: next.kekId,
          wrappedKey: Buffer.from(next.wrappedKey),
        });
        log.push(() => this.dataKeys.set(key.dekId, current));
        return true;
      },
      destroyAllForSession: async (ref, now) =>
        this.updateKeys(ref, writable(), (key) =>
          key.state === 'destroyed'
            ? undefined
            : { ...key, state: 'destroyed', wrappedKey: Buffer.alloc(0), destroyedAt: now },
        ),
      listAllForSession: async (ref) =>
        [...this.dataKeys.values()]
          .filter((key) => key.tenantId === ref.tenantId && key.sessionId === ref.sessionId)
          .toSorted((a, b) => a.generation - b.generation)
          .map(copyDataKeyRecord),
      destroyByIds: async (ref, dekIds, now) => {
        const named = new Set(dekIds);
        return this.updateKeys(ref, writable(), (key) =>
          key.state === 'destroyed' || !named.has(key.dekId)
            ? undefined
            : { ...key, state: 'destroyed', wrappedKey: Buffer.alloc(0), destroyedAt: now },
        );
      },
    };

    const holds = {
      covering: async (ref: SessionRef) =>
        this.activeHoldsCovering(ref.tenantId, ref.sessionId, state(ref)?.record.subjectId ?? null),
    };

    const historyOperations: AdapterHistoryOperations = {
      find: async (ref, operationId) => {
        const found = state(ref)?.operations.get(operationId);
        return found ? { ...found, digest: Buffer.from(found.digest) } : undefined;
      },
      insertIfAbsent: async (ref, record) => {
        const found = state(ref);
        if (!found) throw new Error('Operation recorded for a session that does not exist');
        if (found.operations.has(record.operationId)) return false;
        found.operations.set(record.operationId, { ...record, digest: Buffer.from(record.digest) });
        writable().push(() => found.operations.delete(record.operationId));
        return true;
      },
      deleteAll: async (ref) => {
        const found = state(ref);
        if (!found) return 0;
        const previous = found.operations;
        found.operations = new Map();
        writable().push(() => (found.operations = previous));
        return previous.size;
      },
    };

    return {
      sessions,
      items,
      dataKeys,
      historyOperations,
      holds,
      ...(undo && {
        audit: this.auditScope(undo),
        // Checked on this process's clock, as the leases are timed.
        fence: async (lease: JobLease) => {
          checkJobLease(lease);
          if (!holdsLease(this.jobLeases.get(lease.job), lease, Date.now())) {
            throw (unit.lost = leaseLostError(lease));
          }
          this.fencedJobs.add(lease.job);
        },
      }),
    };
  }

  /** One page of the expired items after `after`, in the scan order. */
  private listExpired(now: number, after: ExpiredItemKey, limit: number): ExpiredItemPage {
    const found: Array<ExpiredItemKey & { record: ExpiredItemRecord }> = [];
    for (const { record: session, items } of this.sessions.values()) {
      for (const item of items.values()) {
        if (item.expiresAt === null || item.expiresAt > now) continue;
        const { tenantId, sessionId } = session;
        const key = { expiresAt: item.expiresAt, tenantId, sessionId, seq: item.seq };
        if (compareExpiredItemKeys(key, after) <= 0) continue;
        found.push({ ...key, record: { tenantId, sessionId, item: copyStoredItem(item) } });
      }
    }
    const page = found.toSorted(compareExpiredItemKeys).slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map(({ record }) => record),
      cursor: last && page.length === limit ? encodeExpiredItemCursor(last) : undefined,
    };
  }

  private listWrappedByOtherKek(
    kekId: string,
    cursor: string | undefined,
    limit: number,
  ): DataKeyPage {
    const records = [...this.dataKeys.values()]
      .filter((key) => key.state !== 'destroyed' && key.kekId !== kekId)
      .filter((key) => cursor === undefined || key.dekId > cursor)
      .sort((a, b) => (a.dekId < b.dekId ? -1 : 1))
      .slice(0, limit)
      .map(copyDataKeyRecord);
    return {
      records,
      cursor: records.length === limit ? records.at(-1)!.dekId : undefined,
    };
  }

  private countByKek(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const key of this.dataKeys.values()) {
      if (key.state !== 'destroyed') counts[key.kekId] = (counts[key.kekId] ?? 0) + 1;
    }
    return counts;
  }

  private updateKeys(
    ref: SessionRef,
    undo: UndoLog,
    change: (key: DataKeyRecord) => DataKeyRecord | undefined,
  ): number {
    let changed = 0;
    for (const [dekId, key] of this.dataKeys) {
      if (key.tenantId !== ref.tenantId || key.sessionId !== ref.sessionId) continue;
      const next = change(key);
      if (!next) continue;
      this.dataKeys.set(dekId, next);
      undo.push(() => this.dataKeys.set(dekId, key));
      changed++;
    }
    return changed;
  }
}
