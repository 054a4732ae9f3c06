/**
 * The public API of nest-encrypted-sessions: everything a host imports, and nothing else.
 * Internals (serial queue, SQL dialects, the Redis key layout, data-source openers, option
 * validators, injection tokens of the raw storage and key provider, the key ring's usable keys,
 * history-transaction helpers, record copiers) are reachable only by path, for this package's
 * own tests and benchmark; a host that injected the raw storage port could write around the
 * encryption. Adapters that need an optional package have entries of their own:
 * `nest-encrypted-sessions/typeorm`, `/redis`, `/aws-kms` and `/vault`, and so do the
 * `@nestjs/terminus` health indicators (`/health`, never loaded from here); the envelope format
 * is also at `/crypto`. `test/module/public-api.spec.ts` lists every entry's exports.
 *
 * @packageDocumentation
 */

// Errors: every error thrown on purpose, with its stable code.
export {
  AuditActorRequiredError,
  AuditWriteError,
  ConfigurationError,
  EncryptedSessionError,
  HistoryConflictError,
  IntegrityError,
  InvalidArgumentError,
  KeyDestroyedError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  LeaseLostError,
  LegalHoldError,
  SessionNotFoundError,
  ShuttingDownError,
  StorageUnavailableError,
  type EncryptedSessionErrorCode,
} from './errors/index.js';

// The Nest module and its options (the AWS KMS, Vault, Redis and TypeORM adapters have their
// own entries: nest-encrypted-sessions/aws-kms, /vault, /redis, /typeorm).
export {
  DEFAULT_SQLITE_PATH,
  EncryptedSessionModule,
  type ActorResolver,
  type AuditOptions,
  type AwsCredentialsOption,
  type AwsKmsKeySourceOptions,
  type EncryptedSessionModuleExtras,
  type EncryptedSessionModuleOptions,
  type EnvKeySourceOptions,
  type JobsOptions,
  type KeysOptions,
  type RedisStorageOptions,
  type SqlServerStorageOptions,
  type SqliteStorageOptions,
  type StorageOptions,
  type VaultAuthOptions,
  type VaultKvKeySourceOptions,
  type VaultTransitKeySourceOptions,
} from './module/index.js';

// Audit trail: the service, the actor context, the event schema (docs/audit-format.md).
export {
  AuditActorMiddleware,
  AuditService,
  currentAuditContext,
  runAs,
  type AccessReportPage,
  type AccessReportQuery,
  type AuditAction,
  type AuditActor,
  type AuditContext,
  type AuditEvent,
  type AuditOutcome,
  type AuditReason,
  type AuditSource,
  type AuditTarget,
  type AuditVerification,
  type AuditVerifyOptions,
  type ChainBreak,
  type ChainVerification,
} from './audit/index.js';

// Scheduled jobs: each a public method, on a cron when options.jobs enables it.
export {
  EncryptedSessionJobs,
  KeyRotationService,
  RetentionService,
  type HeldLease,
  type JobLeaseStatus,
  type JobRunReport,
  type JobStatus,
  type KeyRotationProgress,
  type KeyRotationReport,
  type KeyRotationStatus,
  type PurgeOptions,
  type PurgeProgress,
  type PurgeReport,
} from './jobs/index.js';

// Sessions: open one, hand it to @openai/agents.
export {
  DEFAULT_MAX_ITEM_BYTES,
  EncryptedSession,
  EncryptedSessionService,
  ERASURE_REASONS,
  ERASURE_RECEIPT_SCHEMA,
  MAX_ID_LENGTH,
  verifyErasureReceipt,
  type EraseOptions,
  type ErasureReason,
  type ErasureReceipt,
  type ErasureReceiptBody,
  type ErasureReplayReport,
  type HeldItemExportLine,
  type LegalHold,
  type ListHoldsOptions,
  type OpenSessionOptions,
  type PlaceHoldInput,
  type ReplayErasureOptions,
} from './sessions/index.js';

// Keys: the env provider, the port of any other, the data key cache's counters, KEK rotation.
export {
  EnvKeyProvider,
  KekRotationService,
  KeyRing,
  type DataKeyContext,
  type EnvKeyProviderOptions,
  type GeneratedDataKey,
  type KeyCacheOptions,
  type KeyProvider,
  type KeyProviderRetryOptions,
  type KeyProviderStatus,
  type KeyRingStats,
  type KeyRotationPolicyOptions,
  type KekRotationStatus,
  type RewrapOptions,
  type RewrapProgress,
  type RewrapReport,
  type WrappedDataKey,
} from './keys/index.js';

// Storage: the port a host's own adapter implements (with the audit trail's records and the
// jobs' leases), and the in-memory adapter.
export {
  MemorySessionStorage,
  supportsMaintenance,
  type AuditChainHeadRecord,
  type AuditChainRef,
  type AuditChainWrites,
  type AuditRecordQuery,
  type AuditStorage,
  type DataKeyAges,
  type DataKeyPage,
  type DataKeyReads,
  type DataKeyRecord,
  type DataKeyState,
  type DataKeyWrites,
  type ErasureLedgerRecord,
  type ErasureLedgerStorage,
  type ExpiredItemPage,
  type ExpiredItemRecord,
  type HistoryOperationReads,
  type HistoryOperationRecord,
  type HistoryOperationWrites,
  type IdleSessionPage,
  type ItemReads,
  type ItemWrites,
  type JobLease,
  type LeaseStorage,
  type LegalHoldQuery,
  type LegalHoldRecord,
  type LegalHoldStorage,
  type MaintenanceUnsupported,
  type MultiSessionUnit,
  type SessionHoldReads,
  type SessionReadScope,
  type SessionRecord,
  type SessionRef,
  type SessionRowReads,
  type SessionRowWrites,
  type SessionStorage,
  type SessionWriteScope,
  type StorageMaintenance,
  type StoredAuditRecord,
  type StoredChainLink,
  type StoredCheckpoint,
  type StoredItem,
} from './storage/index.js';

// Crypto: the envelope and key-wrap formats (docs/envelope-format.md), pure functions.
export {
  ENVELOPE_FORMAT_VERSION,
  ENVELOPE_HEADER_LENGTH,
  ENVELOPE_TAG_LENGTH,
  MAX_ITEM_DEPTH,
  SUITE_AES_256_GCM,
  bytesToUuid,
  decodeItemPayload,
  deriveSubkey,
  encodeEncryptionContext,
  encodeItemPayload,
  openEnvelope,
  openItem,
  parseEnvelope,
  sealItem,
  unwrapDataKey,
  uuidToBytes,
  wrapDataKey,
  type EnvelopeHeader,
  type ItemBinding,
  type ItemDataKey,
  type ItemKey,
  type ParsedEnvelope,
} from './crypto/index.js';
