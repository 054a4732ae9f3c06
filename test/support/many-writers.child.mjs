// One writer process of many-writers.spec.ts and of the benchmark's many-writer phase, started
// through writer-process.ts (its types describe the config, commands and replies). Plain ESM over
// the compiled library, so it runs as a real, separate OS process with its own connections, key
// cache and event loop.
//
// Configuration comes in NES_CHILD_CONFIG (JSON; the root key stays out of argv, which `ps`
// shows). Commands arrive as JSON lines on stdin and every answer is one stdout line starting
// with REPLY_MARK, so stray output from libraries cannot be mistaken for a reply:
//   { "cmd": "warm-up", "count": 200, "batchSize": 5 }  ->  { "event": "warm" }
//   { "cmd": "append", "count": 2500, "batchSize": 5 }  ->  { "event": "appended", ... }
//   { "cmd": "apply", "operationId": "...", "items": [...] }  ->  { "event": "applied", ... }
//   { "cmd": "exit" }
import { createInterface } from 'node:readline';
import { Logger } from '@nestjs/common';
import { openChildStorage } from './child-storage.mjs';

const REPLY_MARK = '@@nes ';
/** A retryable error repeating this often means the backend is down, not busy: give up. */
const MAX_ATTEMPTS_PER_CALL = 20;

const config = JSON.parse(process.env.NES_CHILD_CONFIG ?? '{}');
const reply = (message) => process.stdout.write(`${REPLY_MARK}${JSON.stringify(message)}\n`);

// Verbose per-call logs would cost more than the writes being measured.
Logger.overrideLogger(['warn', 'error', 'fatal']);

const lib = await import(config.entryUrl);

/**
 * Runs `call`, repeating it only after an error the library marks retryable. Each repeat is
 * counted: after an ambiguous failure (the commit may have landed) a repeat can duplicate, so
 * the parent checks the count.
 */
async function withRetries(call, retryCodes) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (error?.retryable !== true || attempt >= MAX_ATTEMPTS_PER_CALL) throw error;
      retryCodes.push(String(error.code));
    }
  }
}

const storage = await openChildStorage(config.entryUrl, config.backend);
const provider = new lib.EnvKeyProvider({ keys: config.rootKey, activeKeyId: 'k1' });
const keyRing = new lib.KeyRing(storage, provider);
const service = new lib.EncryptedSessionService(storage, keyRing);
const session = await service.open(config.sessionId);

/** Item `n` of this writer: `w<writer>-<n>`, padded with dots to `contentLength` if set. */
const contentOf = (n) => `w${config.writer}-${n}`.padEnd(config.contentLength ?? 0, '.');

/** Appends this writer's items 0..count-1 to `target`, `batchSize` per `addItems` call. */
async function appendItems(target, count, batchSize, retryCodes) {
  for (let first = 0; first < count; first += batchSize) {
    const batch = [];
    for (let n = first; n < Math.min(first + batchSize, count); n++) {
      batch.push({ role: 'user', content: contentOf(n) });
    }
    await withRetries(() => target.addItems(batch), retryCodes);
  }
}

/**
 * Untimed preparation for `append`: JIT, connections and statement caches warmed on a session
 * nobody else writes (`count` items, then 20 reads of the newest 20), and the shared session's
 * data key loaded, so what `append` times is the appends alone.
 */
async function warmUp({ count, batchSize }) {
  const own = await service.open(`${config.sessionId}-warm-up-${config.writer}`);
  await appendItems(own, count, batchSize, []);
  for (let call = 0; call < 20; call++) await own.getItems(20);
  await keyRing.keyForWrite({ tenantId: session.tenantId, sessionId: config.sessionId }, null);
  return { event: 'warm' };
}

async function append({ count, batchSize }) {
  const retryCodes = [];
  const started = performance.now();
  await appendItems(session, count, batchSize, retryCodes);
  return {
    event: 'appended',
    retryCodes,
    elapsedMs: performance.now() - started,
    maxRssKiB: process.resourceUsage().maxRSS,
  };
}

async function apply({ operationId, items }) {
  const retryCodes = [];
  await withRetries(
    () =>
      session.applyHistoryTransaction({
        operationId,
        transaction: { type: 'append_items', items },
      }),
    retryCodes,
  );
  return { event: 'applied', operationId, retryCodes };
}

async function handle(command) {
  switch (command.cmd) {
    case 'warm-up':
      return warmUp(command);
    case 'append':
      return append(command);
    case 'apply':
      return apply(command);
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
}

const lines = createInterface({ input: process.stdin });
reply({ event: 'ready', pid: process.pid });
for await (const line of lines) {
  if (line.trim() === '') continue;
  const command = JSON.parse(line);
  if (command.cmd === 'exit') break;
  try {
    reply(await handle(command));
  } catch (error) {
    reply({
      event: 'error',
      name: error?.name,
      code: error?.code,
      message: String(error?.message ?? error),
      stack: String(error?.stack ?? ''),
    });
  }
}
await storage.close();
lines.close();
