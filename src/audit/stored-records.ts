import type { AuditChainRef, AuditStorage, StoredAuditRecord } from '../storage/index.js';
import type { AuditRecord } from './audit-chain.js';

/** A stored record in the form the verifier reads: chain fields as the event carries them. */
export function auditRecordFromStored(stored: StoredAuditRecord): AuditRecord {
  return {
    chain: {
      chainId: stored.chainId,
      seq: stored.seq,
      prevMac: stored.prevMac.toString('base64url'),
      macKeyId: stored.macKeyId,
      mac: stored.mac.toString('base64url'),
    },
    body: stored.body,
  };
}

/** Records per page when a chain is streamed. */
export const CHAIN_PAGE_SIZE = 1000;

/**
 * A chain's records from `afterSeq` on, page by page in seq order: one page in memory at a time,
 * however long the chain. Stops after `throughSeq` when given.
 */
export async function* chainPages(
  storage: AuditStorage,
  chain: AuditChainRef,
  afterSeq = 0,
  throughSeq = Number.MAX_SAFE_INTEGER,
  pageSize = CHAIN_PAGE_SIZE,
): AsyncGenerator<AuditRecord[]> {
  let after = afterSeq;
  for (;;) {
    const page = await storage.readChain(chain, after, pageSize);
    const inRange = page.filter((record) => record.seq <= throughSeq);
    if (inRange.length > 0) yield inRange.map(auditRecordFromStored);
    if (page.length < pageSize || inRange.length < page.length) return;
    after = page.at(-1)!.seq;
  }
}
