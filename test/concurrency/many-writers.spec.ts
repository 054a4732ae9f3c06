import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptedSessionService, EnvKeyProvider, KeyRing } from '../../src/index.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import {
  openThrowawayStore,
  storeBackendsUnderTest,
  type OpenThrowawayStore,
  type StoreLocation,
} from '../support/throwaway-store.js';
import {
  startWriters as startWriterProcesses,
  type WriterProcess,
} from '../support/writer-process.js';

const WRITERS = 4;
const ITEMS_PER_WRITER = 2_500;
const BATCH_SIZE = 5;
const OPERATION_ROUNDS = 20;
const ITEMS_PER_OPERATION = 3;
/** Longest a child may take to start or to answer one command. */
const CHILD_REPLY_TIMEOUT_MS = 100_000;

/** Starts `WRITERS` processes on one session and waits until each has opened it. */
function startWriters(
  library: CompiledLibrary,
  backend: StoreLocation,
  rootKey: string,
  sessionId: string,
): Promise<WriterProcess[]> {
  return startWriterProcesses(
    WRITERS,
    (writer) => ({ entryUrl: library.entryUrl, backend, rootKey, sessionId, writer }),
    CHILD_REPLY_TIMEOUT_MS,
  );
}

/** The items every process appends under the operation id of `round`. */
const operationItems = (round: number) =>
  Array.from({ length: ITEMS_PER_OPERATION }, (_, k) => ({
    role: 'user' as const,
    content: `op${round}-${k}`,
  }));

const contentOf = (item: AgentInputItem) => (item as { content: string }).content;

function openParentSession(target: OpenThrowawayStore, rootKey: string, sessionId: string) {
  const keyRing = new KeyRing(
    target.storage,
    new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
  );
  return new EncryptedSessionService(target.storage, keyRing).open(sessionId);
}

const BACKENDS = await storeBackendsUnderTest();

let library: CompiledLibrary;
beforeAll(() => {
  library = compileLibrary();
}, 60_000);
afterAll(() => library?.dispose());

for (const { name, type, available } of BACKENDS) {
  describe.skipIf(!available)(`${WRITERS} writer processes on ${name}`, () => {
    let target: OpenThrowawayStore;
    // Every process, parent included, must unwrap the same data keys.
    const rootKey = newRootKeyEntry();

    beforeAll(async () => {
      target = await openThrowawayStore(type, { busyTimeoutMs: 30_000 });
    });
    afterAll(async () => {
      await target?.dispose();
    });

    it(`appending ${ITEMS_PER_WRITER} items each in batches of ${BATCH_SIZE} to one session loses, duplicates and reorders nothing`, async () => {
      const sessionId = `many-writers-${randomUUID()}`;
      const writers = await startWriters(library, target.location, rootKey, sessionId);
      try {
        // All children are ready: the commands leave together, so the appends overlap.
        const started = performance.now();
        for (const writer of writers)
          writer.send({ cmd: 'append', count: ITEMS_PER_WRITER, batchSize: BATCH_SIZE });
        const results = await Promise.all(writers.map((writer) => writer.expectReply('appended')));
        const seconds = (performance.now() - started) / 1000;
        const total = WRITERS * ITEMS_PER_WRITER;
        process.stderr.write(
          `[many-writers] ${name}: ${total} items from ${WRITERS} processes in ${seconds.toFixed(1)} s (${Math.round(total / seconds)} items/s)\n`,
        );

        // A retry after an ambiguous failure could duplicate a batch; with no faults there
        // must be nothing to retry.
        expect(results.map((result) => result.retryCodes)).toEqual(writers.map(() => []));

        // getItems() opens every item: one that does not authenticate throws here.
        const session = await openParentSession(target, rootKey, sessionId);
        const contents = (await session.getItems()).map(contentOf);
        // How often the stored order switches writer: shows the appends really overlapped.
        const switches = contents.filter(
          (content, index) =>
            index > 0 && content.split('-')[0] !== contents[index - 1].split('-')[0],
        ).length;
        process.stderr.write(
          `[many-writers] ${name}: writer switches in stored order: ${switches}\n`,
        );
        expect(contents).toHaveLength(total);
        expect(new Set(contents).size).toBe(total);
        const expectedPerWriter = Array.from({ length: ITEMS_PER_WRITER }, (_, n) => n);
        for (let writer = 0; writer < WRITERS; writer++) {
          const prefix = `w${writer}-`;
          const written = contents
            .filter((content) => content.startsWith(prefix))
            .map((content) => Number(content.slice(prefix.length)));
          expect(written, `items of writer ${writer}, in stored order`).toEqual(expectedPerWriter);
        }
      } finally {
        await Promise.all(writers.map((writer) => writer.stop()));
      }
    }, 120_000);

    it(`the same operationId applied by ${WRITERS} processes at once takes effect exactly once`, async () => {
      const sessionId = `operations-${randomUUID()}`;
      const writers = await startWriters(library, target.location, rootKey, sessionId);
      const retryCodes: string[] = [];
      try {
        for (let round = 0; round < OPERATION_ROUNDS; round++) {
          // Each round is a barrier: all processes race on one id, then the next id.
          const operationId = `op-${round}-${randomUUID()}`;
          for (const writer of writers)
            writer.send({ cmd: 'apply', operationId, items: operationItems(round) });
          for (const reply of await Promise.all(
            writers.map((writer) => writer.expectReply('applied')),
          )) {
            retryCodes.push(...reply.retryCodes);
          }
        }
      } finally {
        await Promise.all(writers.map((writer) => writer.stop()));
      }
      if (retryCodes.length > 0) {
        // Repeating an operation id is the documented way to retry, so these are safe; shown
        // because they mean the backend pushed back under contention.
        process.stderr.write(
          `[many-writers] ${name}: operation retries after retryable errors: ${retryCodes.join(', ')}\n`,
        );
      }

      const session = await openParentSession(target, rootKey, sessionId);
      const expected = Array.from({ length: OPERATION_ROUNDS }, (_, round) =>
        operationItems(round).map((item) => item.content),
      ).flat();
      expect((await session.getItems()).map(contentOf)).toEqual(expected);
    }, 120_000);
  });
}
