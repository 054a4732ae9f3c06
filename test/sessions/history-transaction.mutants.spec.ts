import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  HistoryConflictError,
  InvalidArgumentError,
  type EncryptedSession,
} from '../../src/index.js';
import { memoryHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

// Tests that kill mutants StrykerJS found alive in history-transaction.ts (issue 8, point 14):
// argument checks that must refuse before anything changes, and the structural comparison of
// an expected suffix.

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];
const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);

let harness: SessionHarness;
let session: EncryptedSession;
beforeEach(async () => {
  harness = await memoryHarness();
  session = await harness.service.open(`s-${randomUUID()}`);
  await session.addItems(items('kept'));
});
afterEach(async () => {
  await harness.close();
});

describe('applyHistoryTransaction: argument checks', () => {
  const append = { type: 'append_items', items: items('new') };
  it.each([
    ['null arguments', null],
    ['a string for arguments', 'op'],
    ['a blank operation id', { operationId: '   ', transaction: append }],
    ['a numeric operation id', { operationId: 5, transaction: append }],
    ['an operation id of 192 characters', { operationId: 'o'.repeat(192), transaction: append }],
    ['an operation id with a lone surrogate', { operationId: 'op\ud800', transaction: append }],
    ['a null transaction', { operationId: 'op', transaction: null }],
    ['a string transaction', { operationId: 'op', transaction: 'append_items' }],
    [
      'append_items with a misnamed field',
      { operationId: 'op', transaction: { type: 'append_items', item: items('new') } },
    ],
    [
      'append_items whose items is not an array',
      { operationId: 'op', transaction: { type: 'append_items', items: 'new' } },
    ],
    [
      'append_items holding null',
      { operationId: 'op', transaction: { type: 'append_items', items: [null] } },
    ],
    [
      'append_items holding a string',
      { operationId: 'op', transaction: { type: 'append_items', items: ['new'] } },
    ],
    [
      'append_items holding an array',
      { operationId: 'op', transaction: { type: 'append_items', items: [[userMessage('x')]] } },
    ],
    [
      'replace_suffix with an extra field',
      {
        operationId: 'op',
        transaction: { type: 'replace_suffix', expectedSuffix: [], replacement: [], extra: 1 },
      },
    ],
    [
      'replace_suffix whose replacement is not an array',
      {
        operationId: 'op',
        transaction: { type: 'replace_suffix', expectedSuffix: [], replacement: {} },
      },
    ],
    [
      'replace_suffix whose expected suffix holds a number',
      {
        operationId: 'op',
        transaction: { type: 'replace_suffix', expectedSuffix: [1], replacement: [] },
      },
    ],
    [
      'an unknown type with the fields of replace_suffix',
      {
        operationId: 'op',
        transaction: { type: 'replace_all', expectedSuffix: [], replacement: [] },
      },
    ],
  ])('refuses %s and changes nothing', async (_what, args) => {
    await expect(session.applyHistoryTransaction(args as never)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(texts(await session.getItems())).toEqual(['kept']);
  });

  it('accepts an operation id of 191 characters', async () => {
    await session.applyHistoryTransaction({
      operationId: 'o'.repeat(191),
      transaction: { type: 'append_items', items: items('new') },
    });
    expect(texts(await session.getItems())).toEqual(['kept', 'new']);
  });
});

/** Replaces the newest items, if they match `expectedSuffix`, with one summary item. */
const replace = (expectedSuffix: unknown[]) =>
  session.applyHistoryTransaction({
    operationId: `op-${randomUUID()}`,
    transaction: {
      type: 'replace_suffix',
      expectedSuffix: expectedSuffix as AgentInputItem[],
      replacement: items('summary'),
    },
  });

describe('applyHistoryTransaction: the expected suffix is compared by structure and value', () => {
  it.each([
    ['a number', { n: 1 }, { n: 2 }],
    ['a boolean', { flag: true }, { flag: false }],
    ['an empty array against an empty object', { list: [] }, { list: {} }],
    ['array order', { list: ['a', 'b'] }, { list: ['b', 'a'] }],
    ['bytes', { data: new Uint8Array([1, 2]) }, { data: new Uint8Array([1, 3]) }],
  ])('refuses a suffix that differs by %s', async (_what, stored, expected) => {
    const item = { role: 'user', content: 'x', ...stored } as unknown as AgentInputItem;
    await session.addItems([item]);
    await expect(replace([{ role: 'user', content: 'x', ...expected }])).rejects.toBeInstanceOf(
      HistoryConflictError,
    );
    expect(await session.getItems()).toHaveLength(2);
  });

  it('matches nested objects whatever their key order, bytes by value', async () => {
    await session.addItems([
      {
        role: 'user',
        content: 'x',
        meta: { b: 1, a: [true, null, 'z'] },
        data: new Uint8Array([7]),
      } as unknown as AgentInputItem,
    ]);
    await replace([
      {
        data: new Uint8Array([7]),
        meta: { a: [true, null, 'z'], b: 1 },
        content: 'x',
        role: 'user',
      },
    ]);
    expect(texts(await session.getItems())).toEqual(['kept', 'summary']);
  });
});

describe('applyHistoryTransaction: numbers in arrays and objects stay apart', () => {
  it.each([
    ['array elements', { list: [1, 11] }, { list: [11, 1] }],
    ['object values', { pair: { a: 1, b: 11 } }, { pair: { a: 11, b: 1 } }],
  ])(
    'refuses a suffix whose %s differ only by where a separator falls',
    async (_what, stored, expected) => {
      await session.addItems([
        { role: 'user', content: 'x', ...stored } as unknown as AgentInputItem,
      ]);
      await expect(replace([{ role: 'user', content: 'x', ...expected }])).rejects.toBeInstanceOf(
        HistoryConflictError,
      );
    },
  );
});
