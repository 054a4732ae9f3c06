import { createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  openEnvelope,
  openItem,
  parseEnvelope,
  sealItem,
  unwrapDataKey,
  wrapDataKey,
  deriveSubkey,
  type ItemBinding,
  type ItemDataKey,
} from '../../src/crypto/index.js';
import { IntegrityError, InvalidArgumentError } from '../../src/errors/index.js';
import { thrownBy } from '../support/thrown-by.js';

// Tests that kill mutants StrykerJS found alive in src/crypto (issue 8, point 14).

const dataKey = (): ItemDataKey => ({ dekId: randomUUID(), generation: 7, key: randomBytes(32) });
const binding = (overrides: Partial<ItemBinding> = {}): ItemBinding => ({
  tenantId: 'acme',
  sessionId: 'chat',
  seq: 1,
  expiresAt: null,
  ...overrides,
});
const plaintext = Buffer.from('{"role":"user","content":"canary-zeroing"}');

/** lp(s): u32 big-endian byte length of UTF-8 `s`, then those bytes. */
function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function uint64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

/** The documented AAD, built independently: header || lp(tenant) || lp(session) || u64 || u64. */
function documentedAad(header: Buffer, b: ItemBinding): Buffer {
  return Buffer.concat([
    header,
    lengthPrefixed(b.tenantId),
    lengthPrefixed(b.sessionId),
    uint64(b.seq),
    uint64(b.expiresAt ?? 0),
  ]);
}

const longTenant = 't'.repeat(150);
/** A 191-character session id ending in `last`: with the tenant, past 256 AAD bytes. */
const longSession = (last: string) => `${'s'.repeat(190)}${last}`;

/** Records what every Buffer#fill(0) wiped: a copy of the bytes before, and the buffer. */
function recordWipes() {
  const wipes: { before: Buffer; buffer: Buffer }[] = [];
  const original = Buffer.prototype.fill;
  vi.spyOn(Buffer.prototype, 'fill').mockImplementation(function (
    this: Buffer,
    ...args: unknown[]
  ) {
    if (args[0] === 0) wipes.push({ before: Buffer.from(this), buffer: this });
    return Reflect.apply<Buffer, unknown[], Buffer>(original, this, args);
  });
  return wipes;
}

/** Opens an envelope with node:crypto directly and the documented AAD. */
function openByHand(key: Buffer, stored: Buffer, b: ItemBinding): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, stored.subarray(24, 36), {
    authTagLength: 16,
  });
  decipher.setAAD(documentedAad(stored.subarray(0, 36), b));
  decipher.setAuthTag(stored.subarray(stored.length - 16));
  return Buffer.concat([
    decipher.update(stored.subarray(36, stored.length - 16)),
    decipher.final(),
  ]);
}

describe('openEnvelope: the GCM tag length is pinned to 16 bytes', () => {
  it.each([4, 8, 12, 15])('refuses a tag truncated to %i bytes', (length) => {
    const key = dataKey();
    const parsed = parseEnvelope(sealItem(key, binding(), plaintext));
    const truncated = { ...parsed, tag: parsed.tag.subarray(0, length) };
    expect(thrownBy(() => openEnvelope(truncated, key.key, binding()))).toBeInstanceOf(
      IntegrityError,
    );
  });

  it('opens the same envelope with its full tag', () => {
    const key = dataKey();
    const parsed = parseEnvelope(sealItem(key, binding(), plaintext));
    expect(openEnvelope(parsed, key.key, binding()).equals(plaintext)).toBe(true);
  });
});

describe('item AAD with long ids (past the 256-byte scratch buffer)', () => {
  it('binds the whole of long ids, the position and the expiry, as documented', () => {
    const key = dataKey();
    const b = binding({
      tenantId: longTenant,
      sessionId: longSession('a'),
      seq: 2 ** 40 + 3,
      expiresAt: 1_900_000_000_000,
    });
    const stored = sealItem(key, b, plaintext);
    expect(openByHand(key.key as Buffer, stored, b).equals(plaintext)).toBe(true);
    expect(openItem(key, b, stored).equals(plaintext)).toBe(true);
  });

  it.each([
    ['the last character of the session id', { sessionId: longSession('b') }],
    ['the position', { seq: 2 ** 40 + 4 }],
    ['the expiry', { expiresAt: 1_900_000_000_001 }],
    ['the tenant', { tenantId: `${longTenant}x` }],
  ])('refuses an item moved by %s', (_what, change) => {
    const key = dataKey();
    const b = binding({
      tenantId: longTenant,
      sessionId: longSession('a'),
      seq: 2 ** 40 + 3,
      expiresAt: 1_900_000_000_000,
    });
    const stored = sealItem(key, b, plaintext);
    // Reads of other sessions in between, so no memoized AAD part is reused by chance.
    sealItem(key, binding(), plaintext);
    expect(thrownBy(() => openItem(key, { ...b, ...change }, stored))).toBeInstanceOf(
      IntegrityError,
    );
    expect(
      thrownBy(() => openEnvelope(parseEnvelope(stored), key.key, { ...b, ...change })),
    ).toBeInstanceOf(IntegrityError);
  });

  it('keeps short-id AADs right after a long one (the scratch buffer grew)', () => {
    const key = dataKey();
    sealItem(key, binding({ sessionId: longSession('a'), tenantId: longTenant }), plaintext);
    const b = binding({ seq: 9, expiresAt: 5 });
    const stored = sealItem(key, b, plaintext);
    expect(openByHand(key.key as Buffer, stored, b).equals(plaintext)).toBe(true);
    expect(thrownBy(() => openItem(key, { ...b, seq: 8 }, stored))).toBeInstanceOf(IntegrityError);
  });
});

describe('decrypted bytes that fail authentication are zeroed', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('wipes the unauthenticated plaintext of an item with a bad tag', () => {
    const key = dataKey();
    const stored = sealItem(key, binding(), plaintext);
    stored[stored.length - 1] ^= 1;
    const wipes = recordWipes();
    expect(thrownBy(() => openItem(key, binding(), stored))).toBeInstanceOf(IntegrityError);
    const wiped = wipes.find(({ before }) => before.equals(plaintext));
    expect(wiped).toBeDefined();
    expect(wiped?.buffer.every((byte) => byte === 0)).toBe(true);
  });

  it('wipes the unauthenticated data key of a wrapping with a bad tag', () => {
    const wrappingKey = deriveSubkey(randomBytes(32), 'dek-wrap');
    const secret = randomBytes(32);
    const context = { tenantId: 'acme', sessionId: 'chat', dekId: randomUUID() };
    const wrapped = wrapDataKey(wrappingKey, secret, context);
    wrapped[wrapped.length - 1] ^= 1;
    const wipes = recordWipes();
    expect(thrownBy(() => unwrapDataKey(wrappingKey, wrapped, context))).toBeInstanceOf(
      IntegrityError,
    );
    const wiped = wipes.find(({ before }) => before.equals(secret));
    expect(wiped).toBeDefined();
    expect(wiped?.buffer.every((byte) => byte === 0)).toBe(true);
  });
});

describe('openItem: argument checks', () => {
  it('refuses a key of the wrong size as a caller bug before reading the item', () => {
    const key = dataKey();
    const stored = sealItem(key, binding(), plaintext);
    expect(
      thrownBy(() => openItem({ ...key, key: Buffer.alloc(16) }, binding(), stored)),
    ).toBeInstanceOf(InvalidArgumentError);
  });
});
