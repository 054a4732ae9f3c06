import type {
  AuditChainRef,
  AuditStorage,
  StoredAuditRecord,
  StoredChainLink,
} from '../storage/index.js';
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
 * A chain's records from `afterSeq` on, as the verifier reads them, page by page in seq order:
 * one page in memory at a time, however long the chain. Stops after `throughSeq` when given.
 */
export async function* chainPages(
  storage: AuditStorage,
  chain: AuditChainRef,
  afterSeq = 0,
  throughSeq = Number.MAX_SAFE_INTEGER,
  pageSize = CHAIN_PAGE_SIZE,
): AsyncGenerator<StoredChainLink[]> {
  const read = storage.readChainLinks
    ? storage.readChainLinks.bind(storage)
    : storage.readChain.bind(storage);
  let after = afterSeq;
  for (;;) {
    const page: StoredChainLink[] = await read(chain, after, pageSize);
    const inRange = page.filter((record) => record.seq <= throughSeq);
    if (inRange.length > 0) yield inRange;
    if (page.length < pageSize || inRange.length < page.length) return;
    after = page.at(-1)!.seq;
  }
}
