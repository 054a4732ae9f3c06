import { performance } from 'node:perf_hooks';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import { EncryptedSessionService, type EncryptedSession } from '../src/sessions/index.js';
import { newRootKeyEntry } from '../test/support/test-keys.js';
import { openStoreAt, type OpenStore } from '../test/support/throwaway-store.js';
import {
  startWriters,
  writerItemContent,
  type WriterProcess,
} from '../test/support/writer-process.js';
import type { BenchBackend } from './args.js';
import { createBenchStore } from './stores.js';
import { CONTENT_LENGTH } from './workload.js';

/** Items per `addItems` call of a many-writer process. */
export const MANY_WRITER_BATCH_SIZE = 5;
/** Items each writer appends, untimed, to a session of its own before the start signal. */
const MANY_WRITER_WARM_ITEMS = 200;
/** The session every writer appends to. */
const SHARED_SESSION_ID = 'bench-shared-session';
/** The library the writers import: the one this benchmark was compiled with. */
const LIBRARY_ENTRY_URL = new URL('../src/index.js', import.meta.url).href;
/** A writer that does not start, warm up or finish its appends in this long fails the run. */
const WRITER_TIMEOUT_MS = 10 * 60 * 1000;

/** What the many-writer phase measured. */
export interface ManyWritersOutcome {
  readonly writers: number;
  readonly itemsPerWriter: number;
  /** Items appended in all. */
  readonly items: number;
  /** From the start signal to the last writer's `appended`. */
  readonly wallMs: number;
  /** Each writer's own time from its start signal to its last append, in writer order. */
  readonly writerMs: readonly number[];
  /** Highest peak RSS of any writer process. */
  readonly peakWriterRssMb: number;
}

/** A result that is wrong, not slow (the caller turns it into exit status 1). */
export type Verify = (condition: boolean, message: string) => asserts condition;

/**
 * Checks the shared session after the run: exactly `writers * perWriter` items readable and
 * stored, each writer's items exactly once, with their content and in the order it appended
 * them.
 */
async function verifySharedSession(
  store: OpenStore,
  session: EncryptedSession,
  writers: number,
  perWriter: number,
  verify: Verify,
): Promise<void> {
  const total = writers * perWriter;
  const ref = { tenantId: session.tenantId, sessionId: SHARED_SESSION_ID };
  const rows = await store.tamper.countItems(ref);
  verify(
    rows === total,
    `many writers: the shared session stores ${rows} items, expected ${total}`,
  );
  const items = await session.getItems();
  verify(
    items.length === total,
    `many writers: getItems() returned ${items.length} items, expected ${total}`,
  );
  const seen = new Uint8Array(total);
  const nextOf = Array.from({ length: writers }, () => 0);
  items.forEach((item, position) => {
    const { role, content } = item as { role?: unknown; content?: unknown };
    const [, writer = NaN, n = NaN] =
      typeof content === 'string' ? (/^w(\d+)-(\d+)\./.exec(content)?.map(Number) ?? []) : [];
    verify(
      role === 'user' &&
        writer < writers &&
        n < perWriter &&
        content === writerItemContent(writer, n, CONTENT_LENGTH),
      `many writers: item at position ${position} is not an item of the workload`,
    );
    const index = writer * perWriter + n;
    verify(seen[index] === 0, `many writers: writer ${writer}'s item #${n} is stored twice`);
    seen[index] = 1;
    verify(
      nextOf[writer] === n,
      `many writers: writer ${writer}'s item #${n} comes before its item #${nextOf[writer]} (out of order)`,
    );
    nextOf[writer]++;
  });
}

/**
 * `writers` processes (`test/support/many-writers.child.mjs`) append `perWriter` items each
 * (batches of {@link MANY_WRITER_BATCH_SIZE}, content padded to the workload's
 * `CONTENT_LENGTH`) to ONE session of a fresh store, all started at the same moment; then the
 * result is checked. Every process opens its own connections and key ring from the same root
 * key, as replicas of one service would.
 */
export async function runManyWriters(
  backend: BenchBackend,
  writers: number,
  perWriter: number,
  verify: Verify,
  log: (message: string) => void,
): Promise<ManyWritersOutcome> {
  const store = await createBenchStore(backend);
  let started: WriterProcess[] = [];
  let opened: OpenStore | undefined;
  try {
    opened = await openStoreAt(store.location, {
      migrate: true,
      poolSize: 2,
      busyTimeoutMs: 30_000,
    });
    const rootKey = newRootKeyEntry();
    const keyRing = new KeyRing(
      opened.storage,
      new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
    );
    const service = new EncryptedSessionService(opened.storage, keyRing);
    const session = await service.open(SHARED_SESSION_ID, { ttlSeconds: null });
    // Generation 1 of the data key exists before any writer starts: the timed part is appends.
    await keyRing.keyForWrite({ tenantId: session.tenantId, sessionId: SHARED_SESSION_ID }, null);

    log(`many writers: starting ${writers} processes`);
    started = await startWriters(
      writers,
      (writer) => ({
        entryUrl: LIBRARY_ENTRY_URL,
        backend: store.location,
        rootKey,
        sessionId: SHARED_SESSION_ID,
        writer,
        contentLength: CONTENT_LENGTH,
      }),
      WRITER_TIMEOUT_MS,
    );
    const batchSize = MANY_WRITER_BATCH_SIZE;
    const warmUp = { cmd: 'warm-up', count: MANY_WRITER_WARM_ITEMS, batchSize } as const;
    for (const child of started) child.send(warmUp);
    await Promise.all(started.map((child) => child.expectReply('warm')));

    log(`many writers: ${writers} x ${perWriter} items into one session`);
    const append = { cmd: 'append', count: perWriter, batchSize } as const;
    const go = performance.now();
    for (const child of started) child.send(append);
    const appended = await Promise.all(
      started.map(async (child) => ({
        ...(await child.expectReply('appended')),
        at: performance.now(),
      })),
    );
    const wallMs = Math.max(...appended.map((done) => done.at)) - go;
    appended.forEach(({ retryCodes }, writer) => {
      if (retryCodes.length > 0) {
        // Each retry may have duplicated a batch and was timed as appending: not a clean run.
        throw new Error(
          `many-writer process ${writer} repeated appends after retryable errors: ${retryCodes.join(', ')}`,
        );
      }
    });
    const codes = await Promise.all(started.map((child) => child.stop()));
    const failed = codes.findIndex((code) => code !== 0);
    if (failed >= 0) {
      throw new Error(
        `many-writer process ${failed} finished its appends but then exited with ${codes[failed]}`,
      );
    }

    log('many writers: checking the shared session');
    await verifySharedSession(opened, session, writers, perWriter, verify);
    return {
      writers,
      itemsPerWriter: perWriter,
      items: writers * perWriter,
      wallMs,
      writerMs: appended.map((done) => done.elapsedMs),
      peakWriterRssMb: Math.max(...appended.map((done) => done.maxRssKiB)) / 1024,
    };
  } finally {
    await Promise.allSettled(started.map((child) => child.stop()));
    await opened?.close().catch(() => undefined);
    await store.remove();
  }
}
