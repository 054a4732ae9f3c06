import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
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

// Tests that kill mutants StrykerJS found alive in the rewritten item-payload.ts (issue 8,
// point 14). test/sessions/item-round-trip.spec.ts refuses the same items through a session,
// but it also opens SQLite, so mutation runs leave it out: these tables (copied from it) run
// the codec in process.

/** Text that must never reach an error message: a getter's error or a symbol may hold content. */
const CANARY = `CANARY-${randomUUID()}`;

/** A valid message whose providerData holds `value`. */
const messageWith = (value: unknown) =>
  ({ role: 'user', content: 'x', providerData: { value } }) as unknown as AgentInputItem;

const withProperty = (descriptor: PropertyDescriptor) => {
  const providerData = {};
  Object.defineProperty(providerData, 'field', descriptor);
  return { role: 'user', content: 'x', providerData } as unknown as AgentInputItem;
};

const deep = (levels: number) => {
  let value: unknown = 'leaf';
  for (let level = 0; level < levels; level++) value = [value];
  return messageWith(value);
};

/** Items `getItems` could not return exactly as given; each builder makes a fresh one. */
const refusedItems: Array<[string, () => unknown]> = [
  ['a Date', () => messageWith(new Date(0))],
  ['a Date as the item', () => new Date(0)],
  ['a Map', () => messageWith(new Map([['k', 1]]))],
  ['a Set', () => messageWith(new Set([1]))],
  [
    'a class instance',
    () =>
      messageWith(
        new (class Note {
          text = 'x';
        })(),
      ),
  ],
  [
    'an object with another prototype (__proto__ in a literal)',
    () => messageWith({ __proto__: { inherited: 1 } }),
  ],
  ['a RegExp', () => messageWith(/x/)],
  ['an Error', () => messageWith(new Error(CANARY))],
  ['a boxed String', () => messageWith(Object(CANARY))],
  ['a non-enumerable property', () => withProperty({ value: CANARY, enumerable: false })],
  ['a Symbol-keyed property', () => messageWith({ [Symbol(CANARY)]: 1 })],
  ['a Symbol value', () => messageWith(Symbol(CANARY))],
  ['a BigInt', () => messageWith(10n)],
  ['undefined as the item', () => undefined],
  ['undefined in an array', () => messageWith([1, undefined])],
  ['NaN', () => messageWith(Number.NaN)],
  ['Infinity', () => messageWith(Number.POSITIVE_INFINITY)],
  ['-Infinity', () => messageWith(Number.NEGATIVE_INFINITY)],
  ['a function', () => messageWith(() => CANARY)],
  [
    'a cyclic object',
    () => {
      const cycle: Record<string, unknown> = { text: CANARY };
      cycle.self = cycle;
      return messageWith(cycle);
    },
  ],
  [
    'a getter that throws with content in its message',
    () =>
      withProperty({
        enumerable: true,
        get: () => {
          throw new Error(CANARY);
        },
      }),
  ],
  ['an accessor property', () => withProperty({ enumerable: true, get: () => CANARY })],
  ['a setter-only property', () => withProperty({ enumerable: true, set: () => {} })],
  ['a Proxy item', () => new Proxy(userMessage(CANARY), {})],
  ['a Proxy inside an item', () => messageWith(new Proxy({ text: CANARY }, {}))],
  ['a Proxy array inside an item', () => messageWith(new Proxy([CANARY], {}))],
  [
    'a revoked Proxy inside an item',
    () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return messageWith(proxy);
    },
  ],
  // eslint-disable-next-line no-sparse-arrays
  ['a sparse array', () => messageWith([1, , 3])],
  ['an array with an extra property', () => messageWith(Object.assign([1], { note: CANARY }))],
  [
    'an array with a getter element',
    () => {
      const list: unknown[] = [];
      Object.defineProperty(list, 0, { enumerable: true, configurable: true, get: () => CANARY });
      return messageWith(list);
    },
  ],
  ['an array subclass', () => messageWith(new (class List extends Array {})())],
  ['a Uint16Array', () => messageWith(new Uint16Array([1]))],
  ['a Float64Array', () => messageWith(new Float64Array([1.5]))],
  ['a Uint8ClampedArray', () => messageWith(new Uint8ClampedArray([1]))],
  ['an ArrayBuffer', () => messageWith(new ArrayBuffer(2))],
  ['a DataView', () => messageWith(new DataView(new ArrayBuffer(2)))],
  [
    'a Uint8Array with an extra property',
    () => messageWith(Object.assign(new Uint8Array(2), { mime: CANARY })),
  ],
  [
    'a Uint8Array with a symbol property',
    () => messageWith(Object.assign(new Uint8Array(2), { [Symbol(CANARY)]: 1 })),
  ],
  ['nesting deeper than 1000 levels', () => deep(1000)],
];

/** Items arrays (the argument itself) that are not plain, dense arrays. */
const refusedArrays: Array<[string, () => unknown]> = [
  ['a Proxy array', () => new Proxy([userMessage('proxied')], {})],
  [
    'a sparse array',
    () => {
      const list: unknown[] = [];
      list.length = 1;
      return list;
    },
  ],
  [
    'an array with a throwing getter element',
    () => {
      const list: unknown[] = [];
      Object.defineProperty(list, 0, {
        enumerable: true,
        get: () => {
          throw new Error(CANARY);
        },
      });
      return list;
    },
  ],
  ['an array with an extra property', () => Object.assign([userMessage('x')], { note: CANARY })],
  ['not an array', () => ({ 0: userMessage('x'), length: 1 })],
];

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
