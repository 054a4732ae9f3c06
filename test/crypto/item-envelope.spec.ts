import { type KeyObject, createSecretKey, randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrownBy } from '../support/thrown-by.js';
import { IntegrityError, InvalidArgumentError } from '../../src/errors/index.js';
import {
  ENVELOPE_FORMAT_VERSION,
  ENVELOPE_HEADER_LENGTH,
  ENVELOPE_TAG_LENGTH,
  SUITE_AES_256_GCM,
  bytesToUuid,
  openEnvelope,
  openItem,
  parseEnvelope,
  sealItem,
  uuidToBytes,
  type ItemBinding,
  type ItemDataKey,
  type ItemKey,
} from '../../src/crypto/index.js';

/** The read path: parse, then authenticate and decrypt. */
function openStored(stored: Uint8Array, key: ItemKey, binding: ItemBinding): Buffer {
  return openEnvelope(parseEnvelope(stored), key, binding);
}

/** True only for an IntegrityError: a TypeError or RangeError escaping counts as a failure. */
function failsWithIntegrityError(action: () => unknown): boolean {
  return thrownBy(action) instanceof IntegrityError;
}

function newDataKey(generation = 1): ItemDataKey & { key: KeyObject } {
  return { dekId: randomUUID(), generation, key: createSecretKey(randomBytes(32)) };
}

const isWellFormed = (text: string) =>
  (text as string & { isWellFormed(): boolean }).isWellFormed();

const identifierArb = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 24 })
  .filter((text) => isWellFormed(text));
const expiresAtArb = fc.option(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), {
  nil: null,
});
const bindingArb: fc.Arbitrary<ItemBinding> = fc.record({
  tenantId: identifierArb,
  sessionId: identifierArb,
  seq: fc.oneof(fc.nat(1000), fc.maxSafeNat()),
  expiresAt: expiresAtArb,
});
const dataKeyArb: fc.Arbitrary<ItemDataKey> = fc.record({
  dekId: fc.uuid(),
  generation: fc.integer({ min: 1, max: 0xffff_ffff }),
  key: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => createSecretKey(bytes)),
});
const payloadArb = fc.uint8Array({ maxLength: 2048 });

const binding: ItemBinding = {
  tenantId: 'tenant-1',
  sessionId: 'session-1',
  seq: 3,
  expiresAt: 1_800_000_000_000,
};
const plaintext = Buffer.from(JSON.stringify({ role: 'user', content: 'my account is 12345' }));

describe('sealItem', () => {
  it('writes header, ciphertext of the plaintext length, and a 16-byte tag', () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    expect(stored.length).toBe(ENVELOPE_HEADER_LENGTH + plaintext.length + ENVELOPE_TAG_LENGTH);
  });

  it('starts with magic "NE", format version 1 and suite 1', () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    expect([...stored.subarray(0, 4)]).toEqual([0x4e, 0x45, 0x01, 0x01]);
  });

  it('writes the data-key id and generation into the header', () => {
    const dataKey = newDataKey(9);
    const stored = sealItem(dataKey, binding, plaintext);
    expect(stored.subarray(4, 20)).toEqual(uuidToBytes(dataKey.dekId));
    expect(stored.readUInt32BE(20)).toBe(9);
  });

  it('does not contain the plaintext', () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    expect(stored.includes(Buffer.from('12345'))).toBe(false);
  });

  it('draws a fresh IV for every item, across IV pool refills', () => {
    const dataKey = newDataKey();
    const ivs = new Set<string>();
    const count = 10_000; // more than two pool refills
    for (let i = 0; i < count; i++) {
      ivs.add(sealItem(dataKey, binding, plaintext).toString('hex', 24, 36));
    }
    expect(ivs.size).toBe(count);
  });

  it('seals an empty plaintext and opens it back', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, new Uint8Array(0));
    expect(openStored(stored, dataKey.key, binding).length).toBe(0);
  });
});

describe('parseEnvelope', () => {
  it('reads the header fields', () => {
    const dataKey = newDataKey(42);
    const parsed = parseEnvelope(sealItem(dataKey, binding, plaintext));
    expect(parsed.header).toEqual({
      formatVersion: ENVELOPE_FORMAT_VERSION,
      suite: SUITE_AES_256_GCM,
      dekId: dataKey.dekId,
      generation: 42,
    });
  });

  it('reads an envelope that is a view into a larger buffer', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, plaintext);
    const larger = new Uint8Array(stored.length + 10);
    larger.set(stored, 5);
    const view = larger.subarray(5, 5 + stored.length);
    expect(openStored(view, dataKey.key, binding)).toEqual(plaintext);
  });

  it.each([
    ['an unknown format version', 2, 0x02],
    ['an unknown suite', 3, 0x02],
    ['bad magic', 0, 0x4f],
  ])('rejects %s with IntegrityError', (_name, offset, value) => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    stored[offset] = value;
    expect(thrownBy(() => parseEnvelope(stored))).toBeInstanceOf(IntegrityError);
  });

  it('rejects data-key generation 0 with IntegrityError', () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    stored.writeUInt32BE(0, 20);
    expect(thrownBy(() => parseEnvelope(stored))).toBeInstanceOf(IntegrityError);
  });

  it('rejects a value that is not binary data with IntegrityError', () => {
    const notBytes = 'NE' as unknown as Uint8Array;
    expect(thrownBy(() => parseEnvelope(notBytes))).toBeInstanceOf(IntegrityError);
  });
});

describe('round trip', () => {
  it('opens what it sealed, for arbitrary payloads, keys and bindings', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, payloadArb, (dataKey, itemBinding, payload) => {
        const stored = sealItem(dataKey, itemBinding, payload);
        expect(openStored(stored, dataKey.key, itemBinding)).toEqual(Buffer.from(payload));
      }),
      { numRuns: 300 },
    );
  });

  it('accepts a non-ASCII tenant and session id', () => {
    const dataKey = newDataKey();
    const unicodeBinding = { ...binding, tenantId: 'tenant-ü', sessionId: '会话-🙂' };
    const stored = sealItem(dataKey, unicodeBinding, plaintext);
    expect(openStored(stored, dataKey.key, unicodeBinding)).toEqual(plaintext);
  });
});

describe('tampering fails closed with IntegrityError', () => {
  it('rejects every single-bit flip anywhere in a stored item', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, Buffer.from('short item'));
    const survivors: string[] = [];
    for (let bit = 0; bit < stored.length * 8; bit++) {
      const flipped = Buffer.from(stored);
      flipped[bit >> 3] ^= 1 << (bit & 7);
      if (!failsWithIntegrityError(() => openStored(flipped, dataKey.key, binding))) {
        survivors.push(`byte ${bit >> 3} bit ${bit & 7}`);
      }
    }
    expect(survivors).toEqual([]);
  });

  it('rejects a single-bit flip in arbitrary items', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, payloadArb, fc.nat(), (dataKey, b, payload, pick) => {
        const stored = sealItem(dataKey, b, payload);
        const bit = pick % (stored.length * 8);
        stored[bit >> 3] ^= 1 << (bit & 7);
        expect(failsWithIntegrityError(() => openStored(stored, dataKey.key, b))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects every truncation to a shorter length', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, plaintext);
    const opened: number[] = [];
    for (let length = 0; length < stored.length; length++) {
      const truncated = stored.subarray(0, length);
      if (!failsWithIntegrityError(() => openStored(truncated, dataKey.key, binding))) {
        opened.push(length);
      }
    }
    expect(opened).toEqual([]);
  });

  it('rejects extra bytes appended to an item', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, plaintext);
    const extended = Buffer.concat([stored, Buffer.from([0])]);
    expect(failsWithIntegrityError(() => openStored(extended, dataKey.key, binding))).toBe(true);
  });

  it('rejects empty input', () => {
    expect(
      failsWithIntegrityError(() => openStored(new Uint8Array(0), newDataKey().key, binding)),
    ).toBe(true);
  });

  it('rejects random garbage of any length', () => {
    const key = newDataKey().key;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => {
        expect(failsWithIntegrityError(() => openStored(garbage, key, binding))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects random garbage behind a valid-looking header', () => {
    const key = newDataKey().key;
    const header = sealItem(newDataKey(), binding, plaintext).subarray(0, ENVELOPE_HEADER_LENGTH);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 200 }), (garbage) => {
        const stored = Buffer.concat([header, garbage]);
        expect(failsWithIntegrityError(() => openStored(stored, key, binding))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a plaintext JSON row without echoing its content', () => {
    const row = Buffer.from(JSON.stringify({ role: 'user', content: 'hi' }));
    const error = thrownBy(() => openStored(row, newDataKey().key, binding));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).not.toMatch(/role|user|content|hi"/);
  });

  it('rejects the wrong data key', () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    expect(failsWithIntegrityError(() => openStored(stored, newDataKey().key, binding))).toBe(true);
  });

  it('says the item failed authentication and that nothing was deleted', () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    const error = thrownBy(() => openStored(stored, newDataKey().key, binding)) as Error;
    expect(error.message).toMatch(/failed authentication.*Nothing was deleted/s);
  });

  it("keeps node's tag-mismatch error as the cause", () => {
    const stored = sealItem(newDataKey(), binding, plaintext);
    const error = thrownBy(() => openStored(stored, newDataKey().key, binding)) as Error;
    expect((error.cause as Error).message).toBe('Unsupported state or unable to authenticate data');
  });

  it('never puts plaintext, key or ciphertext bytes in the message', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, plaintext);
    const wrongKey = newDataKey().key;
    const message = (thrownBy(() => openStored(stored, wrongKey, binding)) as Error).message;
    const secrets = [
      plaintext.toString('utf8'),
      plaintext.toString('hex'),
      dataKey.key.export().toString('hex'),
      wrongKey.export().toString('hex'),
      stored.toString('hex', ENVELOPE_HEADER_LENGTH),
      stored.toString('base64'),
    ];
    expect(secrets.filter((secret) => message.includes(secret))).toEqual([]);
  });
});

describe('the binding is authenticated', () => {
  const opensWith = (changed: Partial<ItemBinding>) => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, plaintext);
    return () => openStored(stored, dataKey.key, { ...binding, ...changed });
  };

  it.each<[string, Partial<ItemBinding>]>([
    ['another session', { sessionId: 'session-2' }],
    ['another tenant', { tenantId: 'tenant-2' }],
    ['another position', { seq: binding.seq + 1 }],
    ['a later expiry', { expiresAt: binding.expiresAt! + 1 }],
    ['an earlier expiry', { expiresAt: binding.expiresAt! - 1 }],
    ['no expiry instead of one', { expiresAt: null }],
  ])('rejects %s', (_name, changed) => {
    expect(failsWithIntegrityError(opensWith(changed))).toBe(true);
  });

  it('rejects an expiry added to an item sealed without one', () => {
    const dataKey = newDataKey();
    const neverExpires = { ...binding, expiresAt: null };
    const stored = sealItem(dataKey, neverExpires, plaintext);
    const withExpiry = { ...neverExpires, expiresAt: 1_800_000_000_000 };
    expect(failsWithIntegrityError(() => openStored(stored, dataKey.key, withExpiry))).toBe(true);
  });

  it('rejects ids that only differ in where tenant ends and session begins', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, { ...binding, tenantId: 'ab', sessionId: 'c' }, plaintext);
    const shifted = { ...binding, tenantId: 'a', sessionId: 'bc' };
    expect(failsWithIntegrityError(() => openStored(stored, dataKey.key, shifted))).toBe(true);
  });

  it('rejects any different binding, for arbitrary bindings', () => {
    const dataKey = newDataKey();
    fc.assert(
      fc.property(bindingArb, bindingArb, (sealedFor, openedFor) => {
        fc.pre(JSON.stringify(sealedFor) !== JSON.stringify(openedFor));
        const stored = sealItem(dataKey, sealedFor, plaintext);
        expect(failsWithIntegrityError(() => openStored(stored, dataKey.key, openedFor))).toBe(
          true,
        );
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a single changed binding field, for arbitrary bindings', () => {
    const dataKey = newDataKey();
    const fieldChangeArb = fc.oneof(
      identifierArb.map((tenantId) => ({ tenantId })),
      identifierArb.map((sessionId) => ({ sessionId })),
      fc.maxSafeNat().map((seq) => ({ seq })),
      expiresAtArb.map((expiresAt) => ({ expiresAt })),
    );
    fc.assert(
      fc.property(bindingArb, fieldChangeArb, (sealedFor, change) => {
        const openedFor = { ...sealedFor, ...change };
        fc.pre(JSON.stringify(sealedFor) !== JSON.stringify(openedFor));
        const stored = sealItem(dataKey, sealedFor, plaintext);
        expect(failsWithIntegrityError(() => openStored(stored, dataKey.key, openedFor))).toBe(
          true,
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe('argument validation', () => {
  const badBindings: [string, Partial<ItemBinding>][] = [
    ['an empty tenantId', { tenantId: '' }],
    ['an empty sessionId', { sessionId: '' }],
    ['a tenantId with a lone surrogate', { tenantId: 'tenant-\ud800' }],
    ['a sessionId with a lone surrogate', { sessionId: '\udc00session' }],
    ['a non-string sessionId', { sessionId: 42 as unknown as string }],
    ['a negative seq', { seq: -1 }],
    ['a fractional seq', { seq: 1.5 }],
    ['a NaN seq', { seq: Number.NaN }],
    ['a seq above MAX_SAFE_INTEGER', { seq: 2 ** 53 }],
    ['expiresAt 0', { expiresAt: 0 }],
    ['a negative expiresAt', { expiresAt: -1 }],
    ['a fractional expiresAt', { expiresAt: 1.5 }],
    ['an undefined expiresAt', { expiresAt: undefined }],
  ];

  it.each(badBindings)('sealItem rejects %s with InvalidArgumentError', (_name, changed) => {
    const action = () => sealItem(newDataKey(), { ...binding, ...changed }, plaintext);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it.each(badBindings)('openEnvelope rejects %s with InvalidArgumentError', (_name, changed) => {
    const dataKey = newDataKey();
    const parsed = parseEnvelope(sealItem(dataKey, binding, plaintext));
    const action = () => openEnvelope(parsed, dataKey.key, { ...binding, ...changed });
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it.each<[string, Partial<ItemDataKey>]>([
    ['an uppercase dekId', { dekId: randomUUID().toUpperCase() }],
    ['a dekId without dashes', { dekId: randomUUID().replaceAll('-', '') }],
    ['a dekId with a non-hex digit', { dekId: 'g0000000-0000-4000-8000-000000000000' }],
    ['generation 0', { generation: 0 }],
    ['generation 2^32', { generation: 2 ** 32 }],
    ['a fractional generation', { generation: 1.5 }],
    ['a 16-byte key', { key: createSecretKey(randomBytes(16)) }],
    ['16 raw key bytes', { key: randomBytes(16) }],
    ['a string instead of a key', { key: 'k'.repeat(32) as unknown as KeyObject }],
  ])('sealItem rejects %s with InvalidArgumentError', (_name, changed) => {
    const action = () => sealItem({ ...newDataKey(), ...changed }, binding, plaintext);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it('sealItem rejects a plaintext that is not a Uint8Array with InvalidArgumentError', () => {
    const action = () => sealItem(newDataKey(), binding, 'text' as unknown as Uint8Array);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it('openEnvelope rejects a 16-byte key with InvalidArgumentError', () => {
    const parsed = parseEnvelope(sealItem(newDataKey(), binding, plaintext));
    const action = () => openEnvelope(parsed, createSecretKey(randomBytes(16)), binding);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it('accepts the largest generation, seq and expiry', () => {
    const dataKey = newDataKey(0xffff_ffff);
    const extreme = {
      ...binding,
      seq: Number.MAX_SAFE_INTEGER,
      expiresAt: Number.MAX_SAFE_INTEGER,
    };
    const stored = sealItem(dataKey, extreme, plaintext);
    expect(openStored(stored, dataKey.key, extreme)).toEqual(plaintext);
  });
});

describe('uuidToBytes and bytesToUuid', () => {
  it('round-trip any canonical UUID', () => {
    fc.assert(
      fc.property(fc.uuid(), (id) => {
        expect(bytesToUuid(uuidToBytes(id))).toBe(id);
      }),
      { numRuns: 300 },
    );
  });

  it('agree with the hex digits of the UUID', () => {
    const id = '00112233-4455-6677-8899-aabbccddeeff';
    expect(uuidToBytes(id).toString('hex')).toBe('00112233445566778899aabbccddeeff');
  });

  it.each([
    '',
    'not-a-uuid',
    '00112233-4455-6677-8899-AABBCCDDEEFF',
    '001122334455667788990aabbccddeeff',
  ])('uuidToBytes rejects %j with InvalidArgumentError', (id) => {
    expect(thrownBy(() => uuidToBytes(id))).toBeInstanceOf(InvalidArgumentError);
  });

  it.each([0, 15, 17])('bytesToUuid rejects %i bytes with InvalidArgumentError', (length) => {
    expect(thrownBy(() => bytesToUuid(new Uint8Array(length)))).toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});

describe('openItem (the read path: check the row key, then open)', () => {
  it('opens what sealItem sealed', () => {
    const dataKey = newDataKey();
    expect(openItem(dataKey, binding, sealItem(dataKey, binding, plaintext))).toEqual(plaintext);
  });

  it('refuses an envelope whose header names another data key or generation', () => {
    const dataKey = newDataKey(3);
    const stored = sealItem(dataKey, binding, plaintext);
    expect(
      thrownBy(() => openItem({ ...dataKey, dekId: randomUUID() }, binding, stored)),
    ).toBeInstanceOf(IntegrityError);
    expect(thrownBy(() => openItem({ ...dataKey, generation: 2 }, binding, stored))).toBeInstanceOf(
      IntegrityError,
    );
  });

  it('gives IntegrityError for any single flipped bit', () => {
    const dataKey = newDataKey();
    const stored = sealItem(dataKey, binding, plaintext);
    fc.assert(
      fc.property(fc.nat({ max: stored.length * 8 - 1 }), (bit) => {
        const flipped = Buffer.from(stored);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        expect(thrownBy(() => openItem(dataKey, binding, flipped))).toBeInstanceOf(IntegrityError);
      }),
      { numRuns: 300 },
    );
  });

  it('gives IntegrityError for empty, short, garbage and plaintext rows', () => {
    const dataKey = newDataKey();
    for (const row of [
      Buffer.alloc(0),
      Buffer.alloc(51),
      randomBytes(200),
      Buffer.from(JSON.stringify({ role: 'user', content: 'hi' })),
    ]) {
      expect(thrownBy(() => openItem(dataKey, binding, row))).toBeInstanceOf(IntegrityError);
    }
  });

  it('binds each item to its own session even when sessions and keys alternate (memoized ids)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(bindingArb, fc.boolean()), { minLength: 2, maxLength: 8 }),
        (steps) => {
          const keys = [newDataKey(), newDataKey()];
          const sealed = steps.map(([itemBinding, which]) => {
            const dataKey = keys[which ? 1 : 0]!;
            return { itemBinding, dataKey, stored: sealItem(dataKey, itemBinding, plaintext) };
          });
          // Open in reverse order, so every memo holds another session's ids when it is consulted.
          for (const { itemBinding, dataKey, stored } of [...sealed].reverse()) {
            expect(openItem(dataKey, itemBinding, stored)).toEqual(plaintext);
          }
          for (let i = 1; i < sealed.length; i++) {
            const previous = sealed[i - 1]!;
            const current = sealed[i]!;
            const sameSession =
              previous.itemBinding.tenantId === current.itemBinding.tenantId &&
              previous.itemBinding.sessionId === current.itemBinding.sessionId &&
              previous.itemBinding.seq === current.itemBinding.seq &&
              previous.itemBinding.expiresAt === current.itemBinding.expiresAt;
            if (sameSession) continue;
            expect(
              thrownBy(() => openItem(current.dataKey, previous.itemBinding, current.stored)),
            ).toBeInstanceOf(IntegrityError);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
