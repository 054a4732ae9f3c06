import type { AuditAction, AuditTrail, PendingAuditEvent } from '../audit/index.js';
import type { SessionRef } from '../storage/index.js';

/** What the audited operations of one session need to know about it. */
export interface SessionAuditContext {
  readonly ref: SessionRef;
  readonly subjectId: string | null;
  /** The module's audit trail; undefined when it is off (or in a bare test). */
  readonly audit?: AuditTrail;
}

/**
 * Runs one operation of a session under its audit event: the event is prepared first (an
 * operation with no actor is refused here, before it touches anything), `work` seals it into
 * its own unit of work, and once that committed the event goes to the sinks. A failed or
 * refused operation changed nothing: its event commits on its own, then the error is rethrown.
 */
export async function auditedOperation<T>(
  context: SessionAuditContext,
  action: AuditAction,
  work: (event: PendingAuditEvent | undefined) => Promise<T>,
): Promise<T> {
  const event = await context.audit?.prepare(action, {
    tenantId: context.ref.tenantId,
    sessionId: context.ref.sessionId,
    subjectId: context.subjectId,
  });
  let result: T;
  try {
    result = await work(event);
  } catch (error) {
    await event?.failed(error);
    throw error;
  }
  event?.committed();
  return result;
}
