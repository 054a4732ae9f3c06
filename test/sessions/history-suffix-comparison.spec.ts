import { randomUUID } from 'node:crypto';
import { MemorySession, type AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HistoryConflictError, type EncryptedSession } from '../../src/index.js';
import { memoryHarness, type SessionHarness } from '../support/session-harness.js';

// An expected suffix is compared by value, and values that the payload codec keeps apart
// must not compare equal: bytes and a plain object shaped like their tag, -0 and 0.

// The value sits in providerData, where agents-core accepts any JSON-like data.
const withContent = (value: unknown) =>
  ({ role: 'user', content: 'hi', providerData: { value } }) as unknown as AgentInputItem;

const REPLACED = { role: 'user', content: 'replaced' } as AgentInputItem;

const replaceSuffix = (expected: AgentInputItem) => ({
  operationId: `op-${randomUUID()}`,
  transaction: {
    type: 'replace_suffix' as const,
    expectedSuffix: [expected],
    replacement: [REPLACED],
  },
});

let harness: SessionHarness;
let session: EncryptedSession;
beforeEach(async () => {
  harness = await memoryHarness();
  session = await harness.service.open(`s-${randomUUID()}`);
});
afterEach(async () => {
  await harness.close();
});

describe('replace_suffix compares the expected suffix by value', () => {
  it.each([
    ['stored bytes, expected their tag look-alike', new Uint8Array([1]), { $u8: 'AQ==' }],
    ['stored tag look-alike, expected the bytes', { $u8: 'AQ==' }, new Uint8Array([1])],
    ['stored $obj look-alike, expected its content', { $obj: { a: 1 } }, { a: 1 }],
    ['stored -0, expected 0', -0, 0],
    ['stored 0, expected -0', 0, -0],
  ])('refuses %s, as MemorySession does', async (_case, stored, expected) => {
    await session.addItems([withContent(stored)]);

    await expect(
      session.applyHistoryTransaction(replaceSuffix(withContent(expected))),
    ).rejects.toBeInstanceOf(HistoryConflictError);
    expect(await session.getItems()).toEqual([withContent(stored)]);

    const memory = new MemorySession({ initialItems: [withContent(stored)] });
    await expect(
      memory.applyHistoryTransaction(replaceSuffix(withContent(expected))),
    ).rejects.toThrow('suffix no longer matches');
  });

  it.each([
    ['bytes', new Uint8Array([1, 2])],
    ['a tag look-alike', { $u8: 'AQ==' }],
    ['-0', -0],
  ])('applies when the expected suffix holds the same %s', async (_case, value) => {
    await session.addItems([withContent(value)]);

    await session.applyHistoryTransaction(replaceSuffix(withContent(value)));

    expect(await session.getItems()).toEqual([REPLACED]);
  });
});
