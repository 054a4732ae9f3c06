import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrownBy } from '../support/thrown-by.js';
import { IntegrityError, InvalidArgumentError } from '../../src/errors/index.js';
import { MAX_ITEM_DEPTH, decodeItemPayload, encodeItemPayload } from '../../src/crypto/index.js';

const roundTrip = (item: unknown) => decodeItemPayload(encodeItemPayload(item));
/** JSON.stringify writes -0 as 0, so a JSON round trip leaves none. */
const withoutNegativeZero = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

describe('encodeItemPayload / decodeItemPayload round trip', () => {
  it('keeps a plain history item', () => {
    const item = { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] };
    expect(roundTrip(item)).toEqual(item);
  });

  it('writes a plain item as plain JSON', () => {
    const item = { role: 'user', content: 'hi' };
    expect(encodeItemPayload(item).toString('utf8')).toBe(JSON.stringify(item));
  });

  it('encodes a Uint8Array as a base64 $u8 tag', () => {
    const payload = encodeItemPayload({ image: new Uint8Array([1, 2, 255]) });
    expect(payload.toString('utf8')).toBe('{"image":{"$u8":"AQL/"}}');
  });

  it('restores a Uint8Array nested in arrays and objects', () => {
    const item = {
      content: [
        { type: 'input_image', data: [new Uint8Array([0, 1, 2]), { deep: new Uint8Array(0) }] },
      ],
    };
    expect(roundTrip(item)).toEqual(item);
  });

  it('restores a top-level Uint8Array', () => {
    expect(roundTrip(new Uint8Array([9, 8, 7]))).toEqual(new Uint8Array([9, 8, 7]));
  });

  it('restores a Buffer as a plain Uint8Array with the same bytes', () => {
    const decoded = roundTrip({ audio: Buffer.from('abc') }) as { audio: Uint8Array };
    expect(decoded.audio).toBeInstanceOf(Uint8Array);
    expect(Buffer.isBuffer(decoded.audio)).toBe(false);
    expect([...decoded.audio]).toEqual([0x61, 0x62, 0x63]);
  });

  it('encodes only the bytes of a Uint8Array view, not its whole backing buffer', () => {
    const backing = new Uint8Array([1, 2, 3, 4, 5]);
    expect(roundTrip({ bytes: backing.subarray(1, 3) })).toEqual({ bytes: new Uint8Array([2, 3]) });
  });

  it('returns Uint8Arrays that own exactly their bytes', () => {
    const decoded = roundTrip({ bytes: new Uint8Array([1, 2, 3]) }) as { bytes: Uint8Array };
    expect(decoded.bytes.byteOffset).toBe(0);
    expect(decoded.bytes.buffer.byteLength).toBe(3);
  });

  it.each([
    ['a $u8 look-alike', { $u8: 'x' }],
    ['a $obj look-alike', { $obj: 1 }],
    ['a $obj look-alike holding an object', { $obj: { a: 1 } }],
    ['a $u8 look-alike holding bytes', { $u8: new Uint8Array([1]) }],
    ['nested escapes', { $obj: { $obj: { $u8: 'AA==' } } }],
    ['a look-alike inside an array', [{ $u8: 'x' }, { $obj: null }]],
    ['tags with other keys', { $u8: 'x', $obj: 'y', other: 1 }],
  ])('keeps %s unchanged', (_name, item) => {
    expect(roundTrip(item)).toEqual(item);
  });

  it('keeps a look-alike that JSON would reduce to one key', () => {
    const decoded = roundTrip({ $u8: 'x', dropped: undefined });
    expect(decoded).toEqual({ $u8: 'x' });
  });

  it('keeps the same look-alike object reached twice', () => {
    const lookAlike = { $u8: 'x' };
    expect(roundTrip([lookAlike, lookAlike])).toEqual([{ $u8: 'x' }, { $u8: 'x' }]);
  });

  it('keeps an own "__proto__" key holding bytes as data, not as a prototype', () => {
    const item = JSON.parse('{"__proto__": 1}') as Record<string, unknown>;
    item['__proto__'] = new Uint8Array([1]);
    const decoded = roundTrip(item) as object;
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value).toEqual(
      new Uint8Array([1]),
    );
  });

  it('keeps unicode text, including astral characters and lone surrogates', () => {
    const item = { text: 'Grüße 会话 🙂 \u0000 "quoted" \\ \ud800 end', key_ü: 'ok' };
    expect(roundTrip(item)).toEqual(item);
  });

  it('writes UTF-8', () => {
    expect(encodeItemPayload('ü').toString('hex')).toBe('22c3bc22');
  });

  it('keeps -0, at the top level and nested, where JSON.stringify writes 0', () => {
    expect(Object.is(roundTrip(-0), -0)).toBe(true);
    const decoded = roundTrip({ zero: -0, list: [-0, 0] }) as { zero: number; list: number[] };
    expect(Object.is(decoded.zero, -0)).toBe(true);
    expect(Object.is(decoded.list[0], -0)).toBe(true);
    expect(Object.is(decoded.list[1], 0)).toBe(true);
  });

  it('leaves out object properties that are undefined, as JSON does', () => {
    expect(roundTrip({ kept: 1, gone: undefined })).toStrictEqual({ kept: 1 });
  });

  it('keeps items that are deeply nested', () => {
    let item: unknown = { leaf: new Uint8Array([1]) };
    for (let depth = 0; depth < 450; depth++) item = { $obj: [item] };
    expect(roundTrip(item)).toEqual(item);
  });

  it(`keeps an item nested exactly ${MAX_ITEM_DEPTH} levels deep`, () => {
    let item: unknown = [];
    for (let depth = 1; depth < MAX_ITEM_DEPTH; depth++) item = [item];
    expect(roundTrip(item)).toEqual(item);
  });

  it('writes an item with neither tags nor -0 byte for byte as JSON.stringify does', () => {
    fc.assert(
      fc.property(fc.jsonValue().map(withoutNegativeZero), (value) => {
        expect(encodeItemPayload(value).toString('utf8')).toBe(JSON.stringify(value));
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips any JSON value exactly, -0 included', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(roundTrip(value)).toStrictEqual(value);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips trees mixing bytes and tag look-alikes', () => {
    const leaf = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 16 }),
    );
    const { tree } = fc.letrec((tie) => ({
      tree: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.array(tie('tree'), { maxLength: 3 }),
        fc.dictionary(fc.constantFrom('$u8', '$obj', 'role', ''), tie('tree'), { maxKeys: 3 }),
      ),
    }));
    fc.assert(
      fc.property(tree, (value) => {
        expect(roundTrip(value)).toEqual(value);
      }),
      { numRuns: 500 },
    );
  });
});

describe('encodeItemPayload rejects what JSON cannot keep', () => {
  const cyclic: Record<string, unknown> = { role: 'user' };
  cyclic.self = cyclic;

  it.each<[string, unknown, RegExp]>([
    ['undefined', undefined, /undefined/],
    ['a function', () => 1, /function/],
    ['a BigInt', { tokens: 10n }, /BigInt/],
    ['a circular reference', cyclic, /circular/],
    ['a Uint16Array', { samples: new Uint16Array([1]) }, /binary data other than a Uint8Array/],
    ['an ArrayBuffer', { raw: new ArrayBuffer(4) }, /binary data other than a Uint8Array/],
    ['a Map', { lookup: new Map([['a', 1]]) }, /Map or a Set/],
    ['NaN', { score: Number.NaN }, /NaN or an infinite number/],
    ['undefined in an array', { list: [1, undefined] }, /undefined/],
    ['a Date', { at: new Date(0) }, /Date/],
  ])('%s, with InvalidArgumentError naming the problem', (_name, item, reason) => {
    const error = thrownBy(() => encodeItemPayload(item));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(reason);
  });

  it('an absurdly deep item, with InvalidArgumentError instead of a RangeError', () => {
    let item: unknown = 'leaf';
    for (let depth = 0; depth < 100_000; depth++) item = [item];
    const error = thrownBy(() => encodeItemPayload(item));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(/nested more than 1000 levels deep/);
  });

  it(`an item nested ${MAX_ITEM_DEPTH + 1} levels deep, one past the limit`, () => {
    let item: unknown = [];
    for (let depth = 1; depth <= MAX_ITEM_DEPTH; depth++) item = [item];
    expect(thrownBy(() => encodeItemPayload(item))).toBeInstanceOf(InvalidArgumentError);
  });

  it('names the item with the label it is given', () => {
    const message = (thrownBy(() => encodeItemPayload({ n: 1n }, 'addItems item 3')) as Error)
      .message;
    expect(message).toMatch(/^addItems item 3 cannot be stored exactly: it contains a BigInt/);
  });

  it('does not echo the content in the message', () => {
    const secret = { ssn: '078-05-1120', tokens: 5n };
    const message = (thrownBy(() => encodeItemPayload(secret)) as Error).message;
    expect(message).not.toContain('078-05-1120');
  });
});

describe('decodeItemPayload rejects what the encoder never writes', () => {
  it.each([
    ['invalid JSON', '{"role":'],
    ['empty bytes', ''],
    ['a $u8 tag that is not a string', '{"$u8":1}'],
    ['a $obj tag that does not hold an object', '{"$obj":[1]}'],
  ])('%s, with IntegrityError', (_name, text) => {
    expect(thrownBy(() => decodeItemPayload(Buffer.from(text)))).toBeInstanceOf(IntegrityError);
  });
});
