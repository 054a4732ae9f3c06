import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors/index.js';
import {
  DEFAULT_MAX_ITEM_BYTES,
  DEFAULT_SESSION_DEFAULTS,
  EncryptedSessionService,
  type EncryptedSession,
} from '../../src/sessions/index.js';
import {
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';
import { CANARY, messageWith, refusedItems, refusedArrays } from '../support/refused-items.js';

/** Items that look unusual but come back exactly as given. */
const exactItems: Array<[string, () => unknown, (item: unknown) => void]> = [
  [
    '-0',
    () => messageWith(-0),
    (item) =>
      expect(Object.is((item as { providerData: { value: number } }).providerData.value, -0)).toBe(
        true,
      ),
  ],
  [
    'lone surrogates in text and keys',
    () => ({ role: 'user', content: 'a\ud800b\udfffc', providerData: { 'k\udc00': '\ud83d' } }),
    () => {},
  ],
  [
    'an own "__proto__" key (data, not a prototype)',
    () =>
      JSON.parse('{"role":"user","content":"x","providerData":{"__proto__":{"polluted":true}}}'),
    (item) => {
      const providerData = (item as { providerData: object }).providerData;
      expect(Object.getPrototypeOf(providerData)).toBe(Object.prototype);
      expect(Object.hasOwn(providerData, '__proto__')).toBe(true);
      expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    },
  ],
];

const firstItem = userMessage('first');

/** The refused call changed nothing: the same operation id then applies a valid append. */
async function expectUnrecorded(session: EncryptedSession, operationId: string) {
  expect(await session.getItems()).toEqual([firstItem]);
  await session.applyHistoryTransaction({
    operationId,
    transaction: { type: 'append_items', items: [userMessage('retry')] },
  });
  expect(await session.getItems()).toEqual([firstItem, userMessage('retry')]);
}

/** A message whose encoded payload is exactly `bytes` long. */
function itemOfSize(bytes: number) {
  const overhead = JSON.stringify(userMessage('')).length;
  return userMessage('a'.repeat(bytes - overhead));
}

function expectRefusal(error: unknown): void {
  expect(error).toBeInstanceOf(InvalidArgumentError);
  expect((error as Error).message).not.toContain(CANARY);
}

async function refusal(action: () => Promise<unknown>): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to be refused, but it succeeded');
}

/** The round-trip suite on one backend: what is refused, and what comes back exactly. */
export function describeRoundTrip(backend: string, factory: HarnessFactory) {
  describe(`items that do not round-trip (${backend})`, () => {
    let harness: SessionHarness;
    beforeAll(async () => {
      harness = await factory();
    });
    afterAll(async () => {
      await harness.close();
    });

    /** A session holding `firstItem`. */
    async function seeded(): Promise<EncryptedSession> {
      const session = await harness.service.open(`round-trip-${randomUUID()}`);
      await session.addItems([firstItem]);
      return session;
    }

    describe('addItems refuses, storing nothing', () => {
      it.each(refusedItems)('%s', async (_name, build) => {
        const session = await seeded();
        expectRefusal(
          await refusal(() => session.addItems([userMessage('ok'), build() as AgentInputItem])),
        );
        expect(await session.getItems()).toEqual([firstItem]);
      });

      it.each(refusedArrays)('an items argument that is %s', async (_name, build) => {
        const session = await seeded();
        expectRefusal(await refusal(() => session.addItems(build() as AgentInputItem[])));
        expect(await session.getItems()).toEqual([firstItem]);
      });
    });

    const shapes = [
      {
        shape: 'append_items items',
        transaction: (bad: unknown[]) => ({ type: 'append_items', items: bad }),
      },
      {
        shape: 'replace_suffix expectedSuffix',
        transaction: (bad: unknown[]) => ({
          type: 'replace_suffix',
          expectedSuffix: bad,
          replacement: [userMessage('replacement')],
        }),
      },
      {
        shape: 'replace_suffix replacement',
        transaction: (bad: unknown[]) => ({
          type: 'replace_suffix',
          expectedSuffix: [firstItem],
          replacement: bad,
        }),
      },
    ];

    describe.each(shapes)(
      'applyHistoryTransaction ($shape) refuses, recording nothing',
      ({ transaction }) => {
        it.each(refusedItems)('%s', async (_name, build) => {
          const session = await seeded();
          const operationId = `op-${randomUUID()}`;
          const args = { operationId, transaction: transaction([build()]) };
          expectRefusal(await refusal(() => session.applyHistoryTransaction(args as never)));
          await expectUnrecorded(session, operationId);
        });

        it.each(refusedArrays)('a field that is %s', async (_name, build) => {
          const session = await seeded();
          const operationId = `op-${randomUUID()}`;
          const args = { operationId, transaction: transaction(build() as unknown[]) };
          expectRefusal(await refusal(() => session.applyHistoryTransaction(args as never)));
          await expectUnrecorded(session, operationId);
        });
      },
    );

    describe('applyHistoryTransaction arguments', () => {
      it('reports a throwing operationId getter without its text', async () => {
        const session = await seeded();
        const args = {};
        Object.defineProperty(args, 'operationId', {
          get: () => {
            throw new Error(CANARY);
          },
        });
        expectRefusal(await refusal(() => session.applyHistoryTransaction(args as never)));
        expect(await session.getItems()).toEqual([firstItem]);
      });

      it.each<[string, (items: unknown[]) => unknown]>([
        ['a Proxy transaction', (items) => new Proxy({ type: 'append_items', items }, {})],
        [
          'a transaction whose items field is a getter',
          (items) =>
            Object.defineProperty({ type: 'append_items' }, 'items', {
              enumerable: true,
              get: () => items,
            }),
        ],
        [
          'a transaction with a non-enumerable field',
          (items) =>
            Object.defineProperty({ type: 'append_items', items }, 'extra', { value: CANARY }),
        ],
      ])('refuses %s and records nothing', async (_name, build) => {
        const session = await seeded();
        const operationId = `op-${randomUUID()}`;
        const args = { operationId, transaction: build([userMessage('x')]) };
        expectRefusal(await refusal(() => session.applyHistoryTransaction(args as never)));
        await expectUnrecorded(session, operationId);
      });

      it('reads each argument once', async () => {
        const session = await seeded();
        let reads = 0;
        const args = { transaction: { type: 'append_items', items: [userMessage('once')] } };
        Object.defineProperty(args, 'operationId', {
          enumerable: true,
          get: () => (reads++ === 0 ? 'op-read-once' : 'changed'),
        });
        await session.applyHistoryTransaction(args as never);
        expect(reads).toBe(1);
        expect(await session.getItems()).toEqual([firstItem, userMessage('once')]);
      });
    });

    describe('items that come back exactly are kept', () => {
      it.each(exactItems)('%s', async (_name, build, check) => {
        const session = await seeded();
        await session.addItems([build() as AgentInputItem]);
        const [, item] = await session.getItems();
        expect(item).toStrictEqual(build());
        check(item);
      });

      it('a null-prototype object, returned as a plain object as MemorySession does', async () => {
        const session = await seeded();
        const providerData = Object.assign(Object.create(null) as object, { source: 'p' });
        await session.addItems([{ ...userMessage('x'), providerData }]);
        const [, item] = await session.getItems();
        expect(item).toEqual({ ...userMessage('x'), providerData: { source: 'p' } });
      });

      it('an object property that is undefined, left out as JSON does', async () => {
        const session = await seeded();
        // The agents SDK builds such items itself (hosted MCP tool calls carry output: undefined).
        await session.addItems([{ ...userMessage('x'), providerData: { output: undefined } }]);
        const [, item] = await session.getItems();
        expect(item).toStrictEqual({ ...userMessage('x'), providerData: {} });
      });
    });

    describe('maxItemBytes', () => {
      const limit = 1024;
      let service: EncryptedSessionService;
      beforeAll(() => {
        service = new EncryptedSessionService(harness.storage, harness.keyRing, {
          ...DEFAULT_SESSION_DEFAULTS,
          maxItemBytes: limit,
        });
      });
      async function seededWithLimit(): Promise<EncryptedSession> {
        const session = await service.open(`limit-${randomUUID()}`);
        await session.addItems([firstItem]);
        return session;
      }

      it('accepts an item of exactly the limit', async () => {
        const session = await seededWithLimit();
        await session.addItems([itemOfSize(limit)]);
        expect(await session.getItems()).toEqual([firstItem, itemOfSize(limit)]);
      });

      it('addItems refuses an item one byte over, naming the item, the limit and the option', async () => {
        const session = await seededWithLimit();
        const error = await refusal(() =>
          session.addItems([userMessage('ok'), itemOfSize(limit + 1)]),
        );
        expect(error).toBeInstanceOf(InvalidArgumentError);
        expect((error as Error).message).toMatch(
          /^addItems item 1 is 1 KiB \(1025 bytes\) encoded; the limit is 1 KiB \(maxItemBytes\)/,
        );
        expect(await session.getItems()).toEqual([firstItem]);
      });

      it.each(shapes)(
        'applyHistoryTransaction ($shape) refuses an item over the limit and records nothing',
        async ({ transaction }) => {
          const session = await seededWithLimit();
          const operationId = `op-${randomUUID()}`;
          const args = { operationId, transaction: transaction([itemOfSize(limit + 1)]) };
          const error = await refusal(() => session.applyHistoryTransaction(args as never));
          expect(error).toBeInstanceOf(InvalidArgumentError);
          expect((error as Error).message).toMatch(/the limit is 1 KiB \(maxItemBytes\)/);
          await expectUnrecorded(session, operationId);
        },
      );

      it(`defaults to 4 MiB (${DEFAULT_MAX_ITEM_BYTES} bytes)`, async () => {
        const session = await seeded();
        await session.addItems([itemOfSize(DEFAULT_MAX_ITEM_BYTES)]);
        const error = await refusal(() =>
          session.addItems([itemOfSize(Math.round(5.2 * 1024 * 1024))]),
        );
        expect((error as Error).message).toMatch(
          /^addItems item 0 is 5\.2 MiB \(\d+ bytes\) encoded; the limit is 4 MiB \(maxItemBytes\)/,
        );
        expect(await session.getItems(1)).toEqual([itemOfSize(DEFAULT_MAX_ITEM_BYTES)]);
      });
    });
  });
}
