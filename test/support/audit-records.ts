import { randomBytes, randomUUID } from 'node:crypto';
import type { SessionStorage } from '../../src/storage/storage.ports.js';
import type {
  AuditChainRef,
  SessionRef,
  StoredAuditRecord,
} from '../../src/storage/storage.records.js';

/*
 * Audit records for storage tests: chained by seq and prevMac as the audit layer chains them,
 * with random MACs (storage keeps and links MACs; it never computes them).
 */

const GENESIS = Buffer.alloc(32);

/** A session's chain, or the tenant's control chain when `sessionId` is null. */
export function chainOf(tenantId: string, sessionId: string | null): AuditChainRef {
  return {
    chainId: `${sessionId === null ? 't' : 's'}.${Buffer.from(`${tenantId}\u0000${sessionId ?? ''}`).toString('base64url')}`,
    tenantId,
    sessionId,
  };
}

/** `count` records that continue `head` on `chain`, with random MACs. */
export function recordsAfter(
  chain: AuditChainRef,
  head: { seq: number; mac: Buffer } | undefined,
  count = 1,
  body = 'é\u2028',
): StoredAuditRecord[] {
  const records: StoredAuditRecord[] = [];
  let seq = head?.seq ?? 0;
  let prevMac = head?.mac ?? GENESIS;
  for (let index = 0; index < count; index++) {
    seq += 1;
    const mac = randomBytes(32);
    const eventId = randomUUID();
    records.push({
      chainId: chain.chainId,
      seq,
      tenantId: chain.tenantId,
      sessionId: chain.sessionId,
      eventId,
      time: 1_767_000_000_000 + seq,
      action: 'session.append',
      outcome: 'success',
      actorId: 'user-1',
      subjectRef: seq % 2 === 0 ? null : 'c3ViamVjdC1yZWY',
      macKeyId: 'mac-1',
      prevMac,
      mac,
      body: JSON.stringify({ eventId, seq, note: body }),
    });
    prevMac = mac;
  }
  return records;
}

const item = (seq: number) => ({
  seq,
  dekId: '00000000-0000-4000-8000-000000000001',
  expiresAt: null,
  createdAt: seq,
  ciphertext: randomBytes(64),
});

/** One unit of work: an item appended and its audit record; returns what it threw. */
export async function appendWithAudit(storage: SessionStorage, ref: SessionRef, body = 'x') {
  const chain = chainOf(ref.tenantId, ref.sessionId);
  return storage
    .transaction(ref, async (scope) => {
      const first = await scope.session.reserveSequence(1, 5);
      await scope.items.insertMany([item(first!)]);
      const head = await scope.audit!.lockHead(chain.chainId);
      await scope.audit!.append(recordsAfter(chain, head, 1, body));
    })
    .then(
      () => undefined,
      (error: unknown) => error,
    );
}
