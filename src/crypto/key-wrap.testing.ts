import type { KeyObject } from 'node:crypto';
import { wrapDataKeyUsingIv } from './key-wrap.js';

/**
 * Test-only: wraps a data key with a fixed IV so known-answer vectors are reproducible.
 * Production code calls `wrapDataKey`, which draws a random IV. Not exported from the barrel.
 */
export function wrapDataKeyWithIv(
  wrappingKey: KeyObject,
  dataKey: Uint8Array,
  context: Readonly<Record<string, string>>,
  iv: Uint8Array,
): Buffer {
  return wrapDataKeyUsingIv(wrappingKey, dataKey, context, iv);
}
