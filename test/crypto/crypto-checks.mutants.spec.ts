import {
  createCipheriv,
  createSecretKey,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
} from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  decodeItemPayload,
  deriveSubkey,
  encodeEncryptionContext,
  encodeItemPayload,
  openEnvelope,
  openItem,
  parseEnvelope,
  sealItem,
  unwrapDataKey,
  uuidToBytes,
  wrapDataKey,
  type ItemBinding,
  type ItemDataKey,
} from '../../src/crypto/index.js';
import { sealItemWithIv } from '../../src/crypto/item-envelope.testing.js';
import { wrapDataKeyWithIv } from '../../src/crypto/key-wrap.testing.js';
import { IntegrityError, InvalidArgumentError } from '../../src/errors/index.js';
import { thrownBy } from '../support/thrown-by.js';

// Tests that kill mutants StrykerJS found alive in src/crypto (issue 8, point 14): argument and
// format checks that must give the documented error class, the IV pool, payload tags, and the
// wrapped-key format pinned by a vector computed here with node:crypto alone.

const dataKey = (): ItemDataKey => ({ dekId: randomUUID(), generation: 1, key: randomBytes(32) });
const binding: ItemBinding = { tenantId: 't', sessionId: 's', seq: 1, expiresAt: null };
const payload = Buffer.from('{"content":"x"}');
/** Opens a freshly sealed item with its own key, under `openBinding`. */
function openSealed(openBinding: ItemBinding): Buffer {
  const key = dataKey();
  return openItem(key, openBinding, sealItem(key, binding, payload));
}
const wrappingKey = () => createSecretKey(randomBytes(32));
const context = { tenantId: 't', sessionId: 's', dekId: '00000000-0000-4000-8000-000000000000' };

describe('envelope argument checks', () => {
  it.each([
    ['a null binding', () => sealItem(dataKey(), null as never, payload)],
    ['a null data key', () => sealItem(null as never, binding, payload)],
    ['an 11-byte IV', () => sealItemWithIv(dataKey(), binding, payload, Buffer.alloc(11))],
    ['a string IV', () => sealItemWithIv(dataKey(), binding, payload, 'x'.repeat(12) as never)],
    [
      'a 16-byte secret KeyObject',
      () => sealItem({ ...dataKey(), key: createSecretKey(randomBytes(16)) }, binding, payload),
    ],
    ['a negative seq on open', () => openSealed({ ...binding, seq: -1 })],
    ['a fractional seq on open', () => openSealed({ ...binding, seq: 1.5 })],
    ['an expiry of 0 on open', () => openSealed({ ...binding, expiresAt: 0 })],
  ])('refuses %s as a caller bug', (_what, action) => {
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it.each([
    ['upper-case hex', 'A0000000-0000-4000-8000-000000000000'],
    ['a non-hex letter', 'g0000000-0000-4000-8000-000000000000'],
    ['a colon', ':0000000-0000-4000-8000-000000000000'],
    ['a missing dash', '00000000a0000-4000-8000-000000000000'],
    ['37 characters', '00000000-0000-4000-8000-0000000000000'],
    ['35 characters', '00000000-0000-4000-8000-00000000000'],
    ['a number', 5],
  ])('refuses a UUID with %s', (_what, id) => {
    expect(thrownBy(() => uuidToBytes(id as string))).toBeInstanceOf(InvalidArgumentError);
  });

  it('converts every hex digit', () => {
    expect(uuidToBytes('01234567-89ab-cdef-0f1e-2d3c4b5a6978').toString('hex')).toBe(
      '0123456789abcdef0f1e2d3c4b5a6978',
    );
  });
});

describe('envelope format checks', () => {
  it('refuses stored values that are not bytes as IntegrityError', () => {
    expect(thrownBy(() => parseEnvelope('NE' as never))).toBeInstanceOf(IntegrityError);
    expect(thrownBy(() => openItem(dataKey(), binding, 'x'.repeat(80) as never))).toBeInstanceOf(
      IntegrityError,
    );
  });

  it.each([
    ['first', 0],
    ['second', 1],
  ])('refuses a wrong %s magic byte before anything is authenticated', (_which, index) => {
    const stored = sealItem(dataKey(), binding, payload);
    stored[index] ^= 0x20;
    expect(thrownBy(() => parseEnvelope(stored))).toBeInstanceOf(IntegrityError);
  });

  it('keeps only the tag-mismatch error as the cause', () => {
    const key = dataKey();
    const stored = sealItem(key, binding, payload);
    stored[40] ^= 1;
    const mismatch = thrownBy(() => openItem(key, binding, stored)) as Error;
    expect((mismatch.cause as Error).message).toBe(
      'Unsupported state or unable to authenticate data',
    );
    const parsed = parseEnvelope(sealItem(key, binding, payload));
    const truncated = thrownBy(() =>
      openEnvelope({ ...parsed, tag: parsed.tag.subarray(0, 4) }, key.key, binding),
    ) as Error;
    expect(truncated).toBeInstanceOf(IntegrityError);
    expect(truncated.cause).toBeUndefined();
  });
});

describe('IVs', () => {
  it('never hands out an IV twice or a short one across pool refills', () => {
    const key = dataKey();
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const iv = sealItem(key, binding, payload).subarray(24, 36);
      expect(iv.length).toBe(12);
      seen.add(iv.toString('hex'));
    }
    expect(seen.size).toBe(10_000);
  });
});

describe('item payload tags', () => {
  it('keeps a tag-shaped object whose other property is undefined as plain data', () => {
    const item = { $u8: 'AQ==', extra: undefined };
    expect(decodeItemPayload(encodeItemPayload(item))).toEqual({ $u8: 'AQ==' });
  });

  it.each([
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
  ])('refuses a tag-shaped object whose other property is %s', (_what, extra) => {
    expect(() => encodeItemPayload({ $u8: 'AQ==', extra })).toThrow(InvalidArgumentError);
  });

  it('keeps an own __proto__ key as data, writable, without touching the prototype', () => {
    const item = {};
    Object.defineProperty(item, '__proto__', {
      value: new Uint8Array([1, 2]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
    const decoded = decodeItemPayload(encodeItemPayload(item)) as Record<string, unknown>;
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    const descriptor = Object.getOwnPropertyDescriptor(decoded, '__proto__');
    expect(descriptor?.value).toEqual(new Uint8Array([1, 2]));
    expect(descriptor?.writable).toBe(true);
  });

  it.each(['{"$obj":5}', '{"$obj":null}', '{"$obj":[1]}', '{"a":[{"$u8":7}]}'])(
    'reports a malformed tag %s as IntegrityError',
    (json) => {
      expect(thrownBy(() => decodeItemPayload(Buffer.from(json)))).toBeInstanceOf(IntegrityError);
    },
  );

  it('refuses to decode something that is not bytes as a caller bug', () => {
    expect(thrownBy(() => decodeItemPayload('{}' as never))).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('wrapped data keys', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('match a wrapping computed with node:crypto from the documented format', () => {
    const key = wrappingKey();
    const secret = randomBytes(32);
    const iv = randomBytes(12);
    const ctx = { sessionId: 'chat', tenantId: 'acme', dekId: randomUUID() };
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    cipher.setAAD(
      Buffer.concat([
        Buffer.from('nest-encrypted-sessions/dek-wrap/v1'),
        encodeEncryptionContext(ctx),
      ]),
    );
    const expected = Buffer.concat([
      Buffer.from([1]),
      iv,
      cipher.update(secret),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    expect(wrapDataKeyWithIv(key, secret, ctx, iv).equals(expected)).toBe(true);
    expect(unwrapDataKey(key, expected, ctx).equals(secret)).toBe(true);
  });

  it.each([
    [
      'a 16-byte wrapping key',
      () => wrapDataKey(createSecretKey(randomBytes(16)), randomBytes(32), context),
    ],
    [
      'raw bytes as the wrapping key',
      () => wrapDataKey(randomBytes(32) as never, randomBytes(32), context),
    ],
    [
      'an 11-byte IV',
      () => wrapDataKeyWithIv(wrappingKey(), randomBytes(32), context, Buffer.alloc(11)),
    ],
    [
      'a string IV',
      () => wrapDataKeyWithIv(wrappingKey(), randomBytes(32), context, 'x'.repeat(12) as never),
    ],
    ['a null context', () => wrapDataKey(wrappingKey(), randomBytes(32), null as never)],
    ['an array context', () => wrapDataKey(wrappingKey(), randomBytes(32), ['a'] as never)],
    [
      'a 16-byte key on unwrap',
      () => unwrapDataKey(createSecretKey(randomBytes(16)), Buffer.alloc(61, 1), context),
    ],
  ])('refuses %s as a caller bug', (_what, action) => {
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it('refuses stored values that are not 61 bytes as IntegrityError', () => {
    const key = wrappingKey();
    expect(thrownBy(() => unwrapDataKey(key, 'x'.repeat(61) as never, context))).toBeInstanceOf(
      IntegrityError,
    );
    expect(thrownBy(() => unwrapDataKey(key, Buffer.alloc(60, 1), context))).toBeInstanceOf(
      IntegrityError,
    );
  });

  it('keeps the tag mismatch as the cause of a failed unwrap', () => {
    const key = wrappingKey();
    const wrapped = wrapDataKey(key, randomBytes(32), context);
    const error = thrownBy(() =>
      unwrapDataKey(key, wrapped, { ...context, tenantId: 'u' }),
    ) as Error;
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error.cause as Error).message).toBe('Unsupported state or unable to authenticate data');
  });
});

describe('deriveSubkey', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each([
    ['an empty purpose', ''],
    ['a lone surrogate', 'x\ud800'],
    ['a number', 5],
    ['998 bytes (1025 bytes of HKDF info)', 'p'.repeat(998)],
  ])('refuses %s', (_what, purpose) => {
    expect(thrownBy(() => deriveSubkey(randomBytes(32), purpose as string))).toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  it('accepts a purpose of 997 bytes, the longest HKDF allows', () => {
    expect(deriveSubkey(randomBytes(32), 'p'.repeat(997)).symmetricKeySize).toBe(32);
  });

  it('refuses a root key that is not secret key material', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    expect(thrownBy(() => deriveSubkey(publicKey, 'x'))).toBeInstanceOf(InvalidArgumentError);
    expect(thrownBy(() => deriveSubkey(randomBytes(31), 'x'))).toBeInstanceOf(InvalidArgumentError);
  });

  it('zeroes its copy of the derived key bytes', () => {
    const typedArrayFill = Object.getPrototypeOf(Uint8Array.prototype) as {
      fill: Uint8Array['fill'];
    };
    const original = typedArrayFill.fill;
    const wiped: { before: Buffer; after: Uint8Array }[] = [];
    vi.spyOn(typedArrayFill, 'fill').mockImplementation(function (this: Uint8Array, ...args) {
      const before = Buffer.from(this);
      const result = Reflect.apply<Uint8Array, typeof args, Uint8Array>(original, this, args);
      wiped.push({ before, after: this });
      return result;
    });
    const subkey = deriveSubkey(randomBytes(32), 'zeroing').export();
    const entry = wiped.find(({ before }) => before.equals(subkey));
    expect(entry).toBeDefined();
    expect(entry?.after.every((byte) => byte === 0)).toBe(true);
  });
});

describe('UUID digits at the edges of the hex ranges', () => {
  it.each([
    ['a slash (just below 0)', '/0000000-0000-4000-8000-000000000000'],
    ['a dash in a digit position', '-0000000-0000-4000-8000-000000000000'],
    ['a capital Z (below a)', 'Z0000000-0000-4000-8000-000000000000'],
    ['a backtick (just below a)', '`0000000-0000-4000-8000-000000000000'],
  ])('refuses %s', (_what, id) => {
    expect(thrownBy(() => uuidToBytes(id))).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('payload keys named __proto__', () => {
  it('come back as ordinary enumerable, configurable own properties', () => {
    const item = {};
    Object.defineProperty(item, '__proto__', {
      value: new Uint8Array([3]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
    const decoded = decodeItemPayload(encodeItemPayload(item)) as Record<string, unknown>;
    expect(Object.keys(decoded)).toEqual(['__proto__']);
    expect(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.configurable).toBe(true);
  });
});

const sevenByte = () => new Uint8Array([7]);

describe('the tag writer (items with bytes or a tag-shaped object) writes plain data as JSON does', () => {
  it.each([
    [
      '+0 and fractions',
      { zero: 0, half: 1.5, b: sevenByte() },
      '{"zero":0,"half":1.5,"b":{"$u8":"Bw=="}}',
    ],
    ['-0', { minus: -0, b: sevenByte() }, '{"minus":-0,"b":{"$u8":"Bw=="}}'],
    [
      'a tag-named key among other keys',
      { $u8: 'x', b: sevenByte() },
      '{"$u8":"x","b":{"$u8":"Bw=="}}',
    ],
    ['one key that is not a tag name', { only: sevenByte() }, '{"only":{"$u8":"Bw=="}}'],
    [
      'a tag-named key last among others',
      { b: sevenByte(), $u8: 'x' },
      '{"b":{"$u8":"Bw=="},"$u8":"x"}',
    ],
  ])('%s', (_what, item, json) => {
    expect(encodeItemPayload(item).toString('utf8')).toBe(json);
    expect(decodeItemPayload(encodeItemPayload(item))).toEqual(item);
  });
});

describe('checks that a shortcut would weaken', () => {
  it('refuses a Uint8Array with a non-enumerable symbol property (inspect does not show it)', () => {
    const bytes = Object.defineProperty(new Uint8Array(2), Symbol('note'), { value: 1 });
    expect((thrownBy(() => encodeItemPayload({ bytes }, 'item')) as Error).message).toBe(
      'item cannot be stored exactly: it contains a Uint8Array with properties besides its bytes. Nothing was stored.',
    );
  });

  it('names the binding, not its fields, when the binding is not an object', () => {
    expect(
      (thrownBy(() => sealItem(dataKey(), 'binding' as never, payload)) as Error).message,
    ).toBe('The item binding must be an object.');
  });

  it('names the data key, not its fields, when the data key is not an object', () => {
    expect((thrownBy(() => sealItem('key' as never, binding, payload)) as Error).message).toBe(
      'The data key must be an object with dekId, generation and key.',
    );
  });

  it('refuses a String object holding a valid UUID', () => {
    const boxed = Object('00000000-0000-4000-8000-000000000000') as string;
    expect(thrownBy(() => uuidToBytes(boxed))).toBeInstanceOf(InvalidArgumentError);
  });

  it.each([
    ['a 61-character string', () => 'x'.repeat(61)],
    ['an array of 61 numbers', () => Array.from({ length: 61 }, () => 1)],
  ])('refuses %s as a wrapped key by its type, before reading it', (_what, build) => {
    const error = thrownBy(() => unwrapDataKey(wrappingKey(), build() as never, context));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toBe(
      'The wrapped data key is not 61 bytes long; it is not a key this module wrapped.',
    );
  });
});

describe('checks found missing by the last mutation run', () => {
  it.each([
    ['tenantId', { ...binding, tenantId: '' }],
    ['sessionId', { ...binding, sessionId: '' }],
  ])('names the empty %s in its refusal', (name, emptyId) => {
    expect((thrownBy(() => sealItem(dataKey(), emptyId, payload)) as Error).message).toBe(
      `The item ${name} must be a non-empty string.`,
    );
  });

  it('refuses an empty Uint8Array that carries another property', () => {
    const bytes = Object.assign(new Uint8Array(0), { mime: 'text/plain' });
    expect((thrownBy(() => encodeItemPayload({ bytes }, 'item')) as Error).message).toBe(
      'item cannot be stored exactly: it contains a Uint8Array with properties besides its bytes. Nothing was stored.',
    );
  });

  it.each([60, 62])('refuses a %i-byte wrapped key by its length', (length) => {
    const error = thrownBy(() => unwrapDataKey(wrappingKey(), Buffer.alloc(length, 1), context));
    expect((error as Error).message).toBe(
      'The wrapped data key is not 61 bytes long; it is not a key this module wrapped.',
    );
  });

  it('refuses an object that only looks like a 32-byte KeyObject as a root key', () => {
    expect(thrownBy(() => deriveSubkey({ symmetricKeySize: 32 } as never, 'x'))).toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});
