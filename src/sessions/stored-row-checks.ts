import { IntegrityError } from '../errors/index.js';
import type { HistoryOperationRecord, SessionRef, StoredItem } from '../storage/index.js';

/*
 * Checks on what a storage adapter hands back, before the session layer uses any of it. An
 * adapter converts columns as best it can; a row altered in the database (a TEXT sequence
 * number, an INTEGER ciphertext, a number beyond 2^53) must still end as IntegrityError, never
 * as a TypeError, an InvalidArgumentError or a row silently skipped. Messages name the field,
 * never the stored value: it may be anything, content included.
 */

function damaged(ref: SessionRef, what: string, reason: string): IntegrityError {
  return new IntegrityError(
    `A stored ${what} of session '${ref.sessionId}' is damaged (${reason}): the row was altered or not written by this module. Nothing was deleted`,
  );
}

const isSafeNumber = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value);

/** Throws IntegrityError unless `row` has the shape and ranges of a stored item. */
export function checkStoredItem(ref: SessionRef, row: unknown): StoredItem {
  if (row === null || typeof row !== 'object') throw damaged(ref, 'item', 'not a row');
  const item = row as Record<keyof StoredItem, unknown>;
  if (!isSafeNumber(item.seq) || item.seq <= 0) {
    throw damaged(ref, 'item', 'its sequence number is not a positive whole number below 2^53');
  }
  if (item.expiresAt !== null && !isSafeNumber(item.expiresAt)) {
    throw damaged(ref, 'item', 'its expiry is neither empty nor a whole number below 2^53');
  }
  if (!isSafeNumber(item.createdAt)) {
    throw damaged(ref, 'item', 'its creation time is not a whole number below 2^53');
  }
  if (typeof item.dekId !== 'string' || item.dekId.length === 0) {
    throw damaged(ref, 'item', 'its data key id is not text');
  }
  if (!Buffer.isBuffer(item.ciphertext)) {
    throw damaged(ref, 'item', 'its ciphertext is not binary');
  }
  return row as StoredItem;
}

/**
 * Checks each row and that the list is what was asked for: ascending sequence numbers (no item
 * twice), within `(afterSeq, throughSeq]`, and no more than `limit` rows.
 */
export function checkStoredItems(
  ref: SessionRef,
  rows: unknown,
  bounds: { limit: number; afterSeq?: number; throughSeq?: number },
): StoredItem[] {
  if (!Array.isArray(rows)) throw damaged(ref, 'item list', 'not a list');
  if (rows.length > bounds.limit) throw damaged(ref, 'item list', 'more rows than asked for');
  let previous = bounds.afterSeq ?? 0;
  for (const row of rows) {
    const item = checkStoredItem(ref, row);
    if (item.seq <= previous) {
      throw damaged(ref, 'item list', 'sequence numbers out of order or repeated');
    }
    if (bounds.throughSeq !== undefined && item.seq > bounds.throughSeq) {
      throw damaged(ref, 'item list', 'a sequence number outside the range asked for');
    }
    previous = item.seq;
  }
  return rows as StoredItem[];
}

/** Throws IntegrityError unless `record` has the shape of an applied-operation record. */
export function checkOperationRecord(
  ref: SessionRef,
  record: HistoryOperationRecord | undefined,
): HistoryOperationRecord | undefined {
  if (record === undefined) return undefined;
  if (record === null || typeof record !== 'object') {
    throw damaged(ref, 'history operation', 'not a row');
  }
  const fields = record as unknown as Record<keyof HistoryOperationRecord, unknown>;
  if (typeof fields.operationId !== 'string') {
    throw damaged(ref, 'history operation', 'its operation id is not text');
  }
  if (typeof fields.dekId !== 'string' || fields.dekId.length === 0) {
    throw damaged(ref, 'history operation', 'its data key id is not text');
  }
  if (!Buffer.isBuffer(fields.digest)) {
    throw damaged(ref, 'history operation', 'its digest is not binary');
  }
  if (!isSafeNumber(fields.createdAt)) {
    throw damaged(ref, 'history operation', 'its creation time is not a whole number below 2^53');
  }
  return record;
}

/**
 * A `now` before every real expiry: a visibility query with it sees every stored item, expired
 * or not (expiries are epoch ms, so all are later than 0).
 */
export const STORED_AT_ALL = 0;

/** The session's counter is at or below a stored item's position. */
export function counterBehindItems(ref: { sessionId: string }): IntegrityError {
  return new IntegrityError(
    `Session '${ref.sessionId}' holds items at positions its sequence counter has not reached: the counter was rolled back in the database (a restored backup?). Nothing was written or deleted; restore the session row or contact an operator`,
  );
}

/** Items of a session remain whose session row is gone. */
export function sessionRowMissing(ref: { sessionId: string }): IntegrityError {
  return new IntegrityError(
    `Session '${ref.sessionId}' has stored items but no session row: the row was deleted in the database. Nothing was written or deleted; restore the session row or contact an operator`,
  );
}
