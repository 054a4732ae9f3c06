import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EncryptedSession, HistoryConflictError, InvalidArgumentError } from '../../src/index.js';
import { type EncryptedSessionContext } from '../../src/sessions/index.js';
import {
  assistantMessage,
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';
import { newSessionRecord } from '../support/session-records.js';

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];
const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);

/**
 * The behaviour every storage backend must show through EncryptedSession. Written once, run on
 * each backend by a one-line spec.
 */
/** A ref in the default tenant. */
const refOf = (id: string) => ({ tenantId: 'default', sessionId: id });

const DAY_MS = 86_400_000;

export function describeSessionContract(backendName: string, createHarness: HarnessFactory): void {
  describe(`EncryptedSession contract on ${backendName}`, () => {
    let harness: SessionHarness;
    let sessionId: string;

    beforeEach(async () => {
      harness = await createHarness();
      sessionId = `s-${randomUUID()}`;
    });
    afterEach(async () => {
      await harness.close();
    });

    /** A session with a controllable clock, over the same storage and keys. */
    async function openWithClock(id: string, ttlSeconds: number | null, clock: () => number) {
      await harness.service.open(id, { ttlSeconds });
      const context: EncryptedSessionContext = {
        tenantId: 'default',
        sessionId: id,
        subjectId: null,
        itemTtlSeconds: ttlSeconds,
        storage: harness.storage,
        keyRing: harness.keyRing,
        clock,
      };
      return new EncryptedSession(context);
    }

    /** The session's data keys as [generation, state], oldest first. */
    const keysOf = (id: string) =>
      harness.storage.read(refOf(id), async (scope) =>
        (await scope.dataKeys.listAll!()).map((key) => [key.generation, key.state]),
      );

    describe('basic operations', () => {
      it('returns the session id it was opened with', async () => {
        const session = await harness.service.open(sessionId);
        expect(await session.getSessionId()).toBe(sessionId);
      });

      it('reads nothing and pops undefined on an empty session', async () => {
        const session = await harness.service.open(sessionId);
        expect(await session.getItems()).toEqual([]);
        expect(await session.getItems(5)).toEqual([]);
        expect(await session.popItem()).toBeUndefined();
      });

      it('returns every item in the order appended, across several appends', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems(items('a', 'b'));
        await session.addItems([assistantMessage('c')]);
        await session.addItems(items('d'));
        expect(await session.getItems()).toEqual([
          ...items('a', 'b'),
          assistantMessage('c'),
          ...items('d'),
        ]);
      });

      it('treats an empty append as a no-op', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems([]);
        expect(await session.getItems()).toEqual([]);
      });

      it('round-trips bytes, tag-like keys and non-ASCII text', async () => {
        const session = await harness.service.open(sessionId);
        const odd = {
          type: 'message',
          role: 'user',
          content: 'Grüße 会话 🙂',
          providerData: {
            $u8: 'not bytes',
            bytes: new Uint8Array([0, 1, 255]),
            nested: [{ $obj: 1 }],
          },
        } as unknown as AgentInputItem;
        await session.addItems([odd]);
        const [stored] = await session.getItems();
        expect(stored).toEqual(odd);
      });

      it('keeps sessions apart by session id and by tenant', async () => {
        const a = await harness.service.open(sessionId, { tenantId: 'tenant-a' });
        const b = await harness.service.open(sessionId, { tenantId: 'tenant-b' });
        const c = await harness.service.open(`${sessionId}-other`, { tenantId: 'tenant-a' });
        await a.addItems(items('for a'));
        await b.addItems(items('for b'));
        expect(texts(await a.getItems())).toEqual(['for a']);
        expect(texts(await b.getItems())).toEqual(['for b']);
        expect(await c.getItems()).toEqual([]);
      });

      it('sees the history written through another handle of the same session', async () => {
        const writer = await harness.service.open(sessionId);
        await writer.addItems(items('shared'));
        const reader = await harness.service.open(sessionId);
        expect(texts(await reader.getItems())).toEqual(['shared']);
      });
    });

    describe('ids compare byte for byte', () => {
      // Pairs that a PAD SPACE, case-insensitive or normalising comparison would merge.
      const pairs: Array<[string, string, string]> = [
        ['a trailing space', 'acme', 'acme '],
        ['case', 'acme', 'Acme'],
        ['Unicode normalisation (NFC vs NFD)', 'caf\u00e9', 'cafe\u0301'],
      ];
      const openPair = async (
        kind: 'tenant' | 'session',
        first: string,
        second: string,
      ): Promise<[EncryptedSession, EncryptedSession]> =>
        kind === 'tenant'
          ? [
              await harness.service.open(sessionId, { tenantId: first }),
              await harness.service.open(sessionId, { tenantId: second }),
            ]
          : [
              await harness.service.open(`${sessionId}-${first}`),
              await harness.service.open(`${sessionId}-${second}`),
            ];

      describe.each(['tenant', 'session'] as const)('%s ids', (kind) => {
        it.each(pairs)(
          'keeps ids differing only by %s apart through writes, reads, pops and clears',
          async (_, first, second) => {
            const [a, b] = await openPair(kind, first, second);
            await a.addItems(items('a1', 'a2'));
            await b.addItems(items('b1', 'b2'));
            expect(texts(await a.getItems())).toEqual(['a1', 'a2']);
            expect(texts(await b.getItems(5))).toEqual(['b1', 'b2']);

            expect(await b.popItem()).toEqual(userMessage('b2'));
            expect(texts(await a.getItems())).toEqual(['a1', 'a2']);

            await b.clearSession();
            expect(texts(await a.getItems())).toEqual(['a1', 'a2']);
            await a.addItems(items('a3'));
            expect(texts(await a.getItems(5))).toEqual(['a1', 'a2', 'a3']);
            expect(await b.getItems()).toEqual([]);

            await b.addItems(items('b3'));
            await a.clearSession();
            expect(texts(await b.getItems())).toEqual(['b3']);
            expect(await a.getItems()).toEqual([]);
          },
        );
      });
    });

    describe('getItems(limit)', () => {
      let session: EncryptedSession;
      beforeEach(async () => {
        session = await harness.service.open(sessionId);
        await session.addItems(items('1', '2', '3', '4', '5'));
      });

      it('returns the newest `limit` items in chronological order', async () => {
        expect(texts(await session.getItems(2))).toEqual(['4', '5']);
      });

      it('returns everything when limit exceeds the history', async () => {
        expect(texts(await session.getItems(50))).toEqual(['1', '2', '3', '4', '5']);
      });

      it('returns nothing for limit 0', async () => {
        expect(await session.getItems(0)).toEqual([]);
      });

      it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
        'rejects limit %s with InvalidArgumentError',
        async (limit) => {
          await expect(session.getItems(limit)).rejects.toBeInstanceOf(InvalidArgumentError);
        },
      );
    });

    describe('popItem', () => {
      it('removes and returns the newest item, one at a time', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems(items('a', 'b', 'c'));
        expect(await session.popItem()).toEqual(userMessage('c'));
        expect(await session.popItem()).toEqual(userMessage('b'));
        expect(texts(await session.getItems())).toEqual(['a']);
      });

      it('gives each concurrent popper a different item', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems(items('a', 'b', 'c', 'd'));
        const popped = await Promise.all([session.popItem(), session.popItem(), session.popItem()]);
        expect(texts(popped as AgentInputItem[]).sort()).toEqual(['b', 'c', 'd']);
        expect(texts(await session.getItems())).toEqual(['a']);
      });
    });

    describe('clearSession', () => {
      it('removes every item, and a later append starts a fresh history', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems(items('old 1', 'old 2'));
        await session.clearSession();
        expect(await session.getItems()).toEqual([]);
        await session.addItems(items('new'));
        expect(texts(await session.getItems())).toEqual(['new']);
      });

      it('destroys the data key the cleared items were sealed with', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems(items('secret'));
        const ref = { tenantId: 'default', sessionId };
        const before = await harness.storage.read(ref, (scope) => scope.dataKeys.findActive());
        await session.clearSession();
        const after = await harness.storage.read(ref, (scope) =>
          scope.dataKeys.findById(before!.dekId),
        );
        expect(after).toMatchObject({ state: 'destroyed', wrappedKey: Buffer.alloc(0) });
      });
    });

    describe('time to live', () => {
      it('hides expired items at once from reads and pops', async () => {
        let now = 1_700_000_000_000;
        const session = await openWithClock(sessionId, 60, () => now);
        await session.addItems(items('short-lived'));
        now += 61_000;
        expect(await session.getItems()).toEqual([]);
        expect(await session.getItems(1)).toEqual([]);
        expect(await session.popItem()).toBeUndefined();
      });

      it('returns the newest visible items when older ones expired', async () => {
        let now = 1_700_000_000_000;
        const expiring = await openWithClock(sessionId, 60, () => now);
        await expiring.addItems(items('old 1', 'old 2', 'old 3'));
        const lasting = await openWithClock(sessionId, null, () => now);
        await lasting.addItems(items('new 1', 'new 2'));
        now += 120_000;
        expect(texts(await lasting.getItems(3))).toEqual(['new 1', 'new 2']);
        expect(texts(await lasting.getItems())).toEqual(['new 1', 'new 2']);
      });

      it('keeps items that have not expired yet', async () => {
        let now = 1_700_000_000_000;
        const session = await openWithClock(sessionId, 60, () => now);
        await session.addItems(items('fresh'));
        now += 59_000;
        expect(texts(await session.getItems())).toEqual(['fresh']);
      });
    });

    describe('applyHistoryTransaction', () => {
      let session: EncryptedSession;
      beforeEach(async () => {
        session = await harness.service.open(sessionId);
      });
      const append = (operationId: string, ...list: string[]) =>
        session.applyHistoryTransaction({
          operationId,
          transaction: { type: 'append_items', items: items(...list) },
        });
      const replace = (operationId: string, expected: string[], replacement: string[]) =>
        session.applyHistoryTransaction({
          operationId,
          transaction: {
            type: 'replace_suffix',
            expectedSuffix: items(...expected),
            replacement: items(...replacement),
          },
        });

      it('appends items', async () => {
        await append('op-1', 'a', 'b');
        expect(texts(await session.getItems())).toEqual(['a', 'b']);
      });

      it('applies a repeated operation id with the same transaction only once', async () => {
        await append('op-1', 'a');
        await append('op-1', 'a');
        expect(texts(await session.getItems())).toEqual(['a']);
      });

      it('applies the same operation id once when retried concurrently', async () => {
        await Promise.all(Array.from({ length: 5 }, () => append('op-1', 'a', 'b')));
        expect(texts(await session.getItems())).toEqual(['a', 'b']);
      });

      it('refuses an operation id reused for a different transaction and changes nothing', async () => {
        await append('op-1', 'a');
        await expect(append('op-1', 'different')).rejects.toBeInstanceOf(HistoryConflictError);
        expect(texts(await session.getItems())).toEqual(['a']);
      });

      it('replaces a matching suffix', async () => {
        await session.addItems(items('a', 'b', 'c'));
        await replace('op-r', ['b', 'c'], ['summary']);
        expect(texts(await session.getItems())).toEqual(['a', 'summary']);
      });

      it('matches the suffix structurally, ignoring key order', async () => {
        await session.addItems([{ content: 'x', role: 'user' }]);
        await replace('op-r', ['x'], ['y']);
        expect(texts(await session.getItems())).toEqual(['y']);
      });

      it('refuses a suffix that no longer matches and changes nothing', async () => {
        await session.addItems(items('a', 'b'));
        await expect(replace('op-r', ['a', 'x'], ['summary'])).rejects.toBeInstanceOf(
          HistoryConflictError,
        );
        expect(texts(await session.getItems())).toEqual(['a', 'b']);
        // A failed transaction does not record its id: the corrected one can use it.
        await replace('op-r', ['b'], ['summary']);
        expect(texts(await session.getItems())).toEqual(['a', 'summary']);
      });

      it('refuses a suffix longer than the history', async () => {
        await session.addItems(items('a'));
        await expect(replace('op-r', ['z', 'a'], [])).rejects.toBeInstanceOf(HistoryConflictError);
        expect(texts(await session.getItems())).toEqual(['a']);
      });

      it('appends the replacement when the expected suffix is empty', async () => {
        await session.addItems(items('a'));
        await replace('op-r', [], ['b']);
        expect(texts(await session.getItems())).toEqual(['a', 'b']);
      });

      it.each([
        [{ operationId: '', transaction: { type: 'append_items', items: [] } }],
        [{ operationId: 'op', transaction: { type: 'drop_everything' } }],
        [{ operationId: 'op', transaction: { type: 'append_items', items: [], extra: 1 } }],
        [{ operationId: 'op', transaction: { type: 'append_items', items: [1n] } }],
      ])('rejects invalid arguments before changing anything (%#)', async (args) => {
        await session.addItems(items('kept'));
        await expect(session.applyHistoryTransaction(args as never)).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        expect(texts(await session.getItems())).toEqual(['kept']);
      });

      it('forgets applied operation ids when the session is cleared', async () => {
        await append('op-1', 'a');
        await session.clearSession();
        await append('op-1', 'a');
        expect(texts(await session.getItems())).toEqual(['a']);
      });
    });

    describe('concurrent writers in one process', () => {
      it('loses nothing and keeps each batch whole and in order', async () => {
        const session = await harness.service.open(sessionId);
        const writers = Array.from({ length: 20 }, (_, w) =>
          session.addItems(items(...Array.from({ length: 5 }, (_, i) => `w${w}-${i}`))),
        );
        await Promise.all(writers);
        const all = texts(await session.getItems());
        expect(all).toHaveLength(100);
        for (let w = 0; w < 20; w++) {
          const start = all.indexOf(`w${w}-0`);
          expect(all.slice(start, start + 5)).toEqual(
            Array.from({ length: 5 }, (_, i) => `w${w}-${i}`),
          );
        }
      });
    });

    describe('storage units of work, bound to one session', () => {
      it('gives read() a scope with read methods only', async () => {
        const methods = await harness.storage.read(refOf(sessionId), async (scope) =>
          [scope.session, scope.items, scope.dataKeys, scope.historyOperations].map((repository) =>
            Object.keys(repository).toSorted(),
          ),
        );
        expect(methods).toEqual([
          ['find'],
          ['listVisible', 'listVisiblePage'],
          ['findActive', 'findById', 'listAll', 'maxGeneration'],
          ['find'],
        ]);
      });

      it("finds another session's data key by id only in that session's unit of work", async () => {
        await (await harness.service.open(sessionId)).addItems(items('a'));
        const own = refOf(sessionId);
        const { dekId } = (await harness.storage.read(own, (scope) =>
          scope.dataKeys.findActive(),
        ))!;
        const elsewhere = await harness.storage.read(refOf(`${sessionId}-other`), (scope) =>
          scope.dataKeys.findById(dekId),
        );
        expect(elsewhere).toBeUndefined();
        expect(
          await harness.storage.read(own, (scope) => scope.dataKeys.findById(dekId)),
        ).toMatchObject({ dekId, sessionId });
      });

      it('refuses a record naming another session than the unit of work, writing nothing', async () => {
        const other = refOf(`${sessionId}-other`);
        const outcome = harness.storage.transaction(refOf(sessionId), (scope) =>
          scope.session.insertIfAbsent(newSessionRecord(other)),
        );
        await expect(outcome).rejects.toThrow(/another session/);
        expect(await harness.storage.read(other, (scope) => scope.session.find())).toBeUndefined();
      });
    });

    describe('data key generations', () => {
      it('starts a new generation after maxItemsPerDataKey items and still reads the old ones', async () => {
        await harness.close();
        harness = await createHarness({ keyRing: { maxItemsPerDataKey: 4 } });
        const session = await harness.service.open(sessionId);
        for (let batch = 0; batch < 4; batch++) {
          await session.addItems(items(`${batch}a`, `${batch}b`, `${batch}c`));
        }
        expect(await session.getItems()).toHaveLength(12);
        const active = await harness.storage.read({ tenantId: 'default', sessionId }, (scope) =>
          scope.dataKeys.findActive(),
        );
        expect(active!.generation).toBeGreaterThanOrEqual(3);
      });

      it('keeps every item readable when concurrent writers cross generation boundaries', async () => {
        await harness.close();
        harness = await createHarness({ keyRing: { maxItemsPerDataKey: 4 } });
        const session = await harness.service.open(sessionId);
        await Promise.all(
          Array.from({ length: 10 }, (_, w) => session.addItems(items(`${w}a`, `${w}b`, `${w}c`))),
        );
        const all = texts(await session.getItems());
        expect(all).toHaveLength(30);
        expect(new Set(all).size).toBe(30);
      });
    });

    describe('rotation policy', () => {
      it('rotates a key that sealed rotationMaxItems items at the next write; a batch may cross the mark', async () => {
        await harness.close();
        harness = await createHarness({ keyRing: { rotationMaxItems: 4 } });
        const session = await harness.service.open(sessionId);
        await session.addItems(items('a', 'b', 'c'));
        // 3 sealed, below the mark: this batch of 6 still goes to generation 1.
        await session.addItems(items('d', 'e', 'f', 'g', 'h', 'i'));
        expect(await keysOf(sessionId)).toEqual([[1, 'active']]);
        await session.addItems(items('j'));
        expect(await keysOf(sessionId)).toEqual([
          [1, 'retiring'],
          [2, 'active'],
        ]);
        expect(texts(await session.getItems())).toEqual('abcdefghij'.split(''));
      });

      it('rotates a used key once it is rotationMaxAgeDays old (default 90), not a day before', async () => {
        const session = await harness.service.open(sessionId);
        await session.addItems(items('a'));
        const later = (days: number) =>
          openWithClock(sessionId, null, () => Date.now() + days * DAY_MS);
        await (await later(89)).addItems(items('b'));
        expect(await keysOf(sessionId)).toEqual([[1, 'active']]);
        await (await later(90)).addItems(items('c'));
        expect(await keysOf(sessionId)).toEqual([
          [1, 'retiring'],
          [2, 'active'],
        ]);
        expect(texts(await session.getItems())).toEqual(['a', 'b', 'c']);
      });

      it('never rotates a key that sealed nothing, however old', async () => {
        const session = await openWithClock(sessionId, null, () => Date.now() + 400 * DAY_MS);
        // The first write creates generation 1 (created now, by the real clock) and uses it.
        await session.addItems(items('a'));
        expect(await keysOf(sessionId)).toEqual([[1, 'active']]);
      });

      it('keeps a key whatever its age when rotationMaxAgeDays is null', async () => {
        await harness.close();
        harness = await createHarness({ keyRing: { rotationMaxAgeDays: null } });
        const session = await harness.service.open(sessionId);
        await session.addItems(items('a'));
        const muchLater = await openWithClock(sessionId, null, () => Date.now() + 1000 * DAY_MS);
        await muchLater.addItems(items('b'));
        expect(await keysOf(sessionId)).toEqual([[1, 'active']]);
      });
    });
  });
}
