/**
 * One writer of the many-writer phase (started by `many-writers.ts`, never by hand): opens the
 * shared store, warms up on a session of its own, loads the shared session's data key, says
 * `ready`, waits for `go`, appends its items to the shared session in batches and says `done`.
 * stdout carries only the protocol lines (see `many-writers-config.ts`); errors go to stderr
 * and exit status 1.
 */
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { AgentInputItem } from '@openai/agents-core';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import { EncryptedSessionService, type EncryptedSession } from '../src/sessions/index.js';
import { installBenchLogger } from './bench-logger.js';
import {
  MANY_WRITER_BATCH_SIZE,
  MANY_WRITER_WARM_ITEMS,
  SHARED_SESSION_ID,
  SHARED_TENANT_ID,
  WRITER_CONFIG_VARIABLE,
  type WriterConfig,
} from './many-writers-config.js';
import { openStoreAt } from './stores.js';
import { itemOf } from './workload.js';

/** Appends workload items `from .. from + count - 1` in batches; resolves when all are stored. */
async function appendRange(session: EncryptedSession, from: number, count: number): Promise<void> {
  for (let start = from; start < from + count; start += MANY_WRITER_BATCH_SIZE) {
    const batch: AgentInputItem[] = [];
    const end = Math.min(start + MANY_WRITER_BATCH_SIZE, from + count);
    for (let index = start; index < end; index++) batch.push(itemOf(index));
    await session.addItems(batch);
  }
}

async function main(): Promise<void> {
  installBenchLogger();
  // stdout is the protocol channel: any stray library logging goes to stderr.
  console.log = console.info = console.debug = console.error;
  const raw = process.env[WRITER_CONFIG_VARIABLE];
  if (!raw) throw new Error(`${WRITER_CONFIG_VARIABLE} is not set: this is started by the bench`);
  const config = JSON.parse(raw) as WriterConfig;
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

  const store = await openStoreAt(config.location, {
    migrate: false,
    poolSize: 2,
    busyTimeoutMs: 30_000,
  });
  try {
    const keyRing = new KeyRing(
      store.storage,
      new EnvKeyProvider({ keys: `k1:${config.rootKey}`, activeKeyId: 'k1' }),
    );
    const service = new EncryptedSessionService(store.storage, keyRing);
    // Warm-up (JIT, connections, statement caches) on a session nobody else writes.
    const warm = await service.open(`bench-warm-${config.writer}`, {
      tenantId: SHARED_TENANT_ID,
      ttlSeconds: null,
    });
    await appendRange(warm, 0, MANY_WRITER_WARM_ITEMS);
    for (let call = 0; call < 20; call++) await warm.getItems(20);

    const session = await service.open(SHARED_SESSION_ID, {
      tenantId: SHARED_TENANT_ID,
      ttlSeconds: null,
    });
    // The parent created the shared session's data key; load it now, not in the timed part.
    await keyRing.keyForWrite({ tenantId: SHARED_TENANT_ID, sessionId: SHARED_SESSION_ID }, null);

    process.stdout.write('ready\n');
    const signal = await lines.next();
    if (signal.done || signal.value.trim() !== 'go') {
      throw new Error(
        `writer ${config.writer}: expected 'go' on stdin, got ${signal.value ?? 'EOF'}`,
      );
    }
    const started = performance.now();
    await appendRange(session, config.firstIndex, config.count);
    const ms = performance.now() - started;
    process.stdout.write(`done ${ms.toFixed(3)} ${process.resourceUsage().maxRSS}\n`);
  } finally {
    await store.close();
    process.stdin.destroy();
  }
}

main().then(
  () => {
    process.exitCode = 0;
  },
  (error: unknown) => {
    process.stderr.write(
      `many-writer child failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
