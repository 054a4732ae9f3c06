import { InvalidArgumentError } from '../errors/index.js';

/*
 * What every adapter's expired-item scan shares: the checks of its arguments, the keyset its
 * pages continue from, and the order (expiry, tenant bytes, session bytes, seq) the memory
 * adapter sorts by as the SQL statement does.
 */

/** Where a page of `listExpiredItems` ended: the last item's place in the scan order. */
export interface ExpiredItemKey {
  readonly expiresAt: number;
  readonly tenantId: string;
  readonly sessionId: string;
  readonly seq: number;
}

/**
 * Where the first page starts: before every item (ids are never empty; an expiry below
 * -2^53 no reader could use anyway).
 */
export const FIRST_EXPIRED_ITEM_KEY: ExpiredItemKey = {
  expiresAt: Number.MIN_SAFE_INTEGER,
  tenantId: '',
  sessionId: '',
  seq: Number.MIN_SAFE_INTEGER,
};

/** The opaque cursor of the page ending at `key`: base64url JSON, so any id survives it. */
export function encodeExpiredItemCursor(key: ExpiredItemKey): string {
  return Buffer.from(
    JSON.stringify([key.expiresAt, key.tenantId, key.sessionId, key.seq]),
  ).toString('base64url');
}

/** The key a cursor names; InvalidArgumentError for one no page returned. */
export function decodeExpiredItemCursor(cursor: string | undefined): ExpiredItemKey {
  if (cursor === undefined) return FIRST_EXPIRED_ITEM_KEY;
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parts = undefined;
  }
  if (
    Array.isArray(parts) &&
    parts.length === 4 &&
    Number.isSafeInteger(parts[0]) &&
    typeof parts[1] === 'string' &&
    typeof parts[2] === 'string' &&
    Number.isSafeInteger(parts[3])
  ) {
    const [expiresAt, tenantId, sessionId, seq] = parts as [number, string, string, number];
    return { expiresAt, tenantId, sessionId, seq };
  }
  throw new InvalidArgumentError(
    'The cursor passed to listExpiredItems is not one a page of it returned: pass the cursor of the previous page unchanged, or undefined for the first page',
  );
}

/** Checks the arguments of `listExpiredItems`; InvalidArgumentError for a bad one. */
export function checkExpiredItemScan(now: unknown, limit: unknown): void {
  if (typeof now !== 'number' || !Number.isSafeInteger(now)) {
    throw new InvalidArgumentError(
      'listExpiredItems takes `now` as whole epoch milliseconds, e.g. Date.now()',
    );
  }
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(
      'listExpiredItems takes a page `limit` that is a whole number >= 1, e.g. 500',
    );
  }
}

/** Compares two ids as every backend stores them: by their UTF-8 bytes. */
export const compareIdBytes = (a: string, b: string): number =>
  Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

const compareNumbers = (a: number, b: number): number => (a < b ? -1 : a > b ? 1 : 0);

/** The scan order: expiry, then tenant and session by their bytes, then seq. */
export function compareExpiredItemKeys(a: ExpiredItemKey, b: ExpiredItemKey): number {
  return (
    compareNumbers(a.expiresAt, b.expiresAt) ||
    compareIdBytes(a.tenantId, b.tenantId) ||
    compareIdBytes(a.sessionId, b.sessionId) ||
    compareNumbers(a.seq, b.seq)
  );
}
