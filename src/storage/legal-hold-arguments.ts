import { InvalidArgumentError } from '../errors/index.js';
import type { ErasureLedgerRecord, LegalHoldQuery, LegalHoldRecord } from './storage.records.js';

/*
 * What every adapter of the hold and ledger ports and of the subject lookup shares: the checks
 * of their arguments, so a caller's mistake is the same InvalidArgumentError on every backend
 * (and never a driver error, or a row stored half-valid).
 */

/** Most characters of a matter reference: what every backend's column holds. */
export const MAX_MATTER_REF_LENGTH = 191;

const isText = (value: unknown): value is string =>
  typeof value === 'string' && value.isWellFormed();

const isTime = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value);

/** Returns `value` when it is a non-empty string; InvalidArgumentError naming `what` otherwise. */
export function checkStorageId(value: unknown, what: string): string {
  if (!isText(value) || value.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty string`);
  }
  return value;
}

/** Returns `value` when it is a string ('' before the first page); InvalidArgumentError otherwise. */
export function checkPageAfter(value: unknown, what: string): string {
  if (!isText(value)) {
    throw new InvalidArgumentError(`${what} must be a string: '' for the first page`);
  }
  return value;
}

/** Returns `limit` when it is a whole number >= 1; InvalidArgumentError naming `operation` otherwise. */
export function checkPageLimit(limit: unknown, operation: string): number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(
      `${operation} takes a page \`limit\` that is a whole number >= 1, e.g. 100`,
    );
  }
  return limit;
}

/** Returns `value` when it is whole epoch milliseconds; InvalidArgumentError otherwise. */
export function checkEpochMs(value: unknown, what: string): number {
  if (!isTime(value)) {
    throw new InvalidArgumentError(`${what} must be whole epoch milliseconds, e.g. Date.now()`);
  }
  return value;
}

/** Returns `hold` when it is a hold that may be stored; InvalidArgumentError otherwise. */
export function checkLegalHoldRecord(hold: unknown): LegalHoldRecord {
  if (typeof hold !== 'object' || hold === null) {
    throw new InvalidArgumentError('A legal hold must be a LegalHoldRecord object');
  }
  const record = hold as LegalHoldRecord;
  checkStorageId(record.holdId, "A legal hold's holdId");
  checkStorageId(record.tenantId, "A legal hold's tenantId");
  const onSession = record.sessionId !== null;
  const onSubject = record.subjectId !== null;
  if (onSession === onSubject) {
    throw new InvalidArgumentError(
      'A legal hold covers one session (sessionId) or one subject (subjectId): set exactly one of the two, the other null',
    );
  }
  if (onSession) checkStorageId(record.sessionId, "A legal hold's sessionId");
  if (onSubject) checkStorageId(record.subjectId, "A legal hold's subjectId");
  if (
    !isText(record.matterRef) ||
    record.matterRef.length === 0 ||
    // UTF-16 code units, as the session ids' MAX_ID_LENGTH: never more characters than that.
    record.matterRef.length > MAX_MATTER_REF_LENGTH
  ) {
    throw new InvalidArgumentError(
      `A legal hold's matterRef must be a string of 1-${MAX_MATTER_REF_LENGTH} characters, e.g. a case number`,
    );
  }
  checkEpochMs(record.placedAt, "A legal hold's placedAt");
  checkStorageId(record.placedBy, "A legal hold's placedBy");
  if ((record.releasedAt === null) !== (record.releasedBy === null)) {
    throw new InvalidArgumentError(
      "A legal hold's releasedAt and releasedBy are both null (active) or both set (released)",
    );
  }
  if (record.releasedAt !== null) {
    checkEpochMs(record.releasedAt, "A legal hold's releasedAt");
    checkStorageId(record.releasedBy, "A legal hold's releasedBy");
  }
  return record;
}

/** Returns `query` when it is a usable {@link LegalHoldQuery}; InvalidArgumentError otherwise. */
export function checkLegalHoldQuery(query: unknown): LegalHoldQuery {
  if (typeof query !== 'object' || query === null) {
    throw new InvalidArgumentError(
      'List legal holds with a LegalHoldQuery object, e.g. { limit: 100 }',
    );
  }
  const { tenantId, activeOnly, afterHoldId, limit } = query as LegalHoldQuery;
  if (tenantId !== undefined) checkStorageId(tenantId, "A hold query's tenantId");
  if (activeOnly !== undefined && typeof activeOnly !== 'boolean') {
    throw new InvalidArgumentError("A hold query's activeOnly must be true, false or absent");
  }
  if (afterHoldId !== undefined) checkPageAfter(afterHoldId, "A hold query's afterHoldId");
  checkPageLimit(limit, 'Listing legal holds');
  return query as LegalHoldQuery;
}

/** Returns `entry` when it is a pending ledger entry that may be stored; InvalidArgumentError otherwise. */
export function checkErasureLedgerRecord(entry: unknown): ErasureLedgerRecord {
  if (typeof entry !== 'object' || entry === null) {
    throw new InvalidArgumentError('An erasure ledger entry must be an ErasureLedgerRecord object');
  }
  const record = entry as ErasureLedgerRecord;
  checkStorageId(record.erasureId, "An erasure ledger entry's erasureId");
  checkStorageId(record.tenantId, "An erasure ledger entry's tenantId");
  if (record.scope !== 'subject' && record.scope !== 'session') {
    throw new InvalidArgumentError(
      "An erasure ledger entry's scope must be 'subject' or 'session'",
    );
  }
  if (record.subjectRef !== null) {
    checkStorageId(record.subjectRef, "An erasure ledger entry's subjectRef");
  }
  if (!isText(record.sessionIds)) {
    throw new InvalidArgumentError(
      "An erasure ledger entry's sessionIds must be a JSON array of session ids, as a string",
    );
  }
  checkEpochMs(record.createdAt, "An erasure ledger entry's createdAt");
  if ((record.completedAt === null) !== (record.receipt === null)) {
    throw new InvalidArgumentError(
      "An erasure ledger entry's completedAt and receipt are both null (pending) or both set (complete)",
    );
  }
  if (record.completedAt !== null) {
    checkEpochMs(record.completedAt, "An erasure ledger entry's completedAt");
    if (!isText(record.receipt)) {
      throw new InvalidArgumentError("An erasure ledger entry's receipt must be a string (JSON)");
    }
  }
  return record;
}
