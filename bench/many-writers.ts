import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import { EncryptedSessionService } from '../src/sessions/index.js';
import type { BenchBackend } from './args.js';
import {
  SHARED_SESSION_ID,
  SHARED_TENANT_ID,
  WRITER_CONFIG_VARIABLE,
  type WriterConfig,
} from './many-writers-config.js';
import { createThrowawayStore, openStoreAt, type OpenStore } from './stores.js';
import { isContentOf } from './workload.js';

/** What the many-writer phase measured. */
export interface ManyWritersOutcome {
  readonly writers: number;
  readonly itemsPerWriter: number;
  /** Items appended in all. */
  readonly items: number;
  /** From the start signal to the last writer's `done`. */
  readonly wallMs: number;
  /** Each writer's own time from `go` to its last append, in writer order. */
  readonly writerMs: readonly number[];
  /** Highest peak RSS of any writer process. */
  readonly peakWriterRssMb: number;
}

/** A result that is wrong, not slow (the caller turns it into exit status 1). */
export type Verify = (condition: boolean, message: string) => asserts condition;

/** The child script, compiled next to this file by the same `tsc` run. */
const CHILD_SCRIPT = fileURLToPath(new URL('./many-writers-child.js', import.meta.url));
/** A writer that is not done after this long is stopped and the run fails. */
const WRITER_TIMEOUT_MS = 10 * 60 * 1000;

interface Writer {
  readonly process: ChildProcess;
  /** Sends the start signal. */
  go(): void;
  /** The next protocol line from its stdout (rejects when it exits first). */
  nextLine(): Promise<string>;
  /** Resolves with the exit status, or the signal that ended it. */
  readonly exited: Promise<number | string>;
}

function startWriter(config: WriterConfig): Writer {
  const child = spawn(process.execPath, [CHILD_SCRIPT], {
    env: { ...process.env, [WRITER_CONFIG_VARIABLE]: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (error) => resolve(`not started: ${error.message}`));
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    process: child,
    exited,
    go: () => void child.stdin.write('go\n'),
    async nextLine() {
      const next = await lines.next();
      if (next.done) {
        const code = await exited;
        throw new Error(
          `many-writer process ${config.writer} exited (${typeof code === 'number' ? `status ${code}` : code}) before finishing; see its error above, if any`,
        );
      }
      return next.value;
    },
  };
}

/** Stops writers still running (only the processes this phase started). */
function stopWriters(writers: readonly Writer[]): void {
  for (const { process: child } of writers) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`many-writer phase: ${what} took over ${WRITER_TIMEOUT_MS} ms`)),
      WRITER_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Checks the shared session after the run: exactly `writers * perWriter` items readable and
 * stored, each workload item exactly once and with its content, each writer's items in the
 * order it appended them.
 */
async function verifySharedSession(
  store: OpenStore,
  service: EncryptedSessionService,
  writers: number,
  perWriter: number,
  verify: Verify,
): Promise<void> {
  const total = writers * perWriter;
  const ref = { tenantId: SHARED_TENANT_ID, sessionId: SHARED_SESSION_ID };
  const rows = await store.countRows(ref);
  verify(
    rows === total,
    `many writers: the shared session stores ${rows} items, expected ${total}`,
  );
  const session = await service.open(SHARED_SESSION_ID, { tenantId: SHARED_TENANT_ID });
  const items = await session.getItems();
  verify(
    items.length === total,
    `many writers: getItems() returned ${items.length} items, expected ${total}`,
  );
  const seen = new Uint8Array(total);
  const nextOf = Array.from({ length: writers }, (_, writer) => writer * perWriter);
  items.forEach((item, position) => {
    const { role, content } = item as { role?: unknown; content?: unknown };
    const index =
      typeof content === 'string' ? Number(/^item (\d+): /.exec(content)?.[1] ?? NaN) : NaN;
    verify(
      role === 'user' &&
        Number.isSafeInteger(index) &&
        index < total &&
        isContentOf(index, content),
      `many writers: item at position ${position} is not an item of the workload`,
    );
    verify(seen[index] === 0, `many writers: item #${index} is stored twice`);
    seen[index] = 1;
    const writer = Math.floor(index / perWriter);
    verify(
      nextOf[writer] === index,
      `many writers: writer ${writer}'s item #${index} comes before its item #${nextOf[writer]} (out of order)`,
    );
    nextOf[writer]++;
  });
}

/**
 * `writers` processes append `perWriter` items each (batches of {@link MANY_WRITER_BATCH_SIZE})
 * to ONE session of a fresh store, all started at the same moment; then the result is checked.
 * Every process opens its own connections and key ring from the same root key, as replicas of
 * one service would.
 */
export async function runManyWriters(
  backend: BenchBackend,
  writers: number,
  perWriter: number,
  verify: Verify,
  log: (message: string) => void,
): Promise<ManyWritersOutcome> {
  const store = await createThrowawayStore(backend);
  const started: Writer[] = [];
  let opened: OpenStore | undefined;
  try {
    opened = await openStoreAt(store.location, {
      migrate: true,
      poolSize: 2,
      busyTimeoutMs: 30_000,
    });
    const rootKey = randomBytes(32).toString('base64');
    const keyRing = new KeyRing(
      opened.storage,
      new EnvKeyProvider({ keys: `k1:${rootKey}`, activeKeyId: 'k1' }),
    );
    const service = new EncryptedSessionService(opened.storage, keyRing);
    await service.open(SHARED_SESSION_ID, { tenantId: SHARED_TENANT_ID, ttlSeconds: null });
    // Generation 1 of the data key exists before any writer starts: the timed part is appends.
    await keyRing.keyForWrite({ tenantId: SHARED_TENANT_ID, sessionId: SHARED_SESSION_ID }, null);

    log(`many writers: starting ${writers} processes`);
    for (let writer = 0; writer < writers; writer++) {
      started.push(
        startWriter({
          location: store.location,
          rootKey,
          writer,
          firstIndex: writer * perWriter,
          count: perWriter,
        }),
      );
    }
    const ready = await withTimeout(
      Promise.all(started.map((child) => child.nextLine())),
      'starting the writers',
    );
    ready.forEach((line, writer) =>
      verify(line === 'ready', `many-writer process ${writer} said '${line}' instead of 'ready'`),
    );

    log(`many writers: ${writers} x ${perWriter} items into one session`);
    const go = performance.now();
    for (const child of started) child.go();
    const writerMs = await withTimeout(
      Promise.all(
        started.map(async (child, writer) => {
          const line = await child.nextLine();
          const match = /^done (\S+) (\d+)$/.exec(line);
          verify(match !== null, `many-writer process ${writer} said '${line}' instead of 'done'`);
          return { ms: Number(match[1]), rssKiB: Number(match[2]), at: performance.now() };
        }),
      ),
      'appending',
    );
    const wallMs = Math.max(...writerMs.map((done) => done.at)) - go;
    const codes = await withTimeout(
      Promise.all(started.map((child) => child.exited)),
      'closing the writers',
    );
    const failed = codes.findIndex((code) => code !== 0);
    if (failed >= 0) {
      throw new Error(
        `many-writer process ${failed} finished its appends but then exited with ${codes[failed]}; see its error above`,
      );
    }

    log('many writers: checking the shared session');
    await verifySharedSession(opened, service, writers, perWriter, verify);
    return {
      writers,
      itemsPerWriter: perWriter,
      items: writers * perWriter,
      wallMs,
      writerMs: writerMs.map((done) => done.ms),
      peakWriterRssMb: Math.max(...writerMs.map((done) => done.rssKiB)) / 1024,
    };
  } finally {
    stopWriters(started);
    await Promise.allSettled(started.map((child) => child.exited));
    await opened?.close().catch(() => undefined);
    await store.remove();
  }
}
