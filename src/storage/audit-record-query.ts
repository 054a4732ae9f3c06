import type { AuditRecordQuery, StoredAuditRecord } from './storage.records.js';

/*
 * The access report's order and filter, for adapters that select in process (memory, and Redis
 * over a chain's records): the SQL adapter states the same in its statement.
 */

/** Whether `record` is one the query selects (its tenant, target, time range, past the cursor). */
export function matchesAuditQuery(record: StoredAuditRecord, query: AuditRecordQuery): boolean {
  if (record.tenantId !== query.tenantId) return false;
  const { by } = query;
  if ('sessionId' in by && record.sessionId !== by.sessionId) return false;
  if ('subjectRef' in by && record.subjectRef !== by.subjectRef) return false;
  if ('actorId' in by && record.actorId !== by.actorId) return false;
  if (record.time < query.fromTime || record.time >= query.toTime) return false;
  return query.after === undefined || compareAuditOrder(record, query.after) > 0;
}

/** (time, chain id by bytes, seq) order. */
export function compareAuditOrder(
  a: { readonly time: number; readonly chainId: string; readonly seq: number },
  b: { readonly time: number; readonly chainId: string; readonly seq: number },
): number {
  if (a.time !== b.time) return a.time - b.time;
  const byChain = Buffer.compare(Buffer.from(a.chainId), Buffer.from(b.chainId));
  return byChain !== 0 ? byChain : a.seq - b.seq;
}
