import { KeyObject, createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { IntegrityError, InvalidArgumentError } from '../errors/index.js';
import { GCM_CIPHER, GCM_IV_LENGTH, GCM_OPTIONS, GCM_TAG_LENGTH, secretFreeCause } from './gcm.js';

/**
 * Length in bytes of the envelope header (magic, version, suite, data-key id, generation, IV).
 *
 * @publicApi
 */
export const ENVELOPE_HEADER_LENGTH = 36;
/**
 * Length in bytes of the AES-GCM authentication tag at the end of every envelope.
 *
 * @publicApi
 */
export const ENVELOPE_TAG_LENGTH = GCM_TAG_LENGTH;
/**
 * The envelope format version this build writes and reads.
 *
 * @publicApi
 */
export const ENVELOPE_FORMAT_VERSION = 1;
/**
 * Suite id of AES-256-GCM with a 96-bit IV and a 128-bit tag.
 *
 * @publicApi
 */
export const SUITE_AES_256_GCM = 1;

const MAGIC_0 = 0x4e; // 'N'
const MAGIC_1 = 0x45; // 'E'
const IV_LENGTH = GCM_IV_LENGTH;
const KEY_LENGTH = 32;
const DEK_ID_OFFSET = 4;
const GENERATION_OFFSET = 20;
const IV_OFFSET = 24;
const MAX_GENERATION = 0xffff_ffff;
const TWO_POW_32 = 0x1_0000_0000;

const AUTH_FAILURE_MESSAGE =
  'Stored item failed authentication: it was tampered with, moved to another session or ' +
  'position, had its expiry changed, or was opened with the wrong data key. Nothing was deleted.';

/**
 * Where an item sits: bound into the AAD so a ciphertext cannot move.
 *
 * @publicApi
 */
export interface ItemBinding {
  /** Tenant that owns the session; non-empty, well-formed Unicode. */
  tenantId: string;
  /** Session the item belongs to; non-empty, well-formed Unicode. */
  sessionId: string;
  /** Position of the item in its session: a non-negative safe integer. */
  seq: number;
  /** Expiry in epoch milliseconds (a positive safe integer), or `null` for "never expires". */
  expiresAt: number | null;
}

/**
 * An unwrapped data key ready for use.
 *
 * @publicApi
 */
export interface ItemDataKey {
  /** Data-key id: a canonical lowercase UUID. */
  dekId: string;
  /** Data-key generation, 1 to 2^32-1; a new generation starts after 2^28 items. */
  generation: number;
  /**
   * The 32-byte AES key: a secret KeyObject, or raw bytes when the holder must be able to zero
   * them (a KeyObject's memory cannot be wiped from JavaScript).
   */
  key: ItemKey;
}

/**
 * A 32-byte AES-256 key, as a secret KeyObject or as raw bytes.
 *
 * @publicApi
 */
export type ItemKey = KeyObject | Uint8Array;

/**
 * The authenticated header of a stored item.
 *
 * @publicApi
 */
export interface EnvelopeHeader {
  /** Envelope format version; always {@link ENVELOPE_FORMAT_VERSION} once parsed. */
  formatVersion: number;
  /** Cipher suite id; always {@link SUITE_AES_256_GCM} once parsed. */
  suite: number;
  /** Id of the data key that sealed the item (canonical lowercase UUID). */
  dekId: string;
  /** Generation of that data key. */
  generation: number;
}

/**
 * A stored item split into its parts; produced by parseEnvelope, consumed by openEnvelope.
 *
 * The byte fields are views into the bytes given to {@link parseEnvelope}, not copies: do not
 * change those bytes until the envelope has been opened.
 *
 * @publicApi
 */
export interface ParsedEnvelope {
  /** The decoded header, for picking the data key. Not yet authenticated. */
  readonly header: EnvelopeHeader;
  /** The raw 36 header bytes, authenticated as the start of the AAD. */
  readonly headerBytes: Buffer;
  /** The 12-byte GCM IV. */
  readonly iv: Buffer;
  /** The GCM ciphertext; as long as the plaintext. */
  readonly ciphertext: Buffer;
  /** The 16-byte GCM tag. */
  readonly tag: Buffer;
}

/**
 * Encrypts one item under a data key and returns the stored envelope:
 * header (36 bytes) || ciphertext || tag (16 bytes). See docs/envelope-format.md.
 *
 * @throws InvalidArgumentError when the data key, binding or plaintext is out of range.
 *
 * @publicApi
 */
export function sealItem(
  dataKey: ItemDataKey,
  binding: ItemBinding,
  plaintext: Uint8Array,
): Buffer {
  return sealItemUsingIv(dataKey, binding, plaintext, takePooledIv());
}

/**
 * Seals with a caller-chosen IV. Reusing an IV under one key breaks GCM completely, so this is
 * only for known-answer vectors (through `item-envelope.testing.ts`); the barrel leaves it out.
 *
 * @internal
 */
export function sealItemUsingIv(
  dataKey: ItemDataKey,
  binding: ItemBinding,
  plaintext: Uint8Array,
  iv: Uint8Array,
): Buffer {
  assertDataKey(dataKey);
  if (!(plaintext instanceof Uint8Array)) {
    throw new InvalidArgumentError('Item plaintext must be a Uint8Array.');
  }
  if (!(iv instanceof Uint8Array) || iv.length !== IV_LENGTH) {
    throw new InvalidArgumentError(`The item IV must be a Uint8Array of ${IV_LENGTH} bytes.`);
  }

  const stored = Buffer.allocUnsafe(
    ENVELOPE_HEADER_LENGTH + plaintext.length + ENVELOPE_TAG_LENGTH,
  );
  stored[0] = MAGIC_0;
  stored[1] = MAGIC_1;
  stored[2] = ENVELOPE_FORMAT_VERSION;
  stored[3] = SUITE_AES_256_GCM;
  writeUuid(dataKey.dekId, stored, DEK_ID_OFFSET);
  stored.writeUInt32BE(dataKey.generation, GENERATION_OFFSET);
  stored.set(iv, IV_OFFSET);

  const cipher = createCipheriv(GCM_CIPHER, dataKey.key, iv, GCM_OPTIONS);
  cipher.setAAD(buildAad(stored, binding));
  const ciphertext = cipher.update(plaintext);
  ciphertext.copy(stored, ENVELOPE_HEADER_LENGTH);
  // GCM is a stream mode: final() emits nothing, it only computes the tag.
  cipher.final();
  cipher.getAuthTag().copy(stored, ENVELOPE_HEADER_LENGTH + plaintext.length);
  return stored;
}

/**
 * Splits a stored item into header, IV, ciphertext and tag, and checks that it is an envelope
 * this build can read. Nothing is authenticated yet: pick the key by `header.dekId` and
 * `header.generation`, then call {@link openEnvelope}.
 *
 * @throws IntegrityError when the bytes are too short, have the wrong magic (e.g. a plaintext
 *   row), an unknown format version or suite, or generation 0.
 *
 * @publicApi
 */
export function parseEnvelope(stored: Uint8Array): ParsedEnvelope {
  const bytes = checkedEnvelopeBytes(stored);
  const generation = bytes.readUInt32BE(GENERATION_OFFSET);
  const tagOffset = bytes.length - ENVELOPE_TAG_LENGTH;
  return {
    header: {
      formatVersion: ENVELOPE_FORMAT_VERSION,
      suite: SUITE_AES_256_GCM,
      dekId: bytesToUuid(bytes.subarray(DEK_ID_OFFSET, GENERATION_OFFSET)),
      generation,
    },
    headerBytes: bytes.subarray(0, ENVELOPE_HEADER_LENGTH),
    iv: bytes.subarray(IV_OFFSET, ENVELOPE_HEADER_LENGTH),
    ciphertext: bytes.subarray(ENVELOPE_HEADER_LENGTH, tagOffset),
    tag: bytes.subarray(tagOffset),
  };
}

/**
 * Authenticates and decrypts a parsed envelope with the data key its header names, checking
 * that it was sealed for exactly this binding. Returns the plaintext.
 *
 * @throws InvalidArgumentError when the key or binding is out of range.
 * @throws IntegrityError when authentication fails for any reason; nothing is deleted.
 *
 * @publicApi
 */
export function openEnvelope(envelope: ParsedEnvelope, key: ItemKey, binding: ItemBinding): Buffer {
  assertItemKey(key);
  return decryptAuthenticated(
    key,
    envelope.iv,
    envelope.tag,
    envelope.ciphertext,
    buildAad(envelope.headerBytes, binding),
  );
}

/**
 * Opens a stored item with the data key its row names, in one step: checks the envelope's
 * shape, checks that its authenticated header names exactly this key (id and generation),
 * then authenticates and decrypts. The read path's fast equivalent of
 * `parseEnvelope` + `openEnvelope`, without building a header object per item.
 *
 * @throws InvalidArgumentError when the key or binding is out of range.
 * @throws IntegrityError when the bytes are not an envelope, name another key, or fail
 *   authentication; nothing is deleted.
 *
 * @publicApi
 */
export function openItem(dataKey: ItemDataKey, binding: ItemBinding, stored: Uint8Array): Buffer {
  assertItemKey(dataKey.key);
  const bytes = checkedEnvelopeBytes(stored);
  if (
    dekIdBytes(dataKey.dekId).compare(bytes, DEK_ID_OFFSET, GENERATION_OFFSET) !== 0 ||
    bytes.readUInt32BE(GENERATION_OFFSET) !== dataKey.generation
  ) {
    throw new IntegrityError(
      'Stored item names a different data key in its header than its row does; the row was altered. Nothing was deleted.',
    );
  }
  const tagOffset = bytes.length - ENVELOPE_TAG_LENGTH;
  return decryptAuthenticated(
    dataKey.key,
    bytes.subarray(IV_OFFSET, ENVELOPE_HEADER_LENGTH),
    bytes.subarray(tagOffset),
    bytes.subarray(ENVELOPE_HEADER_LENGTH, tagOffset),
    buildAad(bytes, binding),
  );
}

/** AES-256-GCM decryption that returns plaintext only once the tag verified. */
function decryptAuthenticated(
  key: ItemKey,
  iv: Buffer,
  tag: Buffer,
  ciphertext: Buffer,
  aad: Buffer,
): Buffer {
  let plaintext: Buffer | undefined;
  try {
    // GCM_OPTIONS pins 16-byte tags: without it Node 20 accepts truncated ones.
    const decipher = createDecipheriv(GCM_CIPHER, key, iv, GCM_OPTIONS);
    decipher.setAuthTag(tag);
    decipher.setAAD(aad);
    plaintext = decipher.update(ciphertext);
    decipher.final();
    return plaintext;
  } catch (error) {
    // Unauthenticated plaintext must not linger in memory.
    plaintext?.fill(0);
    throw new IntegrityError(AUTH_FAILURE_MESSAGE, secretFreeCause(error));
  }
}

/**
 * Converts a canonical lowercase UUID string to its 16 bytes.
 *
 * @throws InvalidArgumentError when `id` is not a canonical lowercase UUID.
 *
 * @publicApi
 */
export function uuidToBytes(id: string): Buffer {
  if (!isCanonicalUuid(id)) {
    throw new InvalidArgumentError(
      'A UUID must be canonical lowercase (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).',
    );
  }
  const bytes = Buffer.alloc(16);
  writeUuid(id, bytes, 0);
  return bytes;
}

/**
 * Formats 16 bytes as a canonical lowercase UUID string.
 *
 * @throws InvalidArgumentError when `b` is not exactly 16 bytes.
 *
 * @publicApi
 */
export function bytesToUuid(b: Uint8Array): string {
  if (!(b instanceof Uint8Array) || b.length !== 16) {
    throw new InvalidArgumentError('A binary UUID must be a Uint8Array of exactly 16 bytes.');
  }
  const hex = Buffer.from(b.buffer, b.byteOffset, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------
// IV pool: one randomFillSync per 4096 IVs instead of one randomBytes call per item.

const IVS_PER_REFILL = 4096;
let ivPool: Buffer | undefined;
let ivPoolOffset = 0;

/** Returns the next 12 unused random bytes. Each slice is handed out once, then overwritten. */
function takePooledIv(): Buffer {
  if (ivPool === undefined || ivPoolOffset + IV_LENGTH > ivPool.length) {
    // allocUnsafeSlow: the pool must not share memory with Node's small-Buffer slab.
    ivPool ??= Buffer.allocUnsafeSlow(IVS_PER_REFILL * IV_LENGTH);
    randomFillSync(ivPool);
    ivPoolOffset = 0;
  }
  const iv = ivPool.subarray(ivPoolOffset, ivPoolOffset + IV_LENGTH);
  ivPoolOffset += IV_LENGTH;
  return iv;
}

/** The stored bytes as a Buffer, once length, magic, version, suite and generation check out. */
function checkedEnvelopeBytes(stored: Uint8Array): Buffer {
  if (!(stored instanceof Uint8Array)) {
    throw new IntegrityError(
      'Stored item is not binary data; it is not an envelope this module wrote.',
    );
  }
  const minimum = ENVELOPE_HEADER_LENGTH + ENVELOPE_TAG_LENGTH;
  if (stored.length < minimum) {
    throw notAnEnvelope(
      `it is ${stored.length} bytes long, shorter than the ${minimum}-byte minimum`,
    );
  }
  const bytes = Buffer.isBuffer(stored)
    ? stored
    : Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  // The messages below never echo stored bytes: a row that fails here may be plaintext.
  if (bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) {
    throw notAnEnvelope('its magic bytes are wrong (a plaintext row or data from another system?)');
  }
  if (bytes[2] !== ENVELOPE_FORMAT_VERSION) {
    throw notAnEnvelope(
      `its format version is unknown (this build reads version ${ENVELOPE_FORMAT_VERSION})`,
    );
  }
  if (bytes[3] !== SUITE_AES_256_GCM) {
    throw notAnEnvelope(
      `its cipher suite is unknown (this build reads suite ${SUITE_AES_256_GCM})`,
    );
  }
  if (bytes.readUInt32BE(GENERATION_OFFSET) === 0) {
    throw notAnEnvelope('its data-key generation is 0 (generations start at 1)');
  }
  return bytes;
}

// One-entry memos: reads and writes come in runs of many items of one session under one key,
// so the validated, encoded ids are reused instead of rebuilt per item.
let memoTenantId: string | undefined;
let memoSessionId: string | undefined;
let memoSessionPart: Buffer | undefined;
let memoDekId: string | undefined;
let memoDekIdBytes: Buffer | undefined;

/** lp(tenantId) || lp(sessionId), validated; memoized for the last session seen. */
function sessionAadPart(tenantId: string, sessionId: string): Buffer {
  if (memoSessionPart && tenantId === memoTenantId && sessionId === memoSessionId)
    return memoSessionPart;
  assertIdentifier(tenantId, 'tenantId');
  assertIdentifier(sessionId, 'sessionId');
  const tenantLength = Buffer.byteLength(tenantId, 'utf8');
  const sessionLength = Buffer.byteLength(sessionId, 'utf8');
  const part = Buffer.alloc(4 + tenantLength + 4 + sessionLength);
  let offset = part.writeUInt32BE(tenantLength, 0);
  offset += part.write(tenantId, offset, 'utf8');
  offset = part.writeUInt32BE(sessionLength, offset);
  part.write(sessionId, offset, 'utf8');
  [memoTenantId, memoSessionId, memoSessionPart] = [tenantId, sessionId, part];
  return part;
}

/** The 16 bytes of a canonical UUID data-key id; memoized for the last id seen. */
function dekIdBytes(dekId: string): Buffer {
  if (memoDekIdBytes && dekId === memoDekId) return memoDekIdBytes;
  const bytes = uuidToBytes(dekId);
  [memoDekId, memoDekIdBytes] = [dekId, bytes];
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// AAD: header || lp(tenantId) || lp(sessionId) || u64(seq) || u64(expiresAt or 0).

/** Reused AAD memory: `setAAD` consumes it synchronously, so one buffer serves every item. */
let aadScratch = Buffer.alloc(256);

/**
 * The AAD of an item. The returned view is only valid until the next call: pass it straight
 * to `setAAD`.
 */
function buildAad(envelopeBytes: Buffer, binding: ItemBinding): Buffer {
  assertPosition(binding);
  const sessionPart = sessionAadPart(binding.tenantId, binding.sessionId);
  const length = ENVELOPE_HEADER_LENGTH + sessionPart.length + 16;
  if (aadScratch.length < length) aadScratch = Buffer.alloc(length * 2);
  const aad = aadScratch.subarray(0, length);
  envelopeBytes.copy(aad, 0, 0, ENVELOPE_HEADER_LENGTH);
  sessionPart.copy(aad, ENVELOPE_HEADER_LENGTH);
  const offset = writeUint64(aad, binding.seq, ENVELOPE_HEADER_LENGTH + sessionPart.length);
  writeUint64(aad, binding.expiresAt ?? 0, offset);
  return aad;
}

/** Writes a non-negative safe integer as u64 big-endian without going through BigInt. */
function writeUint64(target: Buffer, value: number, offset: number): number {
  target.writeUInt32BE(Math.floor(value / TWO_POW_32), offset);
  return target.writeUInt32BE(value % TWO_POW_32, offset + 4);
}

// ---------------------------------------------------------------------------------------------
// Validation. Out-of-range arguments are caller bugs (InvalidArgumentError), never IntegrityError.

/**
 * Checks everything in a binding but the ids (which {@link sessionAadPart} checks once). Every
 * binding goes through {@link buildAad}, so this runs before any output leaves a function.
 */
function assertPosition(binding: ItemBinding): void {
  if (typeof binding !== 'object' || binding === null) {
    throw new InvalidArgumentError('The item binding must be an object.');
  }
  if (!Number.isSafeInteger(binding.seq) || binding.seq < 0) {
    throw new InvalidArgumentError('The item seq must be a non-negative safe integer.');
  }
  const { expiresAt } = binding;
  if (expiresAt !== null && (!Number.isSafeInteger(expiresAt) || expiresAt <= 0)) {
    throw new InvalidArgumentError(
      'The item expiresAt must be null (never expires) or positive epoch milliseconds (a safe integer).',
    );
  }
}

function assertIdentifier(value: unknown, name: string): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(`The item ${name} must be a non-empty string.`);
  }
  // A lone surrogate encodes as U+FFFD, so two different ids could share one AAD.
  if (!isWellFormed(value)) {
    throw new InvalidArgumentError(
      `The item ${name} is not well-formed Unicode (it contains a lone surrogate).`,
    );
  }
}

function assertDataKey(dataKey: ItemDataKey): void {
  if (typeof dataKey !== 'object' || dataKey === null) {
    throw new InvalidArgumentError(
      'The data key must be an object with dekId, generation and key.',
    );
  }
  if (!isCanonicalUuid(dataKey.dekId)) {
    throw new InvalidArgumentError('The data-key id must be a canonical lowercase UUID.');
  }
  const { generation } = dataKey;
  if (!Number.isInteger(generation) || generation < 1 || generation > MAX_GENERATION) {
    throw new InvalidArgumentError('The data-key generation must be an integer from 1 to 2^32-1.');
  }
  assertItemKey(dataKey.key);
}

function assertItemKey(key: ItemKey): void {
  const valid =
    key instanceof KeyObject
      ? key.symmetricKeySize === KEY_LENGTH // undefined for public and private keys
      : key instanceof Uint8Array && key.length === KEY_LENGTH;
  if (!valid) {
    throw new InvalidArgumentError(
      'The data key must be 32 bytes (a secret KeyObject or raw bytes).',
    );
  }
}

/** `String.prototype.isWellFormed` exists from Node 20 but is typed only from lib ES2024. */
function isWellFormed(value: string): boolean {
  return (value as string & { isWellFormed(): boolean }).isWellFormed();
}

function notAnEnvelope(reason: string): IntegrityError {
  return new IntegrityError(
    `Stored item is not an envelope this module can read: ${reason}. Nothing was deleted.`,
  );
}

// ---------------------------------------------------------------------------------------------
// UUIDs: parsed and validated in one pass (this runs on every seal).

const DASH = 0x2d;

function isDashPosition(index: number): boolean {
  return index === 8 || index === 13 || index === 18 || index === 23;
}

/** Value of a lowercase hex digit, or a negative number for any other code unit. */
function hexDigit(code: number): number {
  // Below '0' the difference is already negative: no lower bound needed.
  if (code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

function isCanonicalUuid(id: unknown): id is string {
  if (typeof id !== 'string' || id.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const code = id.charCodeAt(i);
    if (isDashPosition(i) ? code !== DASH : hexDigit(code) < 0) return false;
  }
  return true;
}

/** Writes the 16 bytes of an id that {@link isCanonicalUuid} accepted. */
function writeUuid(id: string, target: Uint8Array, offset: number): void {
  let out = offset;
  for (let i = 0; i < 36; i += 2) {
    if (isDashPosition(i)) i++;
    target[out++] = (hexDigit(id.charCodeAt(i)) << 4) | hexDigit(id.charCodeAt(i + 1));
  }
}
