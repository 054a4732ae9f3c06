import { type KeyObject, createSecretKey, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrownBy } from '../support/thrown-by.js';
import { IntegrityError, InvalidArgumentError } from '../../src/errors/index.js';
import {
  deriveSubkey,
  encodeEncryptionContext,
  unwrapDataKey,
  wrapDataKey,
} from '../../src/crypto/index.js';

/** True only for an IntegrityError: a TypeError or RangeError escaping counts as a failure. */
const failsWithIntegrityError = (action: () => unknown) =>
  thrownBy(action) instanceof IntegrityError;

const newKey = (): KeyObject => createSecretKey(randomBytes(32));
const context = {
  tenantId: 'acme',
  sessionId: 'session-1',
  dekId: '6f9619ff-8b86-4011-b42d-00c04fc964ff',
};

const isWellFormed = (text: string) =>
  (text as string & { isWellFormed(): boolean }).isWellFormed();
const contextTextArb = fc.string({ unit: 'binary', maxLength: 12 }).filter(isWellFormed);
const contextArb = fc.dictionary(contextTextArb, contextTextArb, { maxKeys: 5 });

describe('wrapDataKey / unwrapDataKey', () => {
  it('unwraps what it wrapped', () => {
    const wrappingKey = newKey();
    const dataKey = randomBytes(32);
    const wrapped = wrapDataKey(wrappingKey, dataKey, context);
    expect(unwrapDataKey(wrappingKey, wrapped, context)).toEqual(dataKey);
  });

  it('round-trips arbitrary keys and contexts', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        contextArb,
        (wrappingBytes, dataKey, anyContext) => {
          const wrappingKey = createSecretKey(wrappingBytes);
          const wrapped = wrapDataKey(wrappingKey, dataKey, anyContext);
          expect(unwrapDataKey(wrappingKey, wrapped, anyContext)).toEqual(Buffer.from(dataKey));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('writes 61 bytes starting with version 1', () => {
    const wrapped = wrapDataKey(newKey(), randomBytes(32), context);
    expect(wrapped.length).toBe(61);
    expect(wrapped[0]).toBe(0x01);
  });

  it('draws a fresh IV for every wrap', () => {
    const wrappingKey = newKey();
    const dataKey = randomBytes(32);
    const first = wrapDataKey(wrappingKey, dataKey, context);
    const second = wrapDataKey(wrappingKey, dataKey, context);
    expect(first.subarray(1, 13)).not.toEqual(second.subarray(1, 13));
  });

  it('does not contain the data key', () => {
    const dataKey = randomBytes(32);
    const wrapped = wrapDataKey(newKey(), dataKey, context);
    expect(wrapped.includes(dataKey.subarray(0, 8))).toBe(false);
  });

  it('rejects the wrong wrapping key with IntegrityError', () => {
    const wrapped = wrapDataKey(newKey(), randomBytes(32), context);
    expect(failsWithIntegrityError(() => unwrapDataKey(newKey(), wrapped, context))).toBe(true);
  });

  it.each<[string, Record<string, string>]>([
    ['a changed value', { ...context, sessionId: 'session-2' }],
    ['an added entry', { ...context, extra: '' }],
    ['a removed entry', { tenantId: context.tenantId, sessionId: context.sessionId }],
    ['an empty context', {}],
    ['a renamed key', { tenant: 'acme', sessionId: 'session-1', dekId: context.dekId }],
  ])('rejects %s in the context with IntegrityError', (_name, changed) => {
    const wrappingKey = newKey();
    const wrapped = wrapDataKey(wrappingKey, randomBytes(32), context);
    expect(failsWithIntegrityError(() => unwrapDataKey(wrappingKey, wrapped, changed))).toBe(true);
  });

  it('rejects every single-bit flip with IntegrityError', () => {
    const wrappingKey = newKey();
    const wrapped = wrapDataKey(wrappingKey, randomBytes(32), context);
    const survivors: number[] = [];
    for (let bit = 0; bit < wrapped.length * 8; bit++) {
      const flipped = Buffer.from(wrapped);
      flipped[bit >> 3] ^= 1 << (bit & 7);
      if (!failsWithIntegrityError(() => unwrapDataKey(wrappingKey, flipped, context))) {
        survivors.push(bit);
      }
    }
    expect(survivors).toEqual([]);
  });

  it('rejects any other length with IntegrityError', () => {
    const wrappingKey = newKey();
    const wrapped = wrapDataKey(wrappingKey, randomBytes(32), context);
    const opened: number[] = [];
    for (let length = 0; length <= 70; length++) {
      if (length === wrapped.length) continue;
      const resized = Buffer.alloc(length);
      wrapped.copy(resized, 0, 0, Math.min(length, wrapped.length));
      if (!failsWithIntegrityError(() => unwrapDataKey(wrappingKey, resized, context))) {
        opened.push(length);
      }
    }
    expect(opened).toEqual([]);
  });

  it('says why unwrapping failed without echoing key bytes', () => {
    const dataKey = randomBytes(32);
    const wrapped = wrapDataKey(newKey(), dataKey, context);
    const message = (thrownBy(() => unwrapDataKey(newKey(), wrapped, context)) as Error).message;
    expect(message).toMatch(/wrong root key, changed encryption context, or altered bytes/);
    expect(message).not.toContain(dataKey.toString('hex'));
    expect(message).not.toContain(wrapped.toString('hex', 13));
  });

  it.each([31, 33, 0])('rejects a %i-byte data key with InvalidArgumentError', (length) => {
    const action = () => wrapDataKey(newKey(), randomBytes(length), context);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });

  it('rejects a 16-byte wrapping key with InvalidArgumentError', () => {
    const action = () => wrapDataKey(createSecretKey(randomBytes(16)), randomBytes(32), context);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('encodeEncryptionContext', () => {
  it('writes a u32 count, then lp(key) lp(value) per entry in key order', () => {
    expect(encodeEncryptionContext({ b: '2', a: '' }).toString('hex')).toBe(
      ['00000002', '00000001', '61', '00000000', '00000001', '62', '00000001', '32'].join(''),
    );
  });

  it('encodes an empty context as a zero count', () => {
    expect(encodeEncryptionContext({}).toString('hex')).toBe('00000000');
  });

  it('does not depend on insertion order', () => {
    fc.assert(
      fc.property(contextArb, (anyContext) => {
        const reversed = Object.fromEntries(Object.entries(anyContext).reverse());
        expect(encodeEncryptionContext(reversed)).toEqual(encodeEncryptionContext(anyContext));
      }),
      { numRuns: 300 },
    );
  });

  it('sorts keys by UTF-16 code unit, not by code point', () => {
    // U+FF61 sorts after the surrogate pair of U+1F600 by code point, before it by code unit.
    const encoded = encodeEncryptionContext({ '\u{1F600}': 'x', '\uFF61': 'y' });
    const firstKey = encoded.subarray(8, 8 + encoded.readUInt32BE(4)).toString('utf8');
    expect(firstKey).toBe('\u{1F600}');
  });

  it('keeps {a: "bc"} and {ab: "c"} apart', () => {
    expect(encodeEncryptionContext({ a: 'bc' })).not.toEqual(encodeEncryptionContext({ ab: 'c' }));
  });

  it('gives different contexts different encodings', () => {
    fc.assert(
      fc.property(contextArb, contextArb, (first, second) => {
        const canonical = (c: Record<string, string>) =>
          JSON.stringify(Object.entries(c).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
        fc.pre(canonical(first) !== canonical(second));
        expect(encodeEncryptionContext(first)).not.toEqual(encodeEncryptionContext(second));
      }),
      { numRuns: 300 },
    );
  });

  it.each<[string, unknown]>([
    ['a non-string value', { generation: 2 }],
    ['a value with a lone surrogate', { sessionId: 'a\ud800' }],
    ['a key with a lone surrogate', { '\udc00': 'a' }],
    ['null', null],
    ['an array', ['a']],
  ])('rejects %s with InvalidArgumentError', (_name, badContext) => {
    const action = () => encodeEncryptionContext(badContext as Record<string, string>);
    expect(thrownBy(action)).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('deriveSubkey', () => {
  const rootBytes = randomBytes(32);

  it('derives the same 32-byte subkey from a KeyObject and from its bytes', () => {
    const fromBytes = deriveSubkey(rootBytes, 'dek-wrap');
    const fromKeyObject = deriveSubkey(createSecretKey(rootBytes), 'dek-wrap');
    expect(fromBytes.symmetricKeySize).toBe(32);
    expect(fromKeyObject.export()).toEqual(fromBytes.export());
  });

  it('derives different subkeys for different purposes', () => {
    const wrapKey = deriveSubkey(rootBytes, 'dek-wrap').export();
    const macKey = deriveSubkey(rootBytes, 'audit-mac').export();
    expect(wrapKey).not.toEqual(macKey);
  });

  it('does not return the root key itself', () => {
    expect(deriveSubkey(rootBytes, 'dek-wrap').export()).not.toEqual(rootBytes);
  });

  it.each<[string, KeyObject | Uint8Array, string]>([
    ['a 16-byte root key', randomBytes(16), 'dek-wrap'],
    ['a 16-byte root KeyObject', createSecretKey(randomBytes(16)), 'dek-wrap'],
    ['an empty purpose', randomBytes(32), ''],
    ['a purpose with a lone surrogate', randomBytes(32), 'dek\ud800'],
    ['a purpose over 997 bytes', randomBytes(32), 'x'.repeat(998)],
  ])('rejects %s with InvalidArgumentError', (_name, rootKey, purpose) => {
    expect(thrownBy(() => deriveSubkey(rootKey, purpose))).toBeInstanceOf(InvalidArgumentError);
  });
});
