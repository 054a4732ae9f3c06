import type { KeyObject } from 'node:crypto';
import {
  AUDIT_MAC_LENGTH,
  GENESIS_PREV_MAC,
  bodyDigest,
  chainMacMatches,
  type AuditRecord,
} from './audit-chain.js';

/**
 * Why a chain does not verify. Each names what an attacker (or a fault) did:
 * - `gap`: a `seq` is missing (a record was deleted);
 * - `prev_mac_mismatch`: a record does not follow the one before it (inserted, reordered, or a
 *   rewrite that did not recompute the rest of the chain);
 * - `mac_mismatch`: a record's fields are not the ones its MAC covers (edited);
 * - `wrong_chain`: a record names another chain (spliced in from elsewhere);
 * - `unknown_key`: its MAC key id is not one the trail knows;
 * - `malformed`: a chain field is not well formed;
 * - `truncated`: the chain ends before the head a checkpoint recorded (its tail was cut);
 * - `checkpoint_mismatch`: the record at a checkpointed head is not the one the checkpoint saw
 *   (a full rewrite with the stolen MAC key);
 * - `missing`: a checkpoint lists the chain, but it has no records (deleted whole).
 */
export type ChainBreak =
  | 'gap'
  | 'prev_mac_mismatch'
  | 'mac_mismatch'
  | 'wrong_chain'
  | 'unknown_key'
  | 'malformed'
  | 'truncated'
  | 'checkpoint_mismatch'
  | 'missing';

/** The outcome of verifying one chain. */
export interface ChainVerification {
  readonly ok: boolean;
  readonly chainId: string;
  /** The last seq that verified, 0 when none did. */
  readonly verifiedThroughSeq: number;
  /** The first record that did not verify (for `truncated` and `missing`: the first absent). */
  readonly firstBadSeq?: number;
  readonly reason?: ChainBreak;
}

/** What a verifier needs besides the records. */
export interface ChainVerificationOptions {
  readonly chainId: string;
  /** The MAC key of an id, or undefined when the trail knows no such key. */
  readonly macKeyFor: (
    macKeyId: string,
  ) => KeyObject | Uint8Array | undefined | Promise<KeyObject | Uint8Array | undefined>;
  /** The head a checkpoint recorded for this chain, if one did. */
  readonly checkpointedHead?: { readonly seq: number; readonly headMac: Uint8Array };
  /** Verify from this seq on: the record before it is trusted as given. @default 1 */
  readonly fromSeq?: number;
  /** The MAC of the record before `fromSeq`, when `fromSeq` > 1. */
  readonly prevMacBeforeFrom?: Uint8Array;
}

/**
 * Verifies one chain from its records in `seq` order, holding only the previous record: memory
 * stays constant however long the chain. Stops at the first break and names it.
 */
export async function verifyChain(
  records: AsyncIterable<AuditRecord | readonly AuditRecord[]> | Iterable<AuditRecord>,
  options: ChainVerificationOptions,
): Promise<ChainVerification> {
  const { chainId } = options;
  const fromSeq = options.fromSeq ?? 1;
  let expectedSeq = fromSeq;
  let prevMac: Buffer = Buffer.from(
    fromSeq === 1 ? GENESIS_PREV_MAC : (options.prevMacBeforeFrom ?? GENESIS_PREV_MAC),
  );
  let headAtCheckpoint: Uint8Array | undefined;
  const broken = (firstBadSeq: number, reason: ChainBreak): ChainVerification => ({
    ok: false,
    chainId,
    verifiedThroughSeq: expectedSeq - 1,
    firstBadSeq,
    reason,
  });

  // MAC keys by id: one lookup per key, not per record.
  const macKeys = new Map<string, KeyObject | Uint8Array | undefined>();
  const macKeyOf = async (macKeyId: string) => {
    if (!macKeys.has(macKeyId)) macKeys.set(macKeyId, await options.macKeyFor(macKeyId));
    return macKeys.get(macKeyId);
  };
  /** Checks one record against the state; the break it shows, or undefined when it holds. */
  const check = (
    record: AuditRecord,
    macKey: KeyObject | Uint8Array | undefined,
  ): ChainVerification | undefined => {
    const chain = record.chain;
    if (!chain || !Number.isSafeInteger(chain.seq)) return broken(expectedSeq, 'malformed');
    if (chain.chainId !== chainId) return broken(chain.seq, 'wrong_chain');
    if (chain.seq > expectedSeq) return broken(expectedSeq, 'gap');
    if (chain.seq < expectedSeq) return broken(chain.seq, 'prev_mac_mismatch');
    const recordPrevMac = Buffer.from(chain.prevMac, 'base64url');
    const mac = Buffer.from(chain.mac, 'base64url');
    if (recordPrevMac.length !== AUDIT_MAC_LENGTH || mac.length !== AUDIT_MAC_LENGTH) {
      return broken(chain.seq, 'malformed');
    }
    if (!recordPrevMac.equals(prevMac)) return broken(chain.seq, 'prev_mac_mismatch');
    if (macKey === undefined) return broken(chain.seq, 'unknown_key');
    const link = {
      chainId,
      seq: chain.seq,
      prevMac: recordPrevMac,
      macKeyId: chain.macKeyId,
      eventDigest: bodyDigest(record.body),
    };
    if (!chainMacMatches(macKey, link, mac)) return broken(chain.seq, 'mac_mismatch');
    if (chain.seq === options.checkpointedHead?.seq) headAtCheckpoint = mac;
    prevMac = mac;
    expectedSeq += 1;
    return undefined;
  };
  // A plain loop for records already in memory (a page): awaiting each one would cost a
  // microtask per record. Pages of records may come from an async iterable.
  const pages: AsyncIterable<Iterable<AuditRecord>> | Iterable<Iterable<AuditRecord>> = isPage(
    records,
  )
    ? [records]
    : mapPages(records);
  for await (const page of pages) {
    for (const record of page) {
      const macKeyId = record.chain?.macKeyId;
      if (typeof macKeyId !== 'string') return broken(expectedSeq, 'malformed');
      const macKey = macKeys.has(macKeyId) ? macKeys.get(macKeyId) : await macKeyOf(macKeyId);
      const broke = check(record, macKey);
      if (broke) return broke;
    }
  }

  const checkpointed = options.checkpointedHead;
  if (checkpointed !== undefined) {
    if (expectedSeq === fromSeq && fromSeq === 1 && checkpointed.seq > 0) {
      return broken(1, 'missing');
    }
    if (expectedSeq - 1 < checkpointed.seq) return broken(expectedSeq, 'truncated');
    if (
      headAtCheckpoint !== undefined &&
      !Buffer.from(headAtCheckpoint).equals(Buffer.from(checkpointed.headMac))
    ) {
      return broken(checkpointed.seq, 'checkpoint_mismatch');
    }
  }
  return { ok: true, chainId, verifiedThroughSeq: expectedSeq - 1 };
}

/** Whether `records` is in memory already (an array, a page), not a stream. */
const isPage = (value: unknown): value is Iterable<AuditRecord> =>
  typeof (value as Iterable<AuditRecord>)[Symbol.iterator] === 'function';

/** An async stream of records or of pages of records, as pages. */
async function* mapPages(
  records: AsyncIterable<AuditRecord | readonly AuditRecord[]>,
): AsyncIterable<Iterable<AuditRecord>> {
  for await (const entry of records) yield Array.isArray(entry) ? entry : [entry as AuditRecord];
}
