import {
  openEnvelope,
  parseEnvelope,
  sealItem,
  type ItemBinding,
} from '../crypto/index.js';
import { IntegrityError } from '../errors/index.js';
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
  seal: (dataKey, binding, payload) =>
    sealItem({ dekId: dataKey.dekId, generation: dataKey.generation, key: dataKey.key }, binding, payload),
  open(dataKey, binding, stored) {
    const envelope = parseEnvelope(stored);
    // The dek_id column is only an index; the authenticated header must agree with it.
    if (envelope.header.dekId !== dataKey.dekId || envelope.header.generation !== dataKey.generation) {
      throw new IntegrityError(
        `Item ${binding.seq} of session '${binding.sessionId}' names a different data key in its header than in its row; the row was altered. Nothing was deleted`,
      );
    }
    return openEnvelope(envelope, dataKey.key, binding);
  },
};
