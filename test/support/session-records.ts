import type { SessionRecord, SessionRef } from '../../src/index.js';

/** The row of a new session at `ref`: no subject, no expiry, counter at 1, created at time 0. */
export function newSessionRecord(ref: SessionRef): SessionRecord {
  return {
    ...ref,
    subjectId: null,
    createdAt: 0,
    lastActivityAt: 0,
    nextSeq: 1,
    itemTtlSeconds: null,
    legalHold: false,
  };
}
