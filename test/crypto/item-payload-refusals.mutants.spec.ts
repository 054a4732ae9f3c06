import { describe, expect, it } from 'vitest';
import {
  decodeItemPayload,
  encodeItemPayload,
  readItemArray,
  readPlainObject,
} from '../../src/crypto/index.js';
import { InvalidArgumentError } from '../../src/errors/index.js';
import { userMessage } from '../support/session-harness.js';
import { thrownBy } from '../support/thrown-by.js';
import { CANARY, refusedItems, refusedArrays } from '../support/refused-items.js';

// Tests that kill mutants StrykerJS found alive in the rewritten item-payload.ts (issue 8,
// point 14). test/sessions/item-round-trip.spec.ts refuses the same items through a session,
// but it also opens SQLite, so mutation runs leave it out: the same tables (test/support/refused-items.ts) run
// the codec in process.

/** The reason each refused item's message gives: the caller must learn what to change. */
const refusalReasons: Record<string, string> = {
  'a Date': 'it contains a Date (it would come back as a string)',
  'a Date as the item': 'it contains a Date (it would come back as a string)',
  'a Map': 'it contains a Map or a Set',
  'a Set': 'it contains a Map or a Set',
  'a class instance': 'it contains an object that is not a plain object (a class instance?)',
  'an object with another prototype (__proto__ in a literal)':
    'it contains an object that is not a plain object (a class instance?)',
  'a RegExp': 'it contains a RegExp',
  'an Error': 'it contains an Error object',
  'a boxed String': 'it contains a boxed primitive (new String, new Number)',
  'a non-enumerable property': 'it contains a non-enumerable property',
  'a Symbol-keyed property': 'it contains a Symbol-keyed property',
  'a Symbol value': 'it contains a Symbol',
  'a BigInt': 'it contains a BigInt',
  'undefined as the item': 'it is or contains undefined where JSON has no place for it',
  'undefined in an array': 'it is or contains undefined where JSON has no place for it',
  NaN: 'it contains NaN or an infinite number',
  Infinity: 'it contains NaN or an infinite number',
  '-Infinity': 'it contains NaN or an infinite number',
  'a function': 'it contains a function',
  'a cyclic object': 'it contains a circular reference',
  'a getter that throws with content in its message':
    'it contains a property defined by a getter or setter',
  'an accessor property': 'it contains a property defined by a getter or setter',
  'a setter-only property': 'it contains a property defined by a getter or setter',
  'a Proxy item': 'it contains a Proxy',
  'a Proxy inside an item': 'it contains a Proxy',
  'a Proxy array inside an item': 'it contains a Proxy',
  'a revoked Proxy inside an item': 'it contains a Proxy',
  'a sparse array': 'it contains a sparse array (an empty slot would come back as null)',
  'an array with an extra property': 'it contains an array with properties besides its elements',
  'an array with a getter element': 'it contains an array element defined by a getter or setter',
  'an array subclass': 'it contains an array subclass or an array with another prototype',
  'a Uint16Array': 'it contains binary data other than a Uint8Array',
  'a Float64Array': 'it contains binary data other than a Uint8Array',
  'a Uint8ClampedArray': 'it contains binary data other than a Uint8Array',
  'an ArrayBuffer': 'it contains binary data other than a Uint8Array',
  'a DataView': 'it contains binary data other than a Uint8Array',
  'a Uint8Array with an extra property':
    'it contains a Uint8Array with properties besides its bytes',
  'a Uint8Array with a symbol property':
    'it contains a Uint8Array with properties besides its bytes',
  'nesting deeper than 1000 levels': 'it is nested more than 1000 levels deep',
};

describe('encodeItemPayload refuses what it could not return exactly', () => {
  it.each(refusedItems)('%s, with InvalidArgumentError and no content', (_what, build) => {
    const error = thrownBy(() => encodeItemPayload(build(), 'item'));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).not.toContain(CANARY);
  });

  it.each(refusedItems)('%s, naming what to change', (what, build) => {
    expect(refusalReasons[what], `add the reason for "${what}" to refusalReasons`).toBeDefined();
    expect((thrownBy(() => encodeItemPayload(build(), 'item 3')) as Error).message).toBe(
      `item 3 cannot be stored exactly: ${refusalReasons[what]}. Nothing was stored.`,
    );
  });
});

/** The reason readItemArray gives for each refused items argument. */
const arrayRefusalReasons: Record<string, string> = {
  'a Proxy array': 'it is a Proxy',
  'a sparse array': 'it contains a sparse array (an empty slot would come back as null)',
  'an array with a throwing getter element':
    'it contains an array element defined by a getter or setter',
  'an array with an extra property': 'it contains an array with properties besides its elements',
  'not an array': 'it is not an array',
};

describe('readItemArray refuses an items argument that is not a plain, dense array', () => {
  it.each([
    ...refusedArrays.map(([what, build]) => [what, build, arrayRefusalReasons[what]]),
    ['null', () => null, 'it is not an array'],
    ['a string', () => 'items', 'it is not an array'],
    ['a number', () => 3, 'it is not an array'],
    [
      'an array with a non-enumerable extra property',
      () => Object.defineProperty([userMessage('x')], 'note', { value: CANARY }),
      'it contains an array with properties besides its elements',
    ],
    [
      'an array with a symbol property',
      () => Object.assign([userMessage('x')], { [Symbol()]: 1 }),
      'it contains an array with properties besides its elements',
    ],
  ] as Array<[string, () => unknown, string]>)(
    '%s, with InvalidArgumentError',
    (_what, build, reason) => {
      const error = thrownBy(() => readItemArray(build(), 'addItems'));
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toBe(`addItems must be a plain array of items: ${reason}`);
    },
  );

  it('returns a copy, so later changes to the caller array do not reach the stored items', () => {
    const list: unknown[] = [userMessage('a')];
    const read = readItemArray(list, 'addItems');
    list.push(userMessage('b'));
    expect(read).toHaveLength(1);
  });
});

describe('readPlainObject', () => {
  it.each([
    ['null', () => null, 'it is not an object'],
    ['a string', () => 'object', 'it is not an object'],
    ['an array', () => [1], 'it is an array'],
    ['a Proxy', () => new Proxy({ type: 'append_items' }, {}), 'it is a Proxy'],
    [
      'a getter',
      () => Object.defineProperty({}, 'type', { enumerable: true, get: () => CANARY }),
      'it contains a property defined by a getter or setter',
    ],
    ['a Map', () => new Map([['type', 'append_items']]), 'it contains a Map or a Set'],
  ] as Array<[string, () => unknown, string]>)(
    'refuses %s with InvalidArgumentError',
    (_what, build, reason) => {
      const error = thrownBy(() => readPlainObject(build(), 'History transaction'));
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toBe(
        `History transaction must be a plain object: ${reason}`,
      );
    },
  );

  it('reads the own fields of a plain object', () => {
    expect([...readPlainObject({ type: 't', items: [] }, 'x')]).toEqual([
      ['type', 't'],
      ['items', []],
    ]);
  });
});

describe('encodeItemPayload writes only what it must with tags', () => {
  it.each([
    ['a plain item', userMessage('a'), '{"role":"user","content":"a"}'],
    ['0', { n: 0 }, '{"n":0}'],
    ['-0', { n: -0 }, '{"n":-0}'],
    ['a key named $u8 among others', { $u8: 'x', a: 1 }, '{"$u8":"x","a":1}'],
    ['a lone $u8 key', { $u8: 'x' }, '{"$obj":{"$u8":"x"}}'],
    ['a lone key besides undefined', { $obj: 1, b: undefined }, '{"$obj":{"$obj":1}}'],
    ['bytes', { b: new Uint8Array([1, 2]) }, '{"b":{"$u8":"AQI="}}'],
    ['empty bytes', new Uint8Array(0), '{"$u8":""}'],
  ])('%s', (_what, item, json) => {
    expect(encodeItemPayload(item).toString('utf8')).toBe(json);
    expect(decodeItemPayload(encodeItemPayload(item))).toEqual(item);
  });

  it('decodes tags inside arrays and under a "__proto__" key', () => {
    const decoded = decodeItemPayload(
      Buffer.from('[[{"$u8":"AQ=="}],{"__proto__":{"$u8":"Ag=="}}]'),
    ) as [[Uint8Array], Record<string, unknown>];
    expect(decoded[0][0]).toEqual(new Uint8Array([1]));
    expect(Object.getPrototypeOf(decoded[1])).toBe(Object.prototype);
    expect(Object.hasOwn(decoded[1], '__proto__')).toBe(true);
  });
});
