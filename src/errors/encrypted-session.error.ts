/**
 * Base class of every error this module throws on purpose.
 *
 * `code` is stable across releases, so hosts can branch on it; `message` says what happened and
 * what to do, and never carries item content, key material or tokens.
 */
export abstract class EncryptedSessionError extends Error {
  /** Stable, machine-readable identifier of the failure. */
  abstract readonly code: string;
  /** True when the same call may succeed later without any change (an outage, a busy lock). */
  readonly retryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
