import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { userMessage } from './session-harness.js';

/*
 * Items and items arrays that `getItems` could not return exactly as given, shared by the
 * session-level refusal tests (test/sessions/item-round-trip.spec.ts) and the in-process codec
 * tables that mutation runs use (test/crypto/item-payload-refusals.mutants.spec.ts).
 */

/** Text that must never reach an error message: a getter's error or a symbol may hold content. */
export const CANARY = `CANARY-${randomUUID()}`;

/** A valid message whose providerData holds `value`. */
export const messageWith = (value: unknown) =>
  ({ role: 'user', content: 'x', providerData: { value } }) as unknown as AgentInputItem;

export const withProperty = (descriptor: PropertyDescriptor) => {
  const providerData = {};
  Object.defineProperty(providerData, 'field', descriptor);
  return { role: 'user', content: 'x', providerData } as unknown as AgentInputItem;
};

export const deep = (levels: number) => {
  let value: unknown = 'leaf';
  for (let level = 0; level < levels; level++) value = [value];
  return messageWith(value);
};

/** Items `getItems` could not return exactly as given; each builder makes a fresh one. */
export const refusedItems: Array<[string, () => unknown]> = [
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
export const refusedArrays: Array<[string, () => unknown]> = [
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
