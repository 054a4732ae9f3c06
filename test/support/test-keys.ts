import { randomBytes } from 'node:crypto';

/** A fresh `id:base64` root key entry, as SESSION_KEYS takes it. */
export function newRootKeyEntry(id = 'k1'): string {
  return `${id}:${randomBytes(32).toString('base64')}`;
}
