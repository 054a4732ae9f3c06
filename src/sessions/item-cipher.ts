import { openItem, sealItem, type ItemBinding } from '../crypto/index.js';
import type { UsableDataKey } from '../keys/index.js';
import type { SessionRef } from '../storage/index.js';

/**
 * What the item at `seq` of the session `ref` is sealed to. Built per item, so its fields are
 * written out: on Node 20 `{ ...ref, seq, expiresAt }` costs about a microsecond more.
 */
export function itemBinding(ref: SessionRef, seq: number, expiresAt: number | null): ItemBinding {
  return { tenantId: ref.tenantId, sessionId: ref.sessionId, seq, expiresAt };
}

/**
 * Turns an encoded item into stored bytes and back. Sessions always use the authenticated
 * envelope; the seam exists so the benchmark can measure the same store with a null cipher
 * and a test can watch the plaintexts (see `item-cipher.testing.ts`). Not exported from any
 * barrel.
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

/**
 * The key under which `item-cipher.testing.ts` puts another cipher on a session's context. A
 * symbol no barrel exports, so the public context type has no cipher field and no host can
 * hand a session a cipher of its own.
 */
export const ITEM_CIPHER_OVERRIDE: unique symbol = Symbol('ItemCipherOverride');

/** A session context that carries a test's cipher. */
export interface ItemCipherOverride {
  readonly [ITEM_CIPHER_OVERRIDE]?: ItemCipher;
}

/** The cipher of a session built from `context`: the envelope, unless a test put another there. */
export function itemCipherFor(context: object): ItemCipher {
  return (context as ItemCipherOverride)[ITEM_CIPHER_OVERRIDE] ?? envelopeItemCipher;
}
