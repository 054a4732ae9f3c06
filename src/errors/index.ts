export {
  EncryptedSessionError,
  type EncryptedSessionErrorCode,
} from './encrypted-session.error.js';
export {
  AuditActorRequiredError,
  AuditWriteError,
  ConfigurationError,
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
} from './errors.js';
