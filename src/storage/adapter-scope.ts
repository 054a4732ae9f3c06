import { IntegrityError } from '../errors/index.js';
import type { AuditChainWrites, SessionReadScope, SessionWriteScope } from './storage.ports.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  DataKeyRecord,
  HistoryOperationRecord,
  JobLease,
  LegalHoldRecord,
  ResealedItem,
  SessionRecord,
  SessionRef,
  StoredAuditRecord,
  StoredItem,
} from './storage.records.js';

/*
 * What the adapters implement inside: repositories that name the session on every call, as
 * their statements and keys do. `bindReadScope` and `bindWriteScope` turn one into the
 * session-bound scope of the storage port, so callers never pass a session themselves.
 * Internal to the storage layer.
 */

/** Session rows, by ref. */
export interface AdapterSessionRows {
  find(ref: SessionRef): Promise<SessionRecord | undefined>;
  insertIfAbsent(record: SessionRecord): Promise<boolean>;
  reserveSequence(ref: SessionRef, count: number, now: number): Promise<number | undefined>;
  lockForWrite(ref: SessionRef, now: number): Promise<boolean>;
  /** Subject null on the session row and its data keys (SessionRowWrites.forgetSubject). */
  forgetSubject?(ref: SessionRef): Promise<void>;
  /** The session and all its rows but its audit chain (SessionRowWrites.deleteSession). */
  deleteSession?(ref: SessionRef): Promise<boolean>;
}

/** The legal holds covering a session (SessionHoldReads). */
export interface AdapterHolds {
  covering(ref: SessionRef): Promise<LegalHoldRecord[]>;
}

/** Item rows, by ref. */
export interface AdapterItems {
  insertMany(ref: SessionRef, items: readonly StoredItem[]): Promise<void>;
  listVisible(ref: SessionRef, now: number, limit: number): Promise<StoredItem[]>;
  listVisiblePage(
    ref: SessionRef,
    now: number,
    afterSeq: number,
    throughSeq: number,
    limit: number,
  ): Promise<StoredItem[]>;
  deleteBySeq(ref: SessionRef, seqs: readonly number[]): Promise<number>;
  deleteAll(ref: SessionRef): Promise<number>;
  /** ItemWrites.listSealedUnder. */
  listSealedUnder?(
    ref: SessionRef,
    dekId: string,
    afterSeq: number,
    limit: number,
  ): Promise<StoredItem[]>;
  /** ItemWrites.reseal. */
  reseal?(ref: SessionRef, fromDekId: string, items: readonly ResealedItem[]): Promise<number>;
}

/** Wrapped data keys, by ref. */
export interface AdapterDataKeys {
  /** The key with this id, whichever session it belongs to (the binding checks that). */
  findById(dekId: string): Promise<DataKeyRecord | undefined>;
  findActive(ref: SessionRef): Promise<DataKeyRecord | undefined>;
  maxGeneration(ref: SessionRef): Promise<number>;
  insertIfAbsent(record: DataKeyRecord): Promise<boolean>;
  retireActiveBelow(ref: SessionRef, generation: number): Promise<number>;
  destroyAllForSession(ref: SessionRef, now: number): Promise<number>;
  /** Every key of the session, by generation (DataKeyReads.listAll). */
  listAllForSession?(ref: SessionRef): Promise<DataKeyRecord[]>;
  /** Destroys the session's live keys with these ids (DataKeyWrites.destroyByIds). */
  destroyByIds?(ref: SessionRef, dekIds: readonly string[], now: number): Promise<number>;
  replaceWrapping(
    key: SessionRef & { dekId: string },
    expectedKekId: string,
    next: { kekId: string; wrappedKey: Buffer },
  ): Promise<boolean>;
}

/** Applied history operations, by ref. */
export interface AdapterHistoryOperations {
  find(ref: SessionRef, operationId: string): Promise<HistoryOperationRecord | undefined>;
  insertIfAbsent(ref: SessionRef, record: HistoryOperationRecord): Promise<boolean>;
  deleteAll(ref: SessionRef): Promise<number>;
}

/** Audit chains, by chain. */
export interface AdapterAuditChains {
  /** The chain's head, locked for the rest of the unit; undefined when it has no record. */
  lockHead(chain: AuditChainRef): Promise<AuditChainHeadRecord | undefined>;
  /**
   * Writes records the binding has checked to continue `head`, and moves the head to the last
   * one (conditionally on `head`, where the backend can check it).
   */
  append(
    chain: AuditChainRef,
    head: AuditChainHeadRecord | undefined,
    records: readonly StoredAuditRecord[],
  ): Promise<void>;
}

/** Everything an adapter's transaction can touch. */
export interface AdapterScope {
  readonly sessions: AdapterSessionRows;
  readonly items: AdapterItems;
  readonly dataKeys: AdapterDataKeys;
  readonly historyOperations: AdapterHistoryOperations;
  /** Absent on an adapter that keeps no audit trail. */
  readonly audit?: AdapterAuditChains;
  /** A job lease's fence in this unit (SessionWriteScope.fence); absent without leases. */
  readonly fence?: (lease: JobLease) => Promise<void>;
  /** Absent on an adapter that keeps no legal holds. */
  readonly holds?: AdapterHolds;
}

/** What an adapter's read-only unit of work offers: the read methods only. */
export interface AdapterReadScope {
  readonly sessions: Pick<AdapterSessionRows, 'find'>;
  readonly items: Pick<AdapterItems, 'listVisible' | 'listVisiblePage'>;
  readonly dataKeys: Pick<
    AdapterDataKeys,
    'findById' | 'findActive' | 'maxGeneration' | 'listAllForSession'
  >;
  readonly historyOperations: Pick<AdapterHistoryOperations, 'find'>;
  readonly holds?: AdapterHolds;
}

/** `ref` as a plain frozen value, so work cannot re-point the unit at another session. */
function frozenRef(ref: SessionRef): SessionRef {
  return Object.freeze({ tenantId: ref.tenantId, sessionId: ref.sessionId });
}

const sameSession = (a: SessionRef, b: SessionRef): boolean =>
  a.tenantId === b.tenantId && a.sessionId === b.sessionId;

/** A record for another session than the unit's own is a bug in the caller, not bad data. */
function ensureOwnSession(ref: SessionRef, record: SessionRef, what: string): void {
  if (!sameSession(ref, record)) {
    throw new Error(`${what} names another session than the unit of work it was written in`);
  }
}

/** The session-bound, read-only scope over an adapter's read scope. */
export function bindReadScope(scope: AdapterReadScope, sessionRef: SessionRef): SessionReadScope {
  const ref = frozenRef(sessionRef);
  return {
    ref,
    session: { find: () => scope.sessions.find(ref) },
    items: {
      listVisible: (now, limit) => scope.items.listVisible(ref, now, limit),
      listVisiblePage: (now, afterSeq, throughSeq, limit) =>
        scope.items.listVisiblePage(ref, now, afterSeq, throughSeq, limit),
    },
    dataKeys: {
      findById: async (dekId) => {
        const record = await scope.dataKeys.findById(dekId);
        return record && sameSession(ref, record) ? record : undefined;
      },
      findActive: () => scope.dataKeys.findActive(ref),
      maxGeneration: () => scope.dataKeys.maxGeneration(ref),
      ...(scope.dataKeys.listAllForSession && {
        listAll: () => scope.dataKeys.listAllForSession!(ref),
      }),
    },
    historyOperations: { find: (operationId) => scope.historyOperations.find(ref, operationId) },
    ...(scope.holds && { holds: { covering: () => scope.holds!.covering(ref) } }),
  };
}

/** A chain's first record follows this MAC. */
const GENESIS_MAC = Buffer.alloc(32);

const headLabel = (chain: AuditChainRef): string =>
  chain.sessionId === null ? "the tenant's control chain" : "the session's audit chain";

/**
 * The audit chain writes of one unit of work, for chains of `owner` (a session's tenant and
 * session, or a tenant with `sessionId` null). Every record must continue the head the unit
 * locked: seq rising by one, each `prevMac` the MAC before it; anything else is refused before
 * it reaches the adapter. `onlyChainId` limits the unit to one chain.
 */
export function bindAuditChains(
  adapter: AdapterAuditChains,
  owner: { readonly tenantId: string; readonly sessionId: string | null },
  onlyChainId?: string,
): AuditChainWrites {
  const tenantId = owner.tenantId;
  const sessionId = owner.sessionId;
  /** Heads this unit locked, as its own appends moved them. */
  const locked = new Map<string, AuditChainHeadRecord | undefined>();
  const chainOf = (chainId: string): AuditChainRef => ({ chainId, tenantId, sessionId });
  return {
    lockHead: async (chainId) => {
      if (onlyChainId !== undefined && chainId !== onlyChainId) {
        throw new Error(
          'An audit unit of work locked another chain than the one it was opened for',
        );
      }
      if (locked.has(chainId)) return locked.get(chainId);
      const head = await adapter.lockHead(chainOf(chainId));
      locked.set(chainId, head);
      return head;
    },
    append: async (records) => {
      if (records.length === 0) return;
      const chain = chainOf(records[0].chainId);
      if (!locked.has(chain.chainId)) {
        throw new Error('Audit records appended to a chain whose head the unit did not lock');
      }
      const head = locked.get(chain.chainId);
      let seq = head?.seq ?? 0;
      let mac: Buffer = head?.mac ?? GENESIS_MAC;
      for (const record of records) {
        if (
          record.chainId !== chain.chainId ||
          record.tenantId !== tenantId ||
          record.sessionId !== sessionId
        ) {
          throw new Error(
            'An audit record names another chain than the unit of work it was written in',
          );
        }
        if (record.seq !== seq + 1 || !record.prevMac.equals(mac)) {
          throw new IntegrityError(
            `An audit record does not continue ${headLabel(chain)} (seq ${record.seq} after ${seq}); nothing was stored. Verify the chain: its head may have been edited`,
          );
        }
        seq = record.seq;
        mac = record.mac;
      }
      await adapter.append(chain, head, records);
      const last = records.at(-1)!;
      locked.set(chain.chainId, {
        chainId: chain.chainId,
        tenantId,
        seq: last.seq,
        mac: Buffer.from(last.mac),
        time: last.time,
      });
    },
  };
}

/**
 * The session-bound scope of a transaction over an adapter's scope. Built for every unit of
 * work, so each object lists its own members first and spreads only optional ones at its end:
 * on Node 20 a spread followed by more properties costs about a microsecond per object.
 */
export function bindWriteScope(scope: AdapterScope, sessionRef: SessionRef): SessionWriteScope {
  const read = bindReadScope(scope, sessionRef);
  const { ref } = read;
  return {
    ref,
    session: {
      find: () => read.session.find(),
      insertIfAbsent: (record) => {
        ensureOwnSession(ref, record, 'A session record');
        return scope.sessions.insertIfAbsent(record);
      },
      reserveSequence: (count, now) => scope.sessions.reserveSequence(ref, count, now),
      lockForWrite: (now) => scope.sessions.lockForWrite(ref, now),
      ...(scope.sessions.forgetSubject && {
        forgetSubject: () => scope.sessions.forgetSubject!(ref),
      }),
      ...(scope.sessions.deleteSession && {
        deleteSession: () => scope.sessions.deleteSession!(ref),
      }),
    },
    items: {
      listVisible: (now, limit) => read.items.listVisible(now, limit),
      listVisiblePage: (now, afterSeq, throughSeq, limit) =>
        read.items.listVisiblePage(now, afterSeq, throughSeq, limit),
      insertMany: (items) => scope.items.insertMany(ref, items),
      deleteBySeq: (seqs) => scope.items.deleteBySeq(ref, seqs),
      deleteAll: () => scope.items.deleteAll(ref),
      ...(scope.items.listSealedUnder && {
        listSealedUnder: (dekId, afterSeq, limit) =>
          scope.items.listSealedUnder!(ref, dekId, afterSeq, limit),
      }),
      ...(scope.items.reseal && {
        reseal: (fromDekId, items) => scope.items.reseal!(ref, fromDekId, items),
      }),
    },
    dataKeys: {
      findById: (dekId) => read.dataKeys.findById(dekId),
      findActive: () => read.dataKeys.findActive(),
      maxGeneration: () => read.dataKeys.maxGeneration(),
      insertIfAbsent: (record) => {
        ensureOwnSession(ref, record, 'A data key record');
        return scope.dataKeys.insertIfAbsent(record);
      },
      retireActiveBelow: (generation) => scope.dataKeys.retireActiveBelow(ref, generation),
      destroyAll: (now) => scope.dataKeys.destroyAllForSession(ref, now),
      replaceWrapping: (dekId, expectedKekId, next) =>
        scope.dataKeys.replaceWrapping(
          { tenantId: ref.tenantId, sessionId: ref.sessionId, dekId },
          expectedKekId,
          next,
        ),
      ...(read.dataKeys.listAll && { listAll: () => read.dataKeys.listAll!() }),
      ...(scope.dataKeys.destroyByIds && {
        destroyByIds: (dekIds, now) => scope.dataKeys.destroyByIds!(ref, dekIds, now),
      }),
    },
    historyOperations: {
      find: (operationId) => read.historyOperations.find(operationId),
      insertIfAbsent: (record) => scope.historyOperations.insertIfAbsent(ref, record),
      deleteAll: () => scope.historyOperations.deleteAll(ref),
    },
    ...(scope.audit && { audit: bindAuditChains(scope.audit, ref) }),
    ...(scope.fence && { fence: scope.fence }),
    ...(read.holds && { holds: read.holds }),
  };
}
