import { EncryptedSessionError } from './encrypted-session.error.js';

/**
 * A stored item or wrapped key failed authentication or is not in a format this module wrote:
 * tampered bytes, a ciphertext moved to another session or position, a changed expiry, a
 * plaintext row, or an unknown format version. Never retryable; nothing is deleted.
 *
 * @publicApi
 */
export class IntegrityError extends EncryptedSessionError {
  readonly code = 'INTEGRITY';
}

/**
 * The data key an item needs was destroyed (erasure or expiry): the item cannot be read again.
 *
 * @publicApi
 */
export class KeyDestroyedError extends EncryptedSessionError {
  readonly code = 'KEY_DESTROYED';
}

/**
 * The key provider could not be reached and the data key is not cached. Retry later.
 *
 * @publicApi
 */
export class KeyProviderUnavailableError extends EncryptedSessionError {
  readonly code = 'KEY_PROVIDER_UNAVAILABLE';
  override readonly retryable = true;
}

/**
 * The key provider answered, but refuses to use the root key: disabled, scheduled for
 * deletion, gone, or not allowed to this app. An operator has to act; retrying does not help.
 *
 * @publicApi
 */
export class KeyUnusableError extends EncryptedSessionError {
  readonly code = 'KEY_UNUSABLE';
}

/**
 * Options or key configuration are unusable; raised at startup with what to set instead.
 *
 * @publicApi
 */
export class ConfigurationError extends EncryptedSessionError {
  readonly code = 'CONFIGURATION';
}

/**
 * A caller passed an argument outside the documented range (a negative limit, an empty id).
 *
 * @publicApi
 */
export class InvalidArgumentError extends EncryptedSessionError {
  readonly code = 'INVALID_ARGUMENT';
}

/**
 * A history transaction cannot apply: its operation id was already used for a different
 * transaction, or the suffix it expects is no longer the newest history. History is unchanged.
 *
 * @publicApi
 */
export class HistoryConflictError extends EncryptedSessionError {
  readonly code = 'HISTORY_CONFLICT';
}

/**
 * The storage backend failed in a way that may pass (busy, connection lost). Retry later.
 *
 * @publicApi
 */
export class StorageUnavailableError extends EncryptedSessionError {
  readonly code = 'STORAGE_UNAVAILABLE';
  override readonly retryable = true;
}

/**
 * The session does not exist (never opened, or erased). Open it again to start a new one.
 *
 * @publicApi
 */
export class SessionNotFoundError extends EncryptedSessionError {
  readonly code = 'SESSION_NOT_FOUND';
}

/**
 * The module is shutting down: the call was refused before it did anything, so nothing was
 * stored. Retry it on an instance that is running (an HTTP host answers 503).
 *
 * @publicApi
 */
export class ShuttingDownError extends EncryptedSessionError {
  readonly code = 'SHUTTING_DOWN';
  override readonly retryable = true;
}

/**
 * The audit record of an operation could not be written (the audit table refused the insert,
 * the disk is full, the chain head moved under a damaged row), so the operation failed closed:
 * nothing of it was stored. Fix the audit store, then retry the call.
 *
 * @publicApi
 */
export class AuditWriteError extends EncryptedSessionError {
  readonly code = 'AUDIT_WRITE_FAILED';
}

/**
 * An audited operation had no actor: no `runAs()`, no request context from the module's
 * middleware or interceptor, no agents run context mapped to one. With `audit.requireActor` on
 * (the default in production) it is refused before it touches anything. Run the call inside
 * `runAs(actor, ...)` or enable the module's actor middleware.
 *
 * @publicApi
 */
export class AuditActorRequiredError extends EncryptedSessionError {
  readonly code = 'AUDIT_ACTOR_REQUIRED';
}

/**
 * A scheduled job's write was refused because the job no longer holds its lease: it lapsed
 * (the process was paused or cut off past its time to live) and another replica may have taken
 * it. Nothing of that write was stored; the job stops, and the lease holder carries on.
 *
 * @publicApi
 */
export class LeaseLostError extends EncryptedSessionError {
  readonly code = 'LEASE_LOST';
}

/**
 * Refused because a legal hold covers the target: held data is never erased or purged. Release
 * the hold (`releaseHold`) once the matter allows it, then erase again. Nothing was changed.
 *
 * @publicApi
 */
export class LegalHoldError extends EncryptedSessionError {
  readonly code = 'LEGAL_HOLD';
}
