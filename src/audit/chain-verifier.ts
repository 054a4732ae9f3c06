import type { KeyObject } from 'node:crypto';
import type { StoredChainLink } from '../storage/index.js';
import { AUDIT_MAC_LENGTH, ChainMacs, GENESIS_PREV_MAC, type AuditRecord } from './audit-chain.js';
import type { MacCheckPool } from './mac-check-pool.js';
import { linkMacHolds, packMacPage } from './mac-check.js';

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
  /**
   * Worker threads to check MACs on while this thread walks the links (a long chain); without
   * it every check runs here.
   */
  readonly macCheckPool?: MacCheckPool;
}

/** Pages each worker may hold, queued or in work. */
const PAGES_PER_WORKER = 4;
/** Checks (settled ones are a few bytes each) kept in order before the oldest is awaited. */
const MAX_QUEUED_CHECKS = 256;

/** A record as a verifier reads it: an event's stored form, or a stored record's chain link. */
export type VerifiableRecord = AuditRecord | StoredChainLink;

/** A page's links that passed every check but their MACs, and the keys they name. */
interface LinkBatch {
  readonly links: StoredChainLink[];
  readonly keys: Array<KeyObject | Uint8Array>;
}

/** A MAC check of a batch, settled or not, in chain order. */
interface QueuedCheck {
  settled: boolean;
  outcome?: { readonly broke?: ChainVerification } | { readonly error: unknown };
  readonly done: Promise<void>;
}

/**
 * Verifies one chain from its records in `seq` order, holding only the previous record and the
 * pages in flight: memory stays constant however long the chain. Stops at the first break and
 * names it. The links (seq, prevMac, key) are walked here in order; each record's MAC is checked
 * here or, for a long chain, on {@link ChainVerificationOptions.macCheckPool}'s threads, and the
 * first break in chain order is the one reported either way.
 */
export async function verifyChain(
  records:
    AsyncIterable<VerifiableRecord | readonly VerifiableRecord[]> | Iterable<VerifiableRecord>,
  options: ChainVerificationOptions,
): Promise<ChainVerification> {
  const { chainId, macCheckPool: pool } = options;
  const fromSeq = options.fromSeq ?? 1;
  let expectedSeq = fromSeq;
  let prevMac: Uint8Array =
    fromSeq === 1 ? GENESIS_PREV_MAC : (options.prevMacBeforeFrom ?? GENESIS_PREV_MAC);
  let headAtCheckpoint: Uint8Array | undefined;
  // A link breaks at the record the walk has reached; a MAC, at its own record.
  const broken = (firstBadSeq: number, reason: ChainBreak): ChainVerification => ({
    ok: false,
    chainId,
    verifiedThroughSeq: expectedSeq - 1,
    firstBadSeq,
    reason,
  });
  const macBroken = (seq: number): ChainVerification => ({
    ok: false,
    chainId,
    verifiedThroughSeq: seq - 1,
    firstBadSeq: seq,
    reason: 'mac_mismatch',
  });

  // MAC keys by id: one lookup per key, not per record.
  const macKeys = new Map<string, KeyObject | Uint8Array | undefined>();
  const macKeyOf = async (macKeyId: string) => {
    if (!macKeys.has(macKeyId)) macKeys.set(macKeyId, await options.macKeyFor(macKeyId));
    return macKeys.get(macKeyId);
  };

  /** Checks one record's place in the chain; the break it shows, or its link when it holds. */
  const linkOf = (
    record: VerifiableRecord,
    macKey: KeyObject | Uint8Array | undefined,
  ): StoredChainLink | ChainVerification => {
    const link = 'chain' in record ? decodedLink(record, chainId) : record;
    if (link === 'malformed') return broken(expectedSeq, 'malformed');
    if (link === 'wrong_chain') return broken((record as AuditRecord).chain.seq, 'wrong_chain');
    const seq = link.seq;
    if (!Number.isSafeInteger(seq)) return broken(expectedSeq, 'malformed');
    if (seq > expectedSeq) return broken(expectedSeq, 'gap');
    if (seq < expectedSeq) return broken(seq, 'prev_mac_mismatch');
    if (link.prevMac.length !== AUDIT_MAC_LENGTH || link.mac.length !== AUDIT_MAC_LENGTH) {
      return broken(seq, 'malformed');
    }
    if (
      !Buffer.from(link.prevMac.buffer, link.prevMac.byteOffset, AUDIT_MAC_LENGTH).equals(prevMac)
    ) {
      return broken(seq, 'prev_mac_mismatch');
    }
    if (macKey === undefined) return broken(seq, 'unknown_key');
    if (seq === options.checkpointedHead?.seq) headAtCheckpoint = link.mac;
    prevMac = link.mac;
    expectedSeq += 1;
    return link;
  };

  /** The MAC break of a batch, checked on this thread. */
  const chainMacs = new ChainMacs(chainId);
  const checkHere = (batch: LinkBatch): ChainVerification | undefined => {
    for (let index = 0; index < batch.links.length; index += 1) {
      const link = batch.links[index];
      if (!linkMacHolds(batch.keys[index], chainMacs, link)) return macBroken(link.seq);
    }
    return undefined;
  };

  // MAC checks in chain order; those on the pool settle later. At most a few pages per worker
  // are in flight (constant memory); when that many wait, this thread checks the page itself.
  const queue: QueuedCheck[] = [];
  let onPool = 0;
  const enqueue = async (batch: LinkBatch): Promise<void> => {
    if (!pool) {
      queue.push({ settled: true, outcome: { broke: checkHere(batch) }, done: Promise.resolve() });
      return;
    }
    // The workers' answers arrive as events: let them in, or every worker looks busy.
    await new Promise(setImmediate);
    if (onPool < pool.threads * PAGES_PER_WORKER && batch.links.length > 0) {
      onPool += 1;
      const page = packMacPage(chainId, batch.links, (id) => macKeys.get(id)!, pool.spareBuffer());
      const first = batch.links[0].seq;
      const queued: QueuedCheck = {
        settled: false,
        done: pool
          .firstMismatch(page)
          .then(
            (index) => {
              queued.outcome = { broke: index < 0 ? undefined : macBroken(first + index) };
            },
            (error: unknown) => {
              queued.outcome = { error };
            },
          )
          .finally(() => {
            queued.settled = true;
            onPool -= 1;
          }),
      };
      queue.push(queued);
    } else {
      queue.push({ settled: true, outcome: { broke: checkHere(batch) }, done: Promise.resolve() });
    }
  };
  /** The first break among the settled checks at the front of the queue (all when `all`). */
  const settledBreak = async (all: boolean): Promise<ChainVerification | undefined> => {
    for (let next = queue[0]; next !== undefined; next = queue[0]) {
      if (!all && !next.settled && queue.length <= MAX_QUEUED_CHECKS) break;
      queue.shift();
      await next.done;
      const outcome = next.outcome!;
      if ('error' in outcome) throw outcome.error;
      if (outcome.broke) return outcome.broke;
    }
    return undefined;
  };

  const pages: AsyncIterable<Iterable<VerifiableRecord>> | Iterable<Iterable<VerifiableRecord>> =
    isPage(records) ? [records] : mapPages(records);
  for await (const page of pages) {
    const batch: LinkBatch = { links: [], keys: [] };
    let linkBreak: ChainVerification | undefined;
    for (const record of page) {
      const macKeyId = 'chain' in record ? record.chain?.macKeyId : record.macKeyId;
      if (typeof macKeyId !== 'string') {
        linkBreak = broken(expectedSeq, 'malformed');
        break;
      }
      const macKey = macKeys.has(macKeyId) ? macKeys.get(macKeyId) : await macKeyOf(macKeyId);
      const link = linkOf(record, macKey);
      if ('ok' in link) {
        linkBreak = link;
        break;
      }
      batch.links.push(link);
      batch.keys.push(macKey!);
    }
    await enqueue(batch);
    const macBreak = await settledBreak(linkBreak !== undefined);
    if (macBreak) return macBreak;
    if (linkBreak) return linkBreak;
  }
  const macBreak = await settledBreak(true);
  if (macBreak) return macBreak;

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

/** An event-form record's link, or why it has none: no chain fields, or another chain's. */
function decodedLink(
  record: AuditRecord,
  chainId: string,
): StoredChainLink | 'malformed' | 'wrong_chain' {
  const chain = record.chain;
  if (!chain || !Number.isSafeInteger(chain.seq)) return 'malformed';
  if (chain.chainId !== chainId) return 'wrong_chain';
  return {
    seq: chain.seq,
    macKeyId: chain.macKeyId,
    prevMac: Buffer.from(chain.prevMac, 'base64url'),
    mac: Buffer.from(chain.mac, 'base64url'),
    body: record.body,
  };
}

/** Whether `records` is in memory already (an array, a page), not a stream. */
const isPage = (value: unknown): value is Iterable<VerifiableRecord> =>
  typeof (value as Iterable<VerifiableRecord>)[Symbol.iterator] === 'function';

/** An async stream of records or of pages of records, as pages. */
async function* mapPages(
  records: AsyncIterable<VerifiableRecord | readonly VerifiableRecord[]>,
): AsyncIterable<Iterable<VerifiableRecord>> {
  for await (const entry of records) {
    yield Array.isArray(entry) ? entry : [entry as VerifiableRecord];
  }
}
