import { openItem, sealItem, type ItemBinding } from '../crypto/index.js';
import type { UsableDataKey } from '../keys/index.js';

/**
 * Turns an encoded item into stored bytes and back. The default is the authenticated envelope;
 * the seam exists so the benchmark can measure the same store with a null cipher.
 */
export interface ItemCipher {
  seal(dataKey: UsableDataKey, binding: ItemBinding, payload: Uint8Array): Buffer;
  /** Opens stored bytes; throws IntegrityError when they do not authenticate. */
  open(dataKey: UsableDataKey, binding: ItemBinding, stored: Uint8Array): Buffer;
}

/** AES-256-GCM envelopes (docs/envelope-format.md). */
export const envelopeItemCipher: ItemCipher = {
  // A UsableDataKey is an ItemDataKey (dekId, generation, key): no per-item copy.
  seal: (dataKey, binding, payload) => sealItem(dataKey, binding, payload),
  // The dek_id column is only an index; openItem checks the authenticated header agrees.
  open: (dataKey, binding, stored) => openItem(dataKey, binding, stored),
};
