import { IntegrityError } from '../errors/index.js';
import type { SessionRef } from './storage.records.js';

/**
 * The error for an append whose newly reserved sequence number is already taken by a stored
 * item: the session's counter was set back (a rolled-back or restored session row). Damage
 * to stored data, not a race: a retry would fail the same way, so it is never retryable.
 */
export function sequenceBehindItemsError(ref: SessionRef, cause?: unknown): IntegrityError {
  return new IntegrityError(
    `The sequence counter of session '${ref.sessionId}' of tenant '${ref.tenantId}' is behind its stored items (the session row was rolled back or restored without its items); nothing was written. Restore the session row and its items from the same backup, or set the session's next_seq above its highest stored item`,
    cause === undefined ? undefined : { cause },
  );
}
