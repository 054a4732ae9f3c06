/**
 * `npm run bench`: throughput of one encrypted session on a storage backend, against a
 * plaintext baseline (the very same storage and session with {@link nullItemCipher}).
 *
 * Backends (`--backend`, default sqlite): the embedded SQLite store (a temp file per variant),
 * or a throwaway store on a local server: Postgres and MySQL/MariaDB (a database of its own,
 * `CREATE DATABASE nes_bench_<hex>`, dropped afterwards) and Redis (a key prefix of its own,
 * `nes-bench-<hex>:`, its keys unlinked afterwards). Server URLs: `NES_BENCH_POSTGRES_URL`,
 * `NES_BENCH_MYSQL_URL`, `NES_BENCH_REDIS_URL` (defaults: `LOCAL_SERVERS` in
 * `test/support/service-availability.ts`). A server that is down fails the run (exit 1) with
 * the command that starts it.
 *
 * Workload (the Python openai-agents SDK anchor): one session, N (default 20,000) items of
 * ~1 KiB `{ role: 'user', content }`, added in batches of 10; one full `getItems()`;
 * `getItems(20)` x 1,000; the same again once all but the newest 20 items have expired (still
 * physically stored). On SQLite (WAL mode) the adds run with `synchronous=FULL` (phase `add`)
 * and `synchronous=NORMAL` (phase `addNormalSync`), each variant on a fresh temp database; on a
 * server the add phase runs once (`addNormalSync` is null: durability is the server's own
 * setting). Stored bytes per item: SQLite's file growth; the ciphertext column on the SQL
 * servers; the ciphertext bytes of the item ZSET members on Redis (plus its MEMORY USAGE in the
 * table).
 *
 * Many writers (phase `manyWriters`, every backend, `--writers N`, default 4, 0 skips it): N
 * child processes (`test/support/many-writers.child.mjs`, which the concurrency tests run too)
 * each open the same fresh store with the same root key, warm up, and on one start signal append
 * items/2 / N items each (~1 KiB, `w<writer>-<n>` padded), in batches of 5, to ONE shared
 * encrypted session; reported as total items/s from the signal to the last writer done.
 * Afterwards every item is checked: all there, each once, each writer's in its own order.
 *
 * Both variants' stores are open side by side and their timed calls alternate (see the
 * Phases section), so drift in disk, server and CPU speed hits both alike. Everything runs once
 * untimed on throwaway stores first (JIT, caches, connections), and GC runs between phases.
 *
 * Every result is checked (row counts, item counts, the content of the returned items); a wrong
 * result fails the process with exit status 1. Missed performance targets are only reported.
 *
 * Options: `--backend sqlite|postgres|mysql|redis` (`postgresql`, `mariadb` accepted), `--json`
 * (exactly one JSON object on stdout, progress on stderr), `--items N`, `--writers N`,
 * `--layers` (sqlite only: per-layer cost breakdown instead of the benchmark), `--keys`.
 *
 * `--keys` (with `--json` or alone; see `keys.ts`) measures the key providers instead: for each
 * of env, aws-kms, vault-transit and vault-kv (the last three against the loopback KMS and Vault
 * wire-protocol test servers of `test/support`), 1,000 sessions x 20 items written to in-memory
 * storage, then read cold (key cache cleared) and warm; it reports the provider calls of each
 * pass and items/s. `--json` prints `{"providers":{"env":{"dataKeys","coldProviderCalls",
 * "warmProviderCalls","warmItemsPerSec",...},"aws-kms":{...},"vault-transit":{...},
 * "vault-kv":{...}}}`. Targets: cold reads make one provider call per data key, warm reads none,
 * warm items/s >= 0.9x env's.
 */
import { performance } from 'node:perf_hooks';
import { installBenchLogger } from './bench-logger.js';
import { auditBenchmark, formatAuditReport } from './audit.js';
import { formatJobsReport, jobsBenchmark } from './jobs.js';
import { formatRotationReport, rotationBenchmark } from './rotation.js';
import { formatKeysReport } from './keys-report.js';
import { keyProviderBenchmark } from './keys.js';
import { layerBreakdown } from './layers.js';
import {
  MIN_ITEMS,
  USAGE,
  UsageError,
  parseBenchArgs,
  type BenchBackend,
  type ServerBackend,
} from './args.js';
import { MANY_WRITER_BATCH_SIZE, runManyWriters, type ManyWritersOutcome } from './many-writers.js';
import { nullItemCipher } from './null-item-cipher.js';
import {
  formatReport,
  type BenchDetails,
  type BenchResult,
  type BytesPerItemMethod,
  type Pair,
  type PhaseName,
} from './report.js';
import {
  openServerFixture,
  openSqliteFixture,
  type BenchFixture,
  type ServerFixture,
  type SqliteFixture,
} from './fixtures.js';
import { ServerUnavailableError, checkServerReachable, removeStoresOnSignal } from './stores.js';
import { VerificationError, verify } from './verification.js';
import {
  LIMIT_READ_CALLS,
  LIVE_TAIL,
  READ_LIMIT,
  batchesOf,
  isContentOf,
  itemOf,
} from './workload.js';
import type { ItemCipher } from '../src/sessions/item-cipher.js';
import type { AgentInputItem } from '@openai/agents-core';

/** The two ways every phase runs. */
const VARIANTS: readonly { name: keyof Pair; cipher: ItemCipher | undefined }[] = [
  { name: 'encrypted', cipher: undefined }, // the default AES-256-GCM envelope
  { name: 'plain', cipher: nullItemCipher },
];

/** Untimed `getItems(20)` calls per variant before each timed limited-read phase. */
const WARM_CALLS = 50;
/** Items of the throwaway warm-up database. */
const WARMUP_ITEMS = 1000;

const log = (message: string): void => {
  const rssMb = process.memoryUsage.rss() / (1024 * 1024);
  process.stderr.write(`[bench] ${message} (rss ${rssMb.toFixed(0)} MB)\n`);
};

// ---------------------------------------------------------------------------------------------
// Peak RSS: the kernel's high-water mark (maxRSS, KiB) plus our own samples, over the whole run.

let peakRssBytes = 0;
function sampleRss(): void {
  peakRssBytes = Math.max(
    peakRssBytes,
    process.memoryUsage.rss(),
    process.resourceUsage().maxRSS * 1024,
  );
}
const rssSampler = setInterval(sampleRss, 25);
rssSampler.unref();

/** Full GC between phases (`node --expose-gc`), so one phase's garbage is not billed to the next. */
function collectGarbage(): void {
  sampleRss();
  (globalThis as { gc?: () => void }).gc?.();
}

// ---------------------------------------------------------------------------------------------
// Phases. Both variants' stores are open side by side and every timed operation alternates
// between them (the variant that goes first alternates too), each operation timed on its own.
// The disk's fsync latency on this machine class drifts by 2x within seconds; alternating
// spreads that drift evenly over both variants instead of billing it to whichever ran first.

type Fixtures<F extends BenchFixture = BenchFixture> = Record<keyof Pair, F>;

/** The variants in the order they run for the `round`-th alternation. */
const orderFor = (round: number) => (round % 2 === 0 ? VARIANTS : VARIANTS.toReversed());

const zero = (): Pair => ({ encrypted: 0, plain: 0 });

/** Opens a fresh store per variant (the encrypted one is disposed again if the plain one fails). */
async function openFixtures<F extends BenchFixture>(
  open: (cipher: ItemCipher | undefined) => Promise<F>,
): Promise<Fixtures<F>> {
  const encrypted = await open(VARIANTS[0]!.cipher);
  try {
    return { encrypted, plain: await open(VARIANTS[1]!.cipher) };
  } catch (error) {
    await encrypted.dispose();
    throw error;
  }
}

/** Fresh stores per variant on the backend (SQLite: with the given `synchronous`). */
function openBackendFixtures(
  backend: BenchBackend,
  synchronous: 'FULL' | 'NORMAL',
): Promise<Fixtures> {
  return backend === 'sqlite'
    ? openFixtures((cipher) => openSqliteFixture(synchronous, cipher))
    : openFixtures((cipher) => openServerFixture(backend, cipher));
}

async function disposeFixtures(fixtures: Fixtures): Promise<void> {
  const settled = await Promise.allSettled([
    fixtures.encrypted.dispose(),
    fixtures.plain.dispose(),
  ]);
  // A store left behind on a server is worth a warning (the run itself may have succeeded).
  for (const outcome of settled) {
    if (outcome.status === 'rejected') {
      log(`warning: removing a throwaway store failed: ${String(outcome.reason)}`);
    }
  }
}

/**
 * Writes items 0..total-1 to each database in batches of 10 (TTL on all but the newest 20),
 * alternating batches between the variants. Returns the summed `addItems` time per variant.
 */
async function addAll(fixtures: Fixtures, total: number): Promise<Pair> {
  const ms = zero();
  let round = 0;
  for (const { from, to, expiring } of batchesOf(total)) {
    for (const { name } of orderFor(round++)) {
      const batch: AgentInputItem[] = [];
      for (let index = from; index < to; index++) batch.push(itemOf(index));
      const session = expiring ? fixtures[name].expiringSession : fixtures[name].session;
      const started = performance.now();
      await session.addItems(batch);
      ms[name] += performance.now() - started;
    }
  }
  for (const { name } of VARIANTS) {
    const rows = await fixtures[name].countRows();
    verify(
      rows === total,
      `${name}: after adding ${total} items the items table holds ${rows} rows`,
    );
  }
  return ms;
}

/** Checks that `items` are exactly items `total - expected .. total - 1` of the workload, in order. */
function verifyNewest(
  items: readonly AgentInputItem[],
  total: number,
  expected: number,
  what: string,
): void {
  verify(items.length === expected, `${what} returned ${items.length} items, expected ${expected}`);
  const first = total - expected;
  items.forEach((item, offset) => {
    const { role, content } = item as { role?: unknown; content?: unknown };
    verify(
      role === 'user' && isContentOf(first + offset, content),
      `${what}: item ${offset} is not item #${first + offset} of the workload (wrong content or order)`,
    );
  });
}

/**
 * One untimed full read per variant (checked), then one timed full read per variant (checked
 * after the clock stopped).
 */
async function readAll(fixtures: Fixtures, total: number): Promise<Pair> {
  const ms = zero();
  for (const timed of [false, true]) {
    for (const { name } of VARIANTS) {
      collectGarbage();
      const started = performance.now();
      const items = await fixtures[name].session.getItems();
      if (timed) ms[name] = performance.now() - started;
      sampleRss();
      verifyNewest(items, total, total, `${name} getItems()`);
    }
  }
  return ms;
}

/**
 * `getItems(20)` x 1,000 per variant after a short warm-up, calls alternating between the
 * variants; every call's size is checked, and the content of each variant's last result.
 */
async function readLimited(fixtures: Fixtures, total: number, what: string): Promise<Pair> {
  for (const { name } of VARIANTS) {
    for (let call = 0; call < WARM_CALLS; call++) await fixtures[name].session.getItems(READ_LIMIT);
  }
  collectGarbage();
  const ms = zero();
  const last: Record<keyof Pair, AgentInputItem[]> = { encrypted: [], plain: [] };
  for (let call = 0; call < LIMIT_READ_CALLS; call++) {
    for (const { name } of orderFor(call)) {
      const started = performance.now();
      const items = await fixtures[name].session.getItems(READ_LIMIT);
      ms[name] += performance.now() - started;
      if (items.length !== READ_LIMIT) {
        throw new VerificationError(
          `${name} ${what}: call ${call} returned ${items.length} items, expected ${READ_LIMIT}`,
        );
      }
      last[name] = items;
    }
  }
  for (const { name } of VARIANTS) verifyNewest(last[name], total, READ_LIMIT, `${name} ${what}`);
  return ms;
}

/** How many bytes the stored items take, per item, by the backend's method. */
interface StoredBytes {
  method: BytesPerItemMethod;
  bytesPerItem: Pair;
  /** SQLite: the ciphertext column alone (its `bytesPerItem` is file growth); else null. */
  columnBytesPerItem: Pair | null;
  /** Redis: MEMORY USAGE of the item ZSET per item; else null. */
  memoryBytesPerItem: Pair | null;
}

/** Measures {@link StoredBytes}: `beforeAdd` just before the first add, `afterAdd` after the last. */
interface StoredBytesProbe {
  beforeAdd(): Promise<void>;
  afterAdd(total: number): Promise<StoredBytes>;
}

/**
 * SQLite: growth of the database file (page_count * page_size after a TRUNCATE checkpoint, so
 * the WAL is empty and this is the main file's size) from just before the first add to just
 * after the last, divided by the item count. It is what the items cost on disk: the row
 * (ciphertext plus clear columns and record header), the primary-key, expiry and dek_id index
 * entries, and B-tree page slack. Same method for both variants; the table also shows
 * SUM(LENGTH(ciphertext)) / items, the item column alone.
 */
function fileGrowthProbe(fixtures: Fixtures<SqliteFixture>): StoredBytesProbe {
  const bytesBefore = zero();
  return {
    async beforeAdd() {
      for (const { name } of VARIANTS) bytesBefore[name] = await fixtures[name].databaseBytes();
    },
    async afterAdd(total) {
      const bytesPerItem = zero();
      const columnBytesPerItem = zero();
      for (const { name } of VARIANTS) {
        bytesPerItem[name] = ((await fixtures[name].databaseBytes()) - bytesBefore[name]) / total;
        columnBytesPerItem[name] = (await fixtures[name].sumStoredItemBytes()) / total;
      }
      return { method: 'file-growth', bytesPerItem, columnBytesPerItem, memoryBytesPerItem: null };
    },
  };
}

/**
 * Servers: the stored ciphertext per item (a server's files grow in extents and its WAL is
 * shared, so file growth says little). SQL: `SUM(LENGTH(ciphertext))` (octet_length on
 * Postgres). Redis: the ciphertext bytes of the item ZSET members, plus MEMORY USAGE of the
 * ZSET for the table.
 */
function ciphertextProbe(
  backend: ServerBackend,
  fixtures: Fixtures<ServerFixture>,
): StoredBytesProbe {
  return {
    beforeAdd: async () => undefined,
    async afterAdd(total) {
      const bytesPerItem = zero();
      const memory = zero();
      for (const { name } of VARIANTS) {
        bytesPerItem[name] = (await fixtures[name].sumStoredItemBytes()) / total;
        const memoryBytes = fixtures[name].itemsMemoryBytes;
        if (memoryBytes) memory[name] = (await memoryBytes()) / total;
      }
      return backend === 'redis'
        ? {
            method: 'ciphertext-in-zset',
            bytesPerItem,
            columnBytesPerItem: null,
            memoryBytesPerItem: memory,
          }
        : {
            method: 'ciphertext-column',
            bytesPerItem,
            columnBytesPerItem: null,
            memoryBytesPerItem: null,
          };
    },
  };
}

interface MainOutcome {
  ms: Pick<Record<PhaseName, Pair>, 'add' | 'readAll' | 'readLimit20' | 'readLimit20Expired'>;
  stored: StoredBytes;
}

/**
 * The main stores (SQLite: `synchronous=FULL`): add, measure storage, full read, limited reads,
 * then limited reads with all but the newest 20 items expired (and still stored).
 */
async function runMainPhases(backend: BenchBackend, total: number): Promise<MainOutcome> {
  let fixtures: Fixtures;
  let probe: StoredBytesProbe;
  if (backend === 'sqlite') {
    const sqlite = await openFixtures((cipher) => openSqliteFixture('FULL', cipher));
    [fixtures, probe] = [sqlite, fileGrowthProbe(sqlite)];
  } else {
    const server = await openFixtures((cipher) => openServerFixture(backend, cipher));
    [fixtures, probe] = [server, ciphertextProbe(backend, server)];
  }
  try {
    await probe.beforeAdd();
    collectGarbage();
    log(`add ${total} items per variant${backend === 'sqlite' ? ', synchronous=FULL' : ''}`);
    const add = await addAll(fixtures, total);
    const stored = await probe.afterAdd(total);

    log('full read');
    const all = await readAll(fixtures, total);

    collectGarbage();
    log(`getItems(${READ_LIMIT}) x ${LIMIT_READ_CALLS} per variant`);
    const readLimit20 = await readLimited(fixtures, total, `getItems(${READ_LIMIT})`);

    collectGarbage();
    for (const { name } of VARIANTS) {
      const fixture = fixtures[name];
      fixture.clock.jumpPastTtl();
      const expired = await fixture.countExpiredRows();
      verify(
        expired === total - LIVE_TAIL,
        `${name}: ${expired} rows are expired by the session clock, expected ${total - LIVE_TAIL}`,
      );
    }
    log(
      `getItems(${READ_LIMIT}) x ${LIMIT_READ_CALLS} per variant, ${total - LIVE_TAIL} older items expired`,
    );
    const readLimit20Expired = await readLimited(
      fixtures,
      total,
      `getItems(${READ_LIMIT}) with expired history`,
    );
    for (const { name } of VARIANTS) {
      // Expired items are hidden, not deleted: every row is still stored.
      const rows = await fixtures[name].countRows();
      verify(rows === total, `${name}: expired items were deleted, ${rows} rows left of ${total}`);
      const visible = await fixtures[name].session.getItems();
      verifyNewest(visible, total, LIVE_TAIL, `${name} getItems() after expiry`);
    }
    return { ms: { add, readAll: all, readLimit20, readLimit20Expired }, stored };
  } finally {
    await disposeFixtures(fixtures);
  }
}

/** SQLite only: the `synchronous=NORMAL` databases, adds only. */
async function runNormalSync(total: number): Promise<Pair> {
  const fixtures = await openBackendFixtures('sqlite', 'NORMAL');
  try {
    collectGarbage();
    log(`add ${total} items per variant, synchronous=NORMAL`);
    return await addAll(fixtures, total);
  } finally {
    await disposeFixtures(fixtures);
  }
}

/** Throwaway stores, so JIT, caches and connections are warm for both variants before timing. */
async function warmUp(backend: BenchBackend, total: number): Promise<void> {
  log(`warm-up: ${total} items per variant on throwaway stores`);
  const fixtures = await openBackendFixtures(backend, 'NORMAL');
  try {
    await addAll(fixtures, total);
    await readAll(fixtures, total);
    await readLimited(fixtures, total, 'warm-up getItems(20)');
    for (const { name } of VARIANTS) fixtures[name].clock.jumpPastTtl();
    await readLimited(fixtures, total, 'warm-up getItems(20) with expired history');
  } finally {
    await disposeFixtures(fixtures);
  }
}

// ---------------------------------------------------------------------------------------------

const perSecond = (count: number, ms: number): number => Math.round((count * 1000) / ms);
const oneDecimal = (value: number): number => Math.round(value * 10) / 10;
const roundPair = (pair: Pair): Pair => ({
  encrypted: oneDecimal(pair.encrypted),
  plain: oneDecimal(pair.plain),
});

async function main(): Promise<number> {
  let args;
  try {
    args = parseBenchArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  installBenchLogger();
  if (args.json) {
    // stdout carries exactly one JSON object: send any stray library logging to stderr.
    console.log = console.info = console.debug = console.error;
  }
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
    log('warning: run with node --expose-gc (npm run bench does) for GC between phases');
  }

  if (args.audit) {
    const result = await auditBenchmark(log);
    process.stdout.write(args.json ? `${JSON.stringify(result)}\n` : formatAuditReport(result));
    return 0;
  }
  if (args.jobs) {
    removeStoresOnSignal();
    const result = await jobsBenchmark(log);
    process.stdout.write(args.json ? `${JSON.stringify(result)}\n` : formatJobsReport(result));
    return 0;
  }
  if (args.rotation) {
    removeStoresOnSignal();
    const result = await rotationBenchmark(log);
    process.stdout.write(args.json ? `${JSON.stringify(result)}\n` : formatRotationReport(result));
    return 0;
  }
  if (args.keys) {
    const { result, details } = await keyProviderBenchmark(log);
    process.stdout.write(
      args.json ? `${JSON.stringify(result)}\n` : formatKeysReport(result, details),
    );
    return 0;
  }
  const { backend, items: total } = args;
  if (args.layers) {
    process.stdout.write(await layerBreakdown(total, log));
    return 0;
  }
  if (backend !== 'sqlite') await checkServerReachable(backend);
  removeStoresOnSignal();
  log(`backend ${backend}`);
  const started = performance.now();
  await warmUp(backend, Math.max(MIN_ITEMS, Math.min(WARMUP_ITEMS, total)));

  const mainPhases = await runMainPhases(backend, total);
  const ms: Record<PhaseName, Pair | null> = {
    ...mainPhases.ms,
    addNormalSync: backend === 'sqlite' ? await runNormalSync(total) : null,
  };
  collectGarbage();

  let manyWriters: ManyWritersOutcome | null = null;
  if (args.writers > 0) {
    const perWriter = Math.max(MANY_WRITER_BATCH_SIZE, Math.floor(total / 2 / args.writers));
    manyWriters = await runManyWriters(backend, args.writers, perWriter, verify, log);
  }

  const rate = (phase: PhaseName, count: number): Pair | null => {
    const pair = ms[phase];
    return (
      pair && { encrypted: perSecond(count, pair.encrypted), plain: perSecond(count, pair.plain) }
    );
  };
  const result: BenchResult = {
    backend,
    items: total,
    phases: {
      add: rate('add', total),
      addNormalSync: rate('addNormalSync', total),
      readAll: rate('readAll', total),
      readLimit20: rate('readLimit20', LIMIT_READ_CALLS),
      readLimit20Expired: rate('readLimit20Expired', LIMIT_READ_CALLS),
    },
    bytesPerItem: roundPair(mainPhases.stored.bytesPerItem),
    peakRssMb: oneDecimal(peakRssBytes / (1024 * 1024)),
    bytesPerItemMethod: mainPhases.stored.method,
    manyWriters: manyWriters && {
      writers: manyWriters.writers,
      items: manyWriters.items,
      batchSize: MANY_WRITER_BATCH_SIZE,
      wallMs: Math.round(manyWriters.wallMs),
      itemsPerSecond: perSecond(manyWriters.items, manyWriters.wallMs),
    },
  };
  const totalSeconds = (performance.now() - started) / 1000;
  log(`done in ${totalSeconds.toFixed(1)} s`);

  if (args.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    const details: BenchDetails = {
      columnBytesPerItem: mainPhases.stored.columnBytesPerItem,
      memoryBytesPerItem: mainPhases.stored.memoryBytesPerItem,
      phaseMs: ms,
      manyWriters: manyWriters && {
        itemsPerWriter: manyWriters.itemsPerWriter,
        writerMs: manyWriters.writerMs,
        peakWriterRssMb: manyWriters.peakWriterRssMb,
      },
      totalSeconds,
    };
    process.stdout.write(formatReport(result, details));
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ServerUnavailableError) {
      process.stderr.write(`BENCH FAILED: ${error.message}\n`);
    } else {
      const label =
        error instanceof VerificationError ? 'BENCH FAILED (wrong results)' : 'BENCH FAILED';
      process.stderr.write(
        `${label}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
    }
    process.exitCode = 1;
  },
);
