import { InvalidArgumentError } from '../errors/index.js';
import { compareIdBytes } from './expired-items.js';

/*
 * What every adapter's idle-session scan shares: the checks of its arguments, the keyset its
 * pages continue from, and the order (last activity, tenant bytes, session bytes).
 */

/** Where a page of `listIdleSessions` ended: the last session's place in the scan order. */
export interface IdleSessionKey {
  readonly lastActivityAt: number;
  readonly tenantId: string;
  readonly sessionId: string;
}

/** Before every session (ids are never empty). */
export const FIRST_IDLE_SESSION_KEY: IdleSessionKey = {
  lastActivityAt: Number.MIN_SAFE_INTEGER,
  tenantId: '',
  sessionId: '',
};

/** The opaque cursor of the page ending at `key`: base64url JSON, so any id survives it. */
export function encodeIdleSessionCursor(key: IdleSessionKey): string {
  return Buffer.from(JSON.stringify([key.lastActivityAt, key.tenantId, key.sessionId])).toString(
    'base64url',
  );
}

/** The key a cursor names; InvalidArgumentError for one no page returned. */
export function decodeIdleSessionCursor(cursor: string | undefined): IdleSessionKey {
  if (cursor === undefined) return FIRST_IDLE_SESSION_KEY;
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parts = undefined;
  }
  if (
    Array.isArray(parts) &&
    parts.length === 3 &&
    Number.isSafeInteger(parts[0]) &&
    typeof parts[1] === 'string' &&
    typeof parts[2] === 'string'
  ) {
    const [lastActivityAt, tenantId, sessionId] = parts as [number, string, string];
    return { lastActivityAt, tenantId, sessionId };
  }
  throw new InvalidArgumentError(
    'The cursor passed to listIdleSessions is not one a page of it returned: pass the cursor of the previous page unchanged, or undefined for the first page',
  );
}

/** Checks the arguments of `listIdleSessions`; InvalidArgumentError for a bad one. */
export function checkIdleSessionScan(before: unknown, limit: unknown): void {
  if (typeof before !== 'number' || !Number.isSafeInteger(before)) {
    throw new InvalidArgumentError(
      'listIdleSessions takes `before` as whole epoch milliseconds, e.g. Date.now() - 30 * 86400000',
    );
  }
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(
      'listIdleSessions takes a page `limit` that is a whole number >= 1, e.g. 500',
    );
  }
}

/** The scan order: last activity, then tenant and session by their bytes. */
export function compareIdleSessionKeys(a: IdleSessionKey, b: IdleSessionKey): number {
  return (
    (a.lastActivityAt < b.lastActivityAt ? -1 : a.lastActivityAt > b.lastActivityAt ? 1 : 0) ||
    compareIdBytes(a.tenantId, b.tenantId) ||
    compareIdBytes(a.sessionId, b.sessionId)
  );
}
