import { EncryptedSession, type EncryptedSessionContext } from './encrypted-session.js';
import { ITEM_CIPHER_OVERRIDE, type ItemCipher, type ItemCipherOverride } from './item-cipher.js';

/**
 * Test-only: an `EncryptedSession` whose reader and writer seal and open items with `cipher`
 * instead of the AES-256-GCM envelope: the benchmark's plaintext baseline, or a test that
 * records the plaintexts it opens.
 *
 * Never use this outside tests and the benchmark: a cipher other than the envelope may offer
 * no confidentiality or integrity at all. Not exported from any barrel, and left out of the
 * build.
 */
export function createEncryptedSessionWithCipher(
  context: EncryptedSessionContext,
  cipher: ItemCipher,
): EncryptedSession {
  const withCipher: EncryptedSessionContext & ItemCipherOverride = {
    ...context,
    [ITEM_CIPHER_OVERRIDE]: cipher,
  };
  return new EncryptedSession(withCipher);
}
