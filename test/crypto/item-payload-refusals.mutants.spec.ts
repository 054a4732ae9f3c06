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

describe('encodeItemPayload refuses what it could not return exactly', () => {
  it.each(refusedItems)('%s, with InvalidArgumentError and no content', (_what, build) => {
    const error = thrownBy(() => encodeItemPayload(build(), 'item'));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).not.toContain(CANARY);
  });
});

describe('readItemArray refuses an items argument that is not a plain, dense array', () => {
  it.each([
    ...refusedArrays,
    ['null', () => null],
    ['a string', () => 'items'],
    [
      'an array with a non-enumerable extra property',
      () => Object.defineProperty([userMessage('x')], 'note', { value: CANARY }),
    ],
    ['an array with a symbol property', () => Object.assign([userMessage('x')], { [Symbol()]: 1 })],
  ] as Array<[string, () => unknown]>)('%s, with InvalidArgumentError', (_what, build) => {
    const error = thrownBy(() => readItemArray(build(), 'addItems'));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).not.toContain(CANARY);
  });

  it('returns a copy, so later changes to the caller array do not reach the stored items', () => {
    const list: unknown[] = [userMessage('a')];
    const read = readItemArray(list, 'addItems');
    list.push(userMessage('b'));
    expect(read).toHaveLength(1);
  });
});

describe('readPlainObject', () => {
  it.each([
    ['null', () => null],
    ['a string', () => 'object'],
    ['an array', () => [1]],
    ['a Proxy', () => new Proxy({ type: 'append_items' }, {})],
    ['a getter', () => Object.defineProperty({}, 'type', { enumerable: true, get: () => CANARY })],
    ['a Map', () => new Map([['type', 'append_items']])],
  ] as Array<[string, () => unknown]>)('refuses %s with InvalidArgumentError', (_what, build) => {
    expect(() => readPlainObject(build(), 'History transaction')).toThrow(InvalidArgumentError);
  });

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
