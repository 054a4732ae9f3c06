import type { ItemCipher } from '../src/sessions/item-cipher.js';

/** A Buffer view of the same bytes (no copy). */
const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * The plaintext baseline of the benchmark: an {@link ItemCipher} that stores the encoded item
 * payload unchanged and hands stored bytes back as they are. Everything else (storage, key ring,
 * sequence allocation, payload encoding) stays the same, so the difference to the default
 * envelope cipher is the cost of encryption alone.
 *
 * Benchmark-only: it offers no confidentiality or integrity and must never reach `src/`.
 */
export const nullItemCipher: ItemCipher = {
  seal: (_dataKey, _binding, payload) => asBuffer(payload),
  open: (_dataKey, _binding, stored) => asBuffer(stored),
};
