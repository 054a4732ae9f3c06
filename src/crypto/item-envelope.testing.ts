import { sealItemUsingIv, type ItemBinding, type ItemDataKey } from './item-envelope.js';

/**
 * Test-only: seals an item with a fixed IV so known-answer vectors are reproducible.
 *
 * Never use this outside tests: sealing two items with one IV under one data key reveals
 * their XOR and lets anyone forge tags. Production code calls `sealItem`, which draws a fresh
 * random IV for every item. Not exported from the `crypto` barrel.
 */
export function sealItemWithIv(
  dataKey: ItemDataKey,
  binding: ItemBinding,
  plaintext: Uint8Array,
  iv: Uint8Array,
): Buffer {
  return sealItemUsingIv(dataKey, binding, plaintext, iv);
}
