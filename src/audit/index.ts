// The audit layer as the layers above use it: the event schema, its chains and checkpoints'
// hash trees, and subject references. (The service, storage and sinks build on these.)
export {
  AUDIT_ACTIONS,
  AUDIT_ACTOR_TYPES,
  AUDIT_OUTCOMES,
  AUDIT_REASONS,
  AUDIT_SCHEMA,
  MAX_AUDIT_ID_LENGTH,
  buildAuditEvent,
  checkAuditActor,
  type AuditAction,
  type AuditActor,
  type AuditChainFields,
  type AuditEvent,
  type AuditEventBody,
  type AuditEventInput,
  type AuditKeys,
  type AuditOutcome,
  type AuditReason,
  type AuditSource,
  type AuditTarget,
} from './audit-event.js';
export {
  AUDIT_MAC_LENGTH,
  GENESIS_PREV_MAC,
  auditRecordOf,
  bodyDigest,
  bodyJsonOf,
  canonicalJson,
  chainMac,
  chainMacMatches,
  eventDigest,
  parseChainId,
  sealAuditEvent,
  sessionChainId,
  tenantChainId,
  type AuditRecord,
  type ChainLink,
} from './audit-chain.js';
export {
  merkleInclusionProof,
  merkleLeafHash,
  merkleRoot,
  verifyMerkleInclusion,
} from './merkle.js';
export { subjectRef } from './subject-ref.js';
export {
  CHECKPOINT_SCHEMA,
  checkpointLeaf,
  checkpointSignatureHolds,
  headInclusionProof,
  headIsInCheckpoint,
  headsMatchCheckpoint,
  signCheckpoint,
  sortedHeads,
  type AuditCheckpoint,
  type AuditCheckpointBody,
  type ChainHead,
  type HeadInclusionProof,
} from './checkpoint.js';
export { currentAuditContext, runAs, type AuditContext } from './audit-context.js';
export {
  AUDIT_KEYRING,
  AUDIT_KEYS_TENANT,
  type AuditKeyring,
  type AuditMacKey,
} from './audit-keys.js';
export {
  AUDIT_TRAIL,
  AuditTrail,
  PendingAuditEvent,
  auditChainOf,
  auditReasonOf,
  type AuditReadsPolicy,
  type AuditSubjectTarget,
  type AuditTrailOptions,
} from './audit-trail.js';
export {
  verifyChain,
  type ChainBreak,
  type ChainVerification,
  type ChainVerificationOptions,
} from './chain-verifier.js';
export { CHAIN_PAGE_SIZE, auditRecordFromStored, chainPages } from './stored-records.js';
export {
  AuditService,
  type AccessReportPage,
  type AccessReportQuery,
  type AuditVerification,
  type AuditVerifyOptions,
} from './audit.service.js';
export { AuditActorMiddleware } from './audit-actor.middleware.js';
export {
  AUDIT_CHECKPOINT_MESSAGE,
  AUDIT_LOG_MESSAGE,
  AUDIT_SINK,
  WinstonAuditSink,
  auditFileLogger,
  type AuditSinkStats,
} from './winston-sink.js';
export {
  chainRefOfId,
  checkedCheckpoint,
  signingKeyIdOf,
  takeCheckpoint,
  type CheckpointBreak,
  type CheckpointCheck,
  type CheckpointSigner,
} from './checkpoints.js';
