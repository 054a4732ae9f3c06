import { randomUUID } from 'node:crypto';
import { MemorySession, type AgentInputItem } from '@openai/agents-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors/index.js';
import { memoryHarness, type SessionHarness } from '../support/session-harness.js';
import { describeRoundTrip } from './item-round-trip-contract.js';

// Server-free, so the mutation suites run it too; the same suite on SQLite is in
// item-round-trip.sqlite.spec.ts.
describeRoundTrip('memory', memoryHarness);

/** JSON-like items of the kinds agents items hold, with the edges the encoder must keep. */
const jsonLike = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ unit: 'binary' }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 8 }),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(
      fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('$u8', '$obj', '__proto__', 'type')),
      tie('value'),
      // A null-prototype object comes back as a plain one (tested above), in both sessions.
      { maxKeys: 3, noNullPrototype: true },
    ),
  ),
})).value;

/** Everything above plus values that must be refused. */
const anything = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    jsonLike,
    fc.constantFrom(undefined, Number.NaN, Number.POSITIVE_INFINITY, 10n, Symbol('s'), () => 1),
    fc.date({ noInvalidDate: true }),
    fc.array(tie('value'), { maxLength: 3 }).map((list) => new Set(list)),
    fc.array(tie('value'), { maxLength: 3 }).map((list) => {
      // eslint-disable-next-line no-sparse-arrays
      const sparse = [...list, , 1];
      return sparse;
    }),
    fc.uint8Array({ maxLength: 4 }).map((bytes) => new Uint16Array(bytes)),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string(), tie('value'), { maxKeys: 3 }),
  ),
})).value;

describe('agreement with agents-core MemorySession', () => {
  let harness: SessionHarness;
  beforeAll(async () => {
    harness = await memoryHarness();
  });
  afterAll(async () => {
    await harness.close();
  });

  /** What each session returns for `item`, or undefined when EncryptedSession refused it. */
  async function both(item: unknown) {
    const encrypted = await harness.service.open(`agree-${randomUUID()}`);
    try {
      await encrypted.addItems([item as AgentInputItem]);
    } catch (error) {
      // Refusing is allowed; refusing with any other error is not.
      if (!(error instanceof InvalidArgumentError)) throw error;
      return undefined;
    }
    const memory = new MemorySession();
    await memory.addItems([item as AgentInputItem]);
    return { encrypted: await encrypted.getItems(), memory: await memory.getItems() };
  }

  it('both accept every JSON-like item and return equal items', async () => {
    await fc.assert(
      fc.asyncProperty(jsonLike, async (value) => {
        const item = { role: 'user', content: 'x', providerData: { value } };
        const results = await both(item);
        expect(results).toBeDefined();
        expect(results!.encrypted).toStrictEqual(results!.memory);
        expect(results!.encrypted).toStrictEqual([item]);
      }),
      { numRuns: 300 },
    );
  });

  it('whatever EncryptedSession accepts, MemorySession returns the same way', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(anything, async (value) => {
        const results = await both({ role: 'user', content: 'x', providerData: { value } });
        if (results === undefined) return;
        accepted++;
        // toEqual: MemorySession keeps properties that are undefined; EncryptedSession leaves them out.
        expect(results.encrypted).toEqual(results.memory);
      }),
      { numRuns: 300 },
    );
    expect(accepted).toBeGreaterThan(0);
  });
});
