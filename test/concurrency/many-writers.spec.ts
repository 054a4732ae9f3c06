import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { AgentInputItem } from '@openai/agents-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EncryptedSessionService,
  EnvKeyProvider,
  KeyRing,
  TypeOrmSessionStorage,
  dialectFor,
  openSqliteDataSource,
  runSessionMigrations,
  type SessionStorage,
} from '../../src/index.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import { REDIS_URL, createRedisTestStorage, redisAvailable } from '../support/redis-support.js';
import { requireService } from '../support/service-availability.js';
import { createMigratedTestDatabase, sqlServerUp } from '../support/sql-server-support.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const CHILD_SCRIPT = resolve(import.meta.dirname, 'many-writers.child.mjs');
const REPLY_MARK = '@@nes ';

const WRITERS = 4;
const ITEMS_PER_WRITER = 2_500;
const BATCH_SIZE = 5;
const OPERATION_ROUNDS = 20;
const ITEMS_PER_OPERATION = 3;
/** Longest a child may take to start or to answer one command. */
const CHILD_REPLY_TIMEOUT_MS = 100_000;

/** How a child reaches the backend (the JSON it gets in NES_CHILD_CONFIG). */
type ChildBackend =
  | { type: 'sqlite'; path: string }
  | { type: 'postgres' | 'mysql'; url: string }
  | { type: 'redis'; url: string; keyPrefix: string };

type ChildReply =
  | { event: 'ready'; pid: number }
  | { event: 'appended'; retryCodes: string[]; elapsedMs: number }
  | { event: 'applied'; operationId: string; retryCodes: string[] }
  | { event: 'error'; name: string; code?: string; message: string; stack: string };

/** A backend for one describe block: what the children connect to, and the parent's own view. */
interface BackendUnderTest {
  readonly childBackend: ChildBackend;
  /** The parent's storage over the same data, for reading back what the children wrote. */
  readonly storage: SessionStorage;
  dispose(): Promise<void>;
}

/** One writer process, driven line by line over stdin/stdout. */
class WriterProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly replies: ChildReply[] = [];
  private waiter: ((reply: ChildReply | Error) => void) | undefined;
  private exitError: Error | undefined;
  private stderr = '';

  constructor(config: Record<string, unknown>) {
    this.child = spawn(process.execPath, [CHILD_SCRIPT], {
      env: { ...process.env, NES_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      // Keep the tail: it explains a crash.
      this.stderr = (this.stderr + chunk).slice(-8_000);
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (line.startsWith(REPLY_MARK)) this.deliver(JSON.parse(line.slice(REPLY_MARK.length)));
    });
    this.child.on('exit', (code, signal) => {
      this.exitError = new Error(
        `writer process exited (code ${code}, signal ${signal}) before replying; stderr:\n${this.stderr}`,
      );
      this.deliver(this.exitError);
    });
  }

  private deliver(reply: ChildReply | Error): void {
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter(reply);
    } else if (!(reply instanceof Error)) {
      this.replies.push(reply);
    }
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** The next reply; a child that crashed or hangs fails the test with its stderr. */
  nextReply(): Promise<ChildReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.exitError) return Promise.reject(this.exitError);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`writer process did not reply in time; stderr:\n${this.stderr}`));
      }, CHILD_REPLY_TIMEOUT_MS);
      this.waiter = (reply) => {
        clearTimeout(timer);
        if (reply instanceof Error) reject(reply);
        else resolvePromise(reply);
      };
    });
  }

  /** The next reply, which must be `event`; an `error` reply fails with the child's error. */
  async expectReply<E extends ChildReply['event']>(
    event: E,
  ): Promise<Extract<ChildReply, { event: E }>> {
    const reply = await this.nextReply();
    if (reply.event !== event) {
      const detail =
        reply.event === 'error' ? `${reply.name} ${reply.code ?? ''}: ${reply.stack}` : '';
      throw new Error(`expected '${event}' from the writer, got '${reply.event}' ${detail}`);
    }
    return reply as Extract<ChildReply, { event: E }>;
  }

  /** Asks the child to close its storage and exit; kills it if it does not. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((done) => this.child.once('exit', () => done()));
    this.send({ cmd: 'exit' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Starts `WRITERS` processes on one session and waits until each has opened it. */
async function startWriters(
  library: CompiledLibrary,
  backend: ChildBackend,
  rootKey: string,
  sessionId: string,
): Promise<WriterProcess[]> {
  const writers = Array.from(
    { length: WRITERS },
    (_, writer) =>
      new WriterProcess({ entryUrl: library.entryUrl, backend, rootKey, sessionId, writer }),
  );
  try {
    await Promise.all(writers.map((writer) => writer.expectReply('ready')));
  } catch (error) {
    await Promise.all(writers.map((writer) => writer.stop()));
    throw error;
  }
  return writers;
}

/** The items every process appends under the operation id of `round`. */
const operationItems = (round: number) =>
  Array.from({ length: ITEMS_PER_OPERATION }, (_, k) => ({
    role: 'user',
    content: `op${round}-${k}`,
  }));

const contentOf = (item: AgentInputItem) => (item as { content: string }).content;

function openParentSession(target: BackendUnderTest, rootKey: string, sessionId: string) {
  const keyRing = new KeyRing(
    target.storage,
    new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
  );
  return new EncryptedSessionService(target.storage, keyRing).open(sessionId);
}

async function sqliteBackend(): Promise<BackendUnderTest> {
  const directory = mkdtempSync(join(tmpdir(), 'nes-many-writers-'));
  const path = join(directory, 'sessions.sqlite');
  const dataSource = await openSqliteDataSource({ path, busyTimeoutMs: 30_000 });
  await runSessionMigrations(dataSource, dialectFor(dataSource));
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  return {
    childBackend: { type: 'sqlite', path },
    storage,
    async dispose() {
      await storage.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function sqlServerBackend(type: 'postgres' | 'mysql'): Promise<BackendUnderTest> {
  const database = await createMigratedTestDatabase(type, 2);
  return {
    childBackend: { type, url: database.database.url },
    storage: database.newStorage(),
    dispose: () => database.dispose(),
  };
}

async function redisBackend(): Promise<BackendUnderTest> {
  const redis = await createRedisTestStorage();
  return {
    childBackend: { type: 'redis', url: REDIS_URL, keyPrefix: redis.keyPrefix },
    storage: redis.storage,
    dispose: () => redis.cleanup(),
  };
}

const BACKENDS: Array<{
  name: string;
  available: boolean;
  create: () => Promise<BackendUnderTest>;
}> = [
  { name: 'sqlite', available: true, create: sqliteBackend },
  {
    name: 'postgres',
    available: await sqlServerUp('postgres'),
    create: () => sqlServerBackend('postgres'),
  },
  {
    name: 'mariadb',
    available: await sqlServerUp('mysql'),
    create: () => sqlServerBackend('mysql'),
  },
  {
    name: 'redis',
    available: requireService(
      'Redis',
      await redisAvailable(),
      `start it with: redis-server --daemonize yes (or set NES_TEST_REDIS_URL)`,
    ),
    create: redisBackend,
  },
];

let library: CompiledLibrary;
beforeAll(() => {
  library = compileLibrary();
}, 60_000);
afterAll(() => library?.dispose());

for (const { name, available, create } of BACKENDS) {
  describe.skipIf(!available)(`${WRITERS} writer processes on ${name}`, () => {
    let target: BackendUnderTest;
    // Every process, parent included, must unwrap the same data keys.
    const rootKey = newRootKeyEntry();

    beforeAll(async () => {
      target = await create();
    });
    afterAll(async () => {
      await target?.dispose();
    });

    it(`appending ${ITEMS_PER_WRITER} items each in batches of ${BATCH_SIZE} to one session loses, duplicates and reorders nothing`, async () => {
      const sessionId = `many-writers-${randomUUID()}`;
      const writers = await startWriters(library, target.childBackend, rootKey, sessionId);
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
      const writers = await startWriters(library, target.childBackend, rootKey, sessionId);
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
