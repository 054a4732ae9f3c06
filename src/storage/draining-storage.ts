import { ShuttingDownError } from '../errors/index.js';
import type { SessionRef } from './storage.records.js';
import {
  supportsMaintenance,
  type AuditStorage,
  type ErasureLedgerStorage,
  type LeaseStorage,
  type LegalHoldStorage,
  type MaintenanceUnsupported,
  type SessionReadScope,
  type SessionStorage,
  type SessionWriteScope,
  type StorageMaintenance,
} from './storage.ports.js';
import { WorkInFlight } from './work-in-flight.js';

/**
 * A {@link SessionStorage} whose `close()` refuses new units of work with `ShuttingDownError`,
 * lets the units in flight finish, and only then closes the adapter it wraps. The module wraps
 * every storage it uses, its own or a host's `storage.instance`, so no adapter has to count.
 */
export class DrainingSessionStorage implements SessionStorage {
  readonly maintenance: StorageMaintenance | MaintenanceUnsupported | undefined;
  readonly audit: AuditStorage | undefined;
  readonly leases: LeaseStorage | undefined;
  readonly holds: LegalHoldStorage | undefined;
  readonly erasureLedger: ErasureLedgerStorage | undefined;
  readonly transactionAcross: SessionStorage['transactionAcross'];
  private readonly units = new WorkInFlight(
    () =>
      new ShuttingDownError(
        'Session storage is closing because the app is shutting down; the call was refused and nothing was stored. Retry it on a running instance.',
      ),
  );
  private closed: Promise<void> | undefined;

  constructor(private readonly adapter: SessionStorage) {
    this.maintenance = supportsMaintenance(adapter)
      ? this.countedMaintenance(adapter.maintenance)
      : adapter.maintenance;
    this.audit = adapter.audit && this.countedAudit(adapter.audit);
    this.leases = adapter.leases && this.countedLeases(adapter.leases);
    this.holds = adapter.holds && this.countedHolds(adapter.holds);
    this.erasureLedger = adapter.erasureLedger && this.countedLedger(adapter.erasureLedger);
    const across = adapter.transactionAcross?.bind(adapter);
    this.transactionAcross =
      across && ((tenantId, refs, work) => this.units.run(() => across(tenantId, refs, work)));
  }

  get backend(): string {
    return this.adapter.backend;
  }

  read<T>(ref: SessionRef, work: (scope: SessionReadScope) => Promise<T>): Promise<T> {
    return this.units.run(() => this.adapter.read(ref, work));
  }

  transaction<T>(ref: SessionRef, work: (scope: SessionWriteScope) => Promise<T>): Promise<T> {
    return this.units.run(() => this.adapter.transaction(ref, work));
  }

  /** Refuses new units, waits for those in flight, then closes the adapter. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.units.close().then(() => this.adapter.close());
    return this.closed;
  }

  private countedAudit(audit: AuditStorage): AuditStorage {
    return {
      transaction: (chain, work) => this.units.run(() => audit.transaction(chain, work)),
      readChain: (chain, afterSeq, limit) =>
        this.units.run(() => audit.readChain(chain, afterSeq, limit)),
      ...(audit.readChainLinks && {
        readChainLinks: (chain, afterSeq, limit) =>
          this.units.run(() => audit.readChainLinks!(chain, afterSeq, limit)),
      }),
      findHead: (chain) => this.units.run(() => audit.findHead(chain)),
      listHeads: (tenantId, afterChainId, limit) =>
        this.units.run(() => audit.listHeads(tenantId, afterChainId, limit)),
      listRecords: (query) => this.units.run(() => audit.listRecords(query)),
      ...(audit.appendCheckpoint && {
        appendCheckpoint: (checkpoint) => this.units.run(() => audit.appendCheckpoint!(checkpoint)),
      }),
      ...(audit.latestCheckpoint && {
        latestCheckpoint: (tenantId) => this.units.run(() => audit.latestCheckpoint!(tenantId)),
      }),
    };
  }

  private countedLeases(leases: LeaseStorage): LeaseStorage {
    return {
      acquire: (job, owner, ttlMs) => this.units.run(() => leases.acquire(job, owner, ttlMs)),
      renew: (lease, ttlMs) => this.units.run(() => leases.renew(lease, ttlMs)),
      release: (lease) => this.units.run(() => leases.release(lease)),
      current: (job) => this.units.run(() => leases.current(job)),
    };
  }

  private countedHolds(holds: LegalHoldStorage): LegalHoldStorage {
    return {
      insert: (hold) => this.units.run(() => holds.insert(hold)),
      release: (holdId, releasedAt, releasedBy) =>
        this.units.run(() => holds.release(holdId, releasedAt, releasedBy)),
      find: (holdId) => this.units.run(() => holds.find(holdId)),
      list: (query) => this.units.run(() => holds.list(query)),
      activeCovering: (tenantId, sessionId, subjectId) =>
        this.units.run(() => holds.activeCovering(tenantId, sessionId, subjectId)),
      activeOnSubject: (tenantId, subjectId) =>
        this.units.run(() => holds.activeOnSubject(tenantId, subjectId)),
    };
  }

  private countedLedger(ledger: ErasureLedgerStorage): ErasureLedgerStorage {
    return {
      insert: (entry) => this.units.run(() => ledger.insert(entry)),
      complete: (erasureId, completedAt, receipt) =>
        this.units.run(() => ledger.complete(erasureId, completedAt, receipt)),
      find: (erasureId) => this.units.run(() => ledger.find(erasureId)),
      list: (afterErasureId, limit) => this.units.run(() => ledger.list(afterErasureId, limit)),
    };
  }

  private countedMaintenance(maintenance: StorageMaintenance): StorageMaintenance {
    return {
      supported: true,
      listDataKeysWrappedByOtherKek: (kekId, cursor, limit) =>
        this.units.run(() => maintenance.listDataKeysWrappedByOtherKek(kekId, cursor, limit)),
      countDataKeysByKek: () => this.units.run(() => maintenance.countDataKeysByKek()),
      ...(maintenance.listRetiringDataKeys && {
        listRetiringDataKeys: (cursor, limit) =>
          this.units.run(() => maintenance.listRetiringDataKeys!(cursor, limit)),
      }),
      ...(maintenance.dataKeyAges && {
        dataKeyAges: (createdBefore, exceptTenantId) =>
          this.units.run(() => maintenance.dataKeyAges!(createdBefore, exceptTenantId)),
      }),
      ...(maintenance.listExpiredItems && {
        listExpiredItems: (now, cursor, limit) =>
          this.units.run(() => maintenance.listExpiredItems!(now, cursor, limit)),
      }),
      ...(maintenance.listIdleSessions && {
        listIdleSessions: (before, cursor, limit) =>
          this.units.run(() => maintenance.listIdleSessions!(before, cursor, limit)),
      }),
      ...(maintenance.listSessionsOfSubject && {
        listSessionsOfSubject: (tenantId, subjectId, afterSessionId, limit) =>
          this.units.run(() =>
            maintenance.listSessionsOfSubject!(tenantId, subjectId, afterSessionId, limit),
          ),
      }),
    };
  }
}
