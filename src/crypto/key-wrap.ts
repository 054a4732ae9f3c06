import {
  KeyObject,
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  hkdfSync,
  randomFillSync,
} from 'node:crypto';
import { IntegrityError, InvalidArgumentError } from '../errors/index.js';
import { GCM_CIPHER, GCM_IV_LENGTH, GCM_OPTIONS, GCM_TAG_LENGTH, secretFreeCause } from './gcm.js';

/** Version byte at the start of every wrapped data key. */
const WRAP_FORMAT_VERSION = 1;
const KEY_LENGTH = 32;
const IV_LENGTH = GCM_IV_LENGTH;
const TAG_LENGTH = GCM_TAG_LENGTH;
const IV_OFFSET = 1;
const CIPHERTEXT_OFFSET = IV_OFFSET + IV_LENGTH;
const TAG_OFFSET = CIPHERTEXT_OFFSET + KEY_LENGTH;
/** version (1) || IV (12) || encrypted key (32) || tag (16). */
const WRAPPED_LENGTH = TAG_OFFSET + TAG_LENGTH;
const SUBKEY_INFO_PREFIX = 'nest-encrypted-sessions/v1/';
/** node:crypto refuses HKDF info longer than 1024 bytes. */
const MAX_HKDF_INFO_LENGTH = 1024;
const WRAP_AAD_PREFIX = Buffer.from('nest-encrypted-sessions/dek-wrap/v1', 'utf8');
const NO_PREFIX = Buffer.alloc(0);

/**
 * Derives a purpose-bound 32-byte subkey from a root key with HKDF-SHA256 (salt empty,
 * info = 'nest-encrypted-sessions/v1/' + purpose).
 *
 * Distinct purposes give independent keys, so one root key can wrap data keys and key an
 * audit MAC without the two uses ever sharing a key.
 *
 * @param rootKey At least 32 bytes of secret key material, as a secret KeyObject or bytes.
 * @param purpose A non-empty, well-formed label such as `'dek-wrap'`.
 * @throws InvalidArgumentError when the root key is shorter than 32 bytes or the purpose is
 *   empty, not well-formed Unicode or too long.
 *
 * @publicApi
 */
export function deriveSubkey(rootKey: KeyObject | Uint8Array, purpose: string): KeyObject {
  if (secretLength(rootKey) < KEY_LENGTH) {
    throw new InvalidArgumentError(
      'A root key must be a secret KeyObject or Uint8Array of at least 32 bytes.',
    );
  }
  if (typeof purpose !== 'string' || purpose.length === 0 || !isWellFormed(purpose)) {
    throw new InvalidArgumentError('A subkey purpose must be a non-empty, well-formed string.');
  }
  const info = Buffer.from(SUBKEY_INFO_PREFIX + purpose, 'utf8');
  if (info.length > MAX_HKDF_INFO_LENGTH) {
    throw new InvalidArgumentError('A subkey purpose must be at most 997 UTF-8 bytes.');
  }
  const derived = new Uint8Array(hkdfSync('sha256', rootKey, NO_PREFIX, info, KEY_LENGTH));
  try {
    return createSecretKey(derived);
  } finally {
    derived.fill(0);
  }
}

/**
 * Canonical, length-prefixed encoding of an encryption context: entries sorted by key (code unit
 * order), each lp(key) lp(value); u32 count first. Never JSON.
 *
 * lp(s) is the u32 big-endian byte length of UTF-8 `s` followed by those bytes, so no two
 * different contexts encode alike (`{a: 'bc'}` and `{ab: 'c'}` differ) and key order does not
 * matter.
 *
 * @throws InvalidArgumentError when the context is not a plain object of strings, or a key or
 *   value is not well-formed Unicode.
 *
 * @publicApi
 */
export function encodeEncryptionContext(context: Readonly<Record<string, string>>): Buffer {
  return encodeContextAfter(NO_PREFIX, context);
}

/**
 * Encrypts a 32-byte data key under a wrapping key, binding the encryption context as AAD.
 * Returns 61 bytes: 0x01 || IV (12, random) || encrypted key (32) || tag (16).
 *
 * @throws InvalidArgumentError when the wrapping key is not a 32-byte secret KeyObject, the data
 *   key is not 32 bytes, or the context is invalid.
 *
 * @publicApi
 */
export function wrapDataKey(
  wrappingKey: KeyObject,
  dataKey: Uint8Array,
  context: Readonly<Record<string, string>>,
): Buffer {
  const iv = Buffer.allocUnsafe(IV_LENGTH);
  randomFillSync(iv);
  return wrapDataKeyUsingIv(wrappingKey, dataKey, context, iv);
}

/**
 * Wraps with a caller-chosen IV. Only for known-answer vectors (through `key-wrap.testing.ts`);
 * the barrel leaves it out.
 *
 * @internal
 */
export function wrapDataKeyUsingIv(
  wrappingKey: KeyObject,
  dataKey: Uint8Array,
  context: Readonly<Record<string, string>>,
  iv: Uint8Array,
): Buffer {
  assertWrappingKey(wrappingKey);
  if (!(dataKey instanceof Uint8Array) || dataKey.length !== KEY_LENGTH) {
    throw new InvalidArgumentError('A data key to wrap must be a Uint8Array of exactly 32 bytes.');
  }
  if (!(iv instanceof Uint8Array) || iv.length !== IV_LENGTH) {
    throw new InvalidArgumentError(`The wrap IV must be a Uint8Array of ${IV_LENGTH} bytes.`);
  }
  const aad = encodeContextAfter(WRAP_AAD_PREFIX, context);
  const wrapped = Buffer.allocUnsafe(WRAPPED_LENGTH);
  wrapped[0] = WRAP_FORMAT_VERSION;
  wrapped.set(iv, IV_OFFSET);
  const cipher = createCipheriv(GCM_CIPHER, wrappingKey, iv, GCM_OPTIONS);
  cipher.setAAD(aad);
  cipher.update(dataKey).copy(wrapped, CIPHERTEXT_OFFSET);
  cipher.final();
  cipher.getAuthTag().copy(wrapped, TAG_OFFSET);
  return wrapped;
}

/**
 * Decrypts a data key wrapped by {@link wrapDataKey} under the same wrapping key and context.
 * Returns the 32 key bytes; zero them (`fill(0)`) once turned into a KeyObject.
 *
 * @throws InvalidArgumentError when the wrapping key or context is invalid.
 * @throws IntegrityError when the bytes are not a version-1 wrapped key, or do not authenticate.
 *
 * @publicApi
 */
export function unwrapDataKey(
  wrappingKey: KeyObject,
  wrapped: Uint8Array,
  context: Readonly<Record<string, string>>,
): Buffer {
  assertWrappingKey(wrappingKey);
  const aad = encodeContextAfter(WRAP_AAD_PREFIX, context);
  if (!(wrapped instanceof Uint8Array) || wrapped.length !== WRAPPED_LENGTH) {
    throw new IntegrityError(
      `The wrapped data key is not ${WRAPPED_LENGTH} bytes long; it is not a key this module wrapped.`,
    );
  }
  if (wrapped[0] !== WRAP_FORMAT_VERSION) {
    throw new IntegrityError(
      `The wrapped data key has an unknown format version (this build reads version ${WRAP_FORMAT_VERSION}).`,
    );
  }
  const bytes = Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
  let dataKey: Buffer | undefined;
  try {
    const decipher = createDecipheriv(
      GCM_CIPHER,
      wrappingKey,
      bytes.subarray(IV_OFFSET, CIPHERTEXT_OFFSET),
      GCM_OPTIONS,
    );
    decipher.setAuthTag(bytes.subarray(TAG_OFFSET));
    decipher.setAAD(aad);
    dataKey = decipher.update(bytes.subarray(CIPHERTEXT_OFFSET, TAG_OFFSET));
    decipher.final();
    return dataKey;
  } catch (error) {
    dataKey?.fill(0);
    throw new IntegrityError(
      'The data key could not be unwrapped: wrong root key, changed encryption context, or ' +
        'altered bytes.',
      // Argument errors from node:crypto may quote their input; keep only the tag mismatch.
      secretFreeCause(error),
    );
  }
}

/** Writes `prefix` then the canonical context encoding into one buffer. */
function encodeContextAfter(prefix: Buffer, context: Readonly<Record<string, string>>): Buffer {
  if (typeof context !== 'object' || context === null || Array.isArray(context)) {
    throw new InvalidArgumentError('An encryption context must be an object of string values.');
  }
  // Default sort compares UTF-16 code units, the documented order.
  const keys = Object.keys(context).sort();
  let length = prefix.length + 4;
  for (const key of keys) {
    const value: unknown = context[key];
    if (typeof value !== 'string') {
      throw new InvalidArgumentError('Every encryption context value must be a string.');
    }
    // A lone surrogate encodes as U+FFFD, so two different contexts could encode alike.
    if (!isWellFormed(key) || !isWellFormed(value)) {
      throw new InvalidArgumentError(
        'Encryption context keys and values must be well-formed Unicode (no lone surrogates).',
      );
    }
    length += 8 + Buffer.byteLength(key, 'utf8') + Buffer.byteLength(value, 'utf8');
  }
  const encoded = Buffer.allocUnsafe(length);
  prefix.copy(encoded, 0);
  let offset = encoded.writeUInt32BE(keys.length, prefix.length);
  for (const key of keys) {
    offset = writeLengthPrefixed(encoded, key, offset);
    offset = writeLengthPrefixed(encoded, context[key], offset);
  }
  return encoded;
}

function writeLengthPrefixed(target: Buffer, text: string, offset: number): number {
  const written = target.write(text, offset + 4, 'utf8');
  target.writeUInt32BE(written, offset);
  return offset + 4 + written;
}

/** Byte length of secret key material; 0 for anything that is not a secret key. */
function secretLength(key: unknown): number {
  if (key instanceof Uint8Array) return key.length;
  // symmetricKeySize is undefined for public and private keys.
  if (key instanceof KeyObject) return key.symmetricKeySize ?? 0;
  return 0;
}

function assertWrappingKey(key: KeyObject): void {
  // symmetricKeySize is undefined for public and private keys.
  if (!(key instanceof KeyObject) || key.symmetricKeySize !== KEY_LENGTH) {
    throw new InvalidArgumentError(
      'A wrapping key must be a secret KeyObject of exactly 32 bytes.',
    );
  }
}

/** `String.prototype.isWellFormed` exists from Node 20 but is typed only from lib ES2024. */
function isWellFormed(value: string): boolean {
  return (value as string & { isWellFormed(): boolean }).isWellFormed();
}
