import { hash, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { StoredChainLink } from '../storage/index.js';
import { AUDIT_MAC_LENGTH, ChainMacs } from './audit-chain.js';

/*
 * Checking the MAC of each record of a chain is what verification spends its time on (a SHA-256
 * of the body and an HMAC per record). These checks need nothing from the records around them,
 * so a long chain's pages can be checked on worker threads while the verifier walks the links
 * in order on its own (mac-check-pool.ts). A page travels to a worker packed into one
 * transferable buffer: a slot for the worker's answer, then per record its seq, key index,
 * prevMac, mac and UTF-8 body. The worker writes its answer into the slot and hands the buffer
 * back, so the verifier packs its next pages into the same few buffers.
 */

/** Bytes of the slot where a worker writes its answer (an Int32: the first mismatch or -1). */
export const PACKED_ANSWER_BYTES = 4;
/** Bytes of a packed record before its body: seq, key index, prevMac, mac, body length. */
const PACKED_HEADER = 8 + 4 + AUDIT_MAC_LENGTH + AUDIT_MAC_LENGTH + 4;
/** Packed pages grow in steps of this many bytes, so a reused buffer fits most next pages. */
const PACKED_BUFFER_STEP = 64 * 1024;

/** A page of links with well-formed MACs, packed for a worker, and the keys they name. */
export interface PackedMacPage {
  readonly chainId: string;
  readonly count: number;
  /** Key ids and keys by index, as the packed records name them. */
  readonly keyIds: readonly string[];
  readonly keys: ReadonlyArray<KeyObject | Uint8Array>;
  /** The answer slot, then the packed records; may be longer than they need. */
  readonly buffer: ArrayBuffer;
}

/** Whether `link`'s MAC is the one its fields and body give under `macKey`. */
export function linkMacHolds(
  macKey: KeyObject | Uint8Array,
  chainMacs: ChainMacs,
  link: StoredChainLink,
): boolean {
  const expected = chainMacs.macOf(macKey, {
    seq: link.seq,
    prevMac: link.prevMac,
    macKeyId: link.macKeyId,
    eventDigest: hash('sha256', link.body, 'buffer'),
  });
  return link.mac.length === expected.length && timingSafeEqual(expected, link.mac);
}

/**
 * Packs links whose prevMac and mac are {@link AUDIT_MAC_LENGTH} bytes (the verifier checked)
 * with the keys they name (a KeyObject is cloned to a worker thread; key material stays in this
 * process), into `spare` when it is large enough, else into a new buffer.
 */
export function packMacPage(
  chainId: string,
  links: readonly StoredChainLink[],
  keyOf: (macKeyId: string) => KeyObject | Uint8Array,
  spare?: ArrayBuffer,
): PackedMacPage {
  const keyIds: string[] = [];
  const keys: Array<KeyObject | Uint8Array> = [];
  const keyIndex = new Map<string, number>();
  let size = PACKED_ANSWER_BYTES;
  for (const link of links) size += PACKED_HEADER + Buffer.byteLength(link.body, 'utf8');
  const buffer =
    spare !== undefined && spare.byteLength >= size
      ? spare
      : new ArrayBuffer(Math.ceil(size / PACKED_BUFFER_STEP) * PACKED_BUFFER_STEP);
  const out = Buffer.from(buffer);
  let offset = PACKED_ANSWER_BYTES;
  for (const link of links) {
    let index = keyIndex.get(link.macKeyId);
    if (index === undefined) {
      index = keys.push(keyOf(link.macKeyId)) - 1;
      keyIds.push(link.macKeyId);
      keyIndex.set(link.macKeyId, index);
    }
    offset = out.writeDoubleBE(link.seq, offset);
    offset = out.writeUInt32BE(index, offset);
    out.set(link.prevMac, offset);
    out.set(link.mac, offset + AUDIT_MAC_LENGTH);
    offset += 2 * AUDIT_MAC_LENGTH;
    const bodyLength = out.write(link.body, offset + 4, 'utf8');
    offset = out.writeUInt32BE(bodyLength, offset) + bodyLength;
  }
  return { chainId, count: links.length, keyIds, keys, buffer };
}

/** The index of the first packed record whose MAC does not hold, or -1 when all hold. */
export function firstMacMismatch(page: PackedMacPage): number {
  const data = Buffer.from(page.buffer);
  const chainMacs = new ChainMacs(page.chainId);
  let offset = PACKED_ANSWER_BYTES;
  for (let index = 0; index < page.count; index += 1) {
    const seq = data.readDoubleBE(offset);
    const keyIndex = data.readUInt32BE(offset + 8);
    const prevMac = data.subarray(offset + 12, offset + 12 + AUDIT_MAC_LENGTH);
    const mac = data.subarray(offset + 12 + AUDIT_MAC_LENGTH, offset + PACKED_HEADER - 4);
    const bodyLength = data.readUInt32BE(offset + PACKED_HEADER - 4);
    const body = data.subarray(offset + PACKED_HEADER, offset + PACKED_HEADER + bodyLength);
    offset += PACKED_HEADER + bodyLength;
    const expected = chainMacs.macOf(page.keys[keyIndex], {
      seq,
      prevMac,
      macKeyId: page.keyIds[keyIndex],
      eventDigest: hash('sha256', body, 'buffer'),
    });
    if (!timingSafeEqual(expected, mac)) return index;
  }
  return -1;
}
