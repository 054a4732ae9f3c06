// The storage layer as the layers above use it: the port, its records, and the adapters that
// need no optional package. The TypeORM and Redis adapters have barrels of their own
// (./typeorm, ./redis), loaded only by a host that uses them.
export {
  SESSION_STORAGE,
  type AuditChainWrites,
  type AuditStorage,
  maintenanceUnsupportedReason,
  supportsMaintenance,
  type DataKeyAges,
  type DataKeyPage,
  type DataKeyReads,
  type DataKeyWrites,
  type ErasureLedgerStorage,
  type ExpiredItemPage,
  type HistoryOperationReads,
  type IdleSessionPage,
  type HistoryOperationWrites,
  type ItemReads,
  type ItemWrites,
  type LeaseStorage,
  type LegalHoldStorage,
  LOCK_WITHOUT_ACTIVITY,
  type MaintainableStorage,
  type MaintenanceUnsupported,
  type MultiSessionUnit,
  type SessionHoldReads,
  type SessionReadScope,
  type SessionRowReads,
  type SessionRowWrites,
  type SessionStorage,
  type SessionWriteScope,
  type StorageMaintenance,
} from './storage.ports.js';
export {
  type AuditChainHeadRecord,
  type AuditChainRef,
  type AuditRecordQuery,
  type DataKeyRecord,
  type DataKeyState,
  type ErasureLedgerRecord,
  type ExpiredItemRecord,
  type HistoryOperationRecord,
  type JobLease,
  type LegalHoldQuery,
  type LegalHoldRecord,
  type SessionRecord,
  type SessionRef,
  type StoredAuditRecord,
  type StoredChainLink,
  type StoredCheckpoint,
  type ResealedItem,
  type StoredItem,
} from './storage.records.js';
export { DrainingSessionStorage } from './draining-storage.js';
export { compareIdBytes } from './expired-items.js';
export {
  BACKGROUND_SHARE,
  chargeBackgroundWork,
  isBackgroundWork,
  runAsBackgroundWork,
} from './serial-queue.js';
export { WorkInFlight } from './work-in-flight.js';
export { MemorySessionStorage } from './memory/memory.session-storage.js';
