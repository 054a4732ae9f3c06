/**
 * Every `code` an {@link EncryptedSessionError} can carry. A host's `Record` or `switch` over it
 * is checked for completeness by the compiler, so a code added in a release cannot go unmapped.
 *
 * @publicApi
 */
export type EncryptedSessionErrorCode =
  | 'AUDIT_ACTOR_REQUIRED'
  | 'AUDIT_WRITE_FAILED'
  | 'CONFIGURATION'
  | 'HISTORY_CONFLICT'
  | 'INTEGRITY'
  | 'INVALID_ARGUMENT'
  | 'KEY_DESTROYED'
  | 'KEY_PROVIDER_UNAVAILABLE'
  | 'KEY_UNUSABLE'
  | 'LEASE_LOST'
  | 'LEGAL_HOLD'
  | 'SESSION_NOT_FOUND'
  | 'SHUTTING_DOWN'
  | 'STORAGE_UNAVAILABLE';

/**
 * Base class of every error this module throws on purpose.
 *
 * `code` is stable across releases, so hosts can branch on it; `message` says what happened and
 * what to do, and never carries item content, key material or tokens.
 *
 * @publicApi
 */
export abstract class EncryptedSessionError extends Error {
  /** Stable, machine-readable identifier of the failure. */
  abstract readonly code: EncryptedSessionErrorCode;
  /** True when the same call may succeed later without any change (an outage, a busy lock). */
  readonly retryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
