import { deriveSubkey, unwrapDataKey, wrapDataKey } from '../../crypto/index.js';
import { ConfigurationError } from '../../errors/index.js';
import type { DataKeyContext } from '../key-provider.interface.js';
import type { KeyObject } from 'node:crypto';

const ROOT_KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$/;
const ROOT_KEY_LENGTH = 32;

/**
 * Decodes one root key given as base64 and checks it is 32 random bytes. A password, a short
 * key or text is refused: a password is not a key.
 *
 * @param id The key's id, named in the error messages.
 * @param encoded The base64 text (43 characters and one `=`).
 * @param sourceName Where the key came from, named in the error messages (`SESSION_KEYS`, a
 *   Vault secret), so they point at what the operator actually sets.
 * @returns The 32 key bytes; the caller zeroes them once derived.
 * @throws ConfigurationError naming the key and the fix; never quoting the key.
 */
export function parseRootKey(id: string, encoded: string, sourceName: string): Buffer {
  const key = ROOT_KEY_BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
  if (!key || key.length !== ROOT_KEY_LENGTH) {
    throw new ConfigurationError(
      `Root key '${id}' in ${sourceName} is not 32 bytes of base64; generate one with 'openssl rand -base64 32' (passwords are not accepted as keys)`,
    );
  }
  if (!looksRandom(key)) {
    key.fill(0);
    throw new ConfigurationError(
      `Root key '${id}' in ${sourceName} does not look random (it decodes to text or repeated bytes); generate one with 'openssl rand -base64 32'`,
    );
  }
  return key;
}

/**
 * Catches keys typed by people: 32 random bytes are all printable ASCII with probability
 * ~1e-14 and have fewer than 16 distinct values with far less.
 */
function looksRandom(key: Buffer): boolean {
  const printable = key.every((byte) => byte >= 0x20 && byte < 0x7f);
  return !printable && new Set(key).size >= 16;
}

/**
 * The encryption context a data key is wrapped under by local root keys: tenant, session and
 * data-key id, so a wrapped key copied to another session does not unwrap.
 */
export function localWrapContext(context: DataKeyContext): Record<string, string> {
  return { tenant: context.tenantId, session: context.sessionId, dek: context.dekId };
}

/**
 * Root keys held in process memory as HKDF wrapping subkeys (`dek-wrap`), by id. Shared by the
 * env provider (keys from configuration) and the Vault KV provider (keys from a KV v2 secret):
 * both wrap data keys with AES-256-GCM under the subkey, bound to tenant, session and data-key
 * id. The raw root keys are zeroed as soon as their subkeys exist.
 */
export class LocalRootKeys {
  private readonly wrappingKeys = new Map<string, KeyObject>();

  /** Derives the wrapping subkey of `rootKey`, keeps it under `id` and zeroes `rootKey`. */
  add(id: string, rootKey: Buffer): void {
    try {
      this.wrappingKeys.set(id, deriveSubkey(rootKey, 'dek-wrap'));
    } finally {
      rootKey.fill(0);
    }
  }

  /** Whether a key with this id is held. */
  has(id: string): boolean {
    return this.wrappingKeys.has(id);
  }

  /** Forgets a key (a version deleted at its source). */
  delete(id: string): void {
    this.wrappingKeys.delete(id);
  }

  /** Ids of the keys held, in insertion order. */
  ids(): string[] {
    return [...this.wrappingKeys.keys()];
  }

  /**
   * Wraps a 32-byte data key under the key `id`, bound to the context.
   * @throws Error when no key has this id (callers check {@link has} first).
   */
  wrap(id: string, dataKey: Uint8Array, context: DataKeyContext): Buffer {
    return wrapDataKey(this.require(id), dataKey, localWrapContext(context));
  }

  /**
   * Unwraps a data key wrapped under the key `id` with the same context.
   * @throws IntegrityError when the wrapped key does not authenticate.
   */
  unwrap(id: string, wrappedKey: Uint8Array, context: DataKeyContext): Buffer {
    return unwrapDataKey(this.require(id), wrappedKey, localWrapContext(context));
  }

  private require(id: string): KeyObject {
    const key = this.wrappingKeys.get(id);
    // Callers check `has` first; reaching this is a bug, not an operator error.
    if (!key) throw new Error(`No local root key '${id}' is loaded.`);
    return key;
  }
}
