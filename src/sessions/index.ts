// The sessions layer as the module layer and hosts use it.
export { EncryptedSession, type EncryptedSessionContext } from './encrypted-session.js';
export { EncryptedSessionService, type OpenSessionOptions } from './encrypted-session.service.js';
export { MAX_ID_LENGTH } from './session-ids.js';
export { BatchBudget } from './batch-budget.js';
export { DataKeyReEncryption, type RetiringKeyOutcome } from './data-key-reencryption.js';
export {
  type CheckedBatch,
  ExpiredItemPurge,
  type SessionPurgeCounts,
  unpurgedCounts,
} from './expired-item-purge.js';
export { IdleSessionPurge, type IdleSessionOutcome } from './idle-session-purge.js';
export {
  DEFAULT_MAX_ITEM_BYTES,
  DEFAULT_SESSION_DEFAULTS,
  SESSION_DEFAULTS,
  type SessionDefaults,
} from './session-defaults.js';
export {
  ERASURE_REASONS,
  ERASURE_RECEIPT_SCHEMA,
  verifyErasureReceipt,
  type ErasureReason,
  type ErasureReceipt,
  type ErasureReceiptBody,
} from './erasure-receipt.js';
export type { EraseOptions, ErasureReplayReport, ReplayErasureOptions } from './erasure.js';
export type {
  HeldItemExportLine,
  LegalHold,
  ListHoldsOptions,
  PlaceHoldInput,
} from './legal-holds.js';
