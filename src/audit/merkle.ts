import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Merkle tree hashes as RFC 6962 / RFC 9162 (Certificate Transparency) define them: a leaf is
 * `SHA-256(0x00 ‖ data)`, an inner node `SHA-256(0x01 ‖ left ‖ right)`, and a tree of n leaves
 * splits at the largest power of two below n. A checkpoint's root covers every chain head of a
 * tenant; an inclusion proof shows one chain head is in it without handing over the others.
 */

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};
const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** The hash of one leaf: `SHA-256(0x00 ‖ data)`. */
export const merkleLeafHash = (data: Uint8Array): Buffer => sha256(LEAF_PREFIX, data);

const nodeHash = (left: Uint8Array, right: Uint8Array): Buffer => sha256(NODE_PREFIX, left, right);

/** The largest power of two strictly below `n` (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** The Merkle tree hash of `leaves` (their data, in order); SHA-256 of nothing for none. */
export function merkleRoot(leaves: readonly Uint8Array[]): Buffer {
  return subtreeRoot(leaves.map(merkleLeafHash), 0, leaves.length);
}

function subtreeRoot(hashes: readonly Buffer[], start: number, end: number): Buffer {
  const n = end - start;
  if (n === 0) return sha256();
  if (n === 1) return hashes[start];
  const k = splitPoint(n);
  return nodeHash(subtreeRoot(hashes, start, start + k), subtreeRoot(hashes, start + k, end));
}

/** The audit path of leaf `index` in the tree of `leaves` (RFC 6962 section 2.1.1). */
export function merkleInclusionProof(leaves: readonly Uint8Array[], index: number): Buffer[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= leaves.length) {
    throw new RangeError('merkleInclusionProof: index is outside the tree');
  }
  const hashes = leaves.map(merkleLeafHash);
  const path = (m: number, start: number, end: number): Buffer[] => {
    const n = end - start;
    if (n === 1) return [];
    const k = splitPoint(n);
    return m < k
      ? [...path(m, start, start + k), subtreeRoot(hashes, start + k, end)]
      : [...path(m - k, start + k, end), subtreeRoot(hashes, start, start + k)];
  };
  return path(index, 0, leaves.length);
}

/**
 * Whether `proof` shows that the leaf with data `leaf` is leaf `index` of the tree of `treeSize`
 * leaves whose root is `root` (RFC 9162 section 2.1.3.2).
 */
export function verifyMerkleInclusion(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(treeSize) || index < 0) return false;
  if (index >= treeSize) return false;
  let fn = index;
  let sn = treeSize - 1;
  let hash = merkleLeafHash(leaf);
  for (const sibling of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      hash = nodeHash(sibling, hash);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      hash = nodeHash(hash, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && hash.length === root.length && timingSafeEqual(hash, root);
}
