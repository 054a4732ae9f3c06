import { generateKeyPairSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setImmediate, setTimeout as delay } from 'node:timers/promises';
import { AuditTrail, runAs } from '../src/audit/index.js';
import {
  EncryptedSessionJobs,
  KeyRotationService,
  RetentionService,
  type JobsConfig,
} from '../src/jobs/index.js';
import { EnvKeyProvider, KekRotationService, KeyRing } from '../src/keys/index.js';
import { KeyRingAuditKeys } from '../src/module/key-ring-audit-keys.js';
import { EncryptedSessionService, type EncryptedSession } from '../src/sessions/index.js';
import { newRootKeyEntry } from '../test/support/test-keys.js';
import { openStoreAt, type OpenStore } from '../test/support/throwaway-store.js';
import { checkServerReachable, createBenchStore } from './stores.js';
import { READ_LIMIT, itemOf } from './workload.js';

/*
 * `npm run bench -- --jobs`: the retention purge with the audit trail on, on the embedded SQLite
 * store (synchronous FULL, the default) and on Postgres:
 *
 * - purgeItemsPerSec: 200,000 expired items across 1,000 sessions (200 each, written with a
 *   one-second TTL), purged by RetentionService.purgeExpired() in one run (pages of 1,000);
 *   items purged per second of the run;
 * - readLimit20DuringPurge (SQLite): getItems(20) calls/s of a live session, alone (for five
 *   seconds) and while a purge of the same 200,000 items runs beside it in the same process;
 * - eraseSubjectMs: eraseSubject() of a subject with 100 sessions of 200 items (audit on, the
 *   receipt signed with an Ed25519 checkpoint key): ms from the call to the receipt, every data
 *   key destroyed and every item row deleted.
 *
 * On Postgres the tables' planner statistics are gathered (ANALYZE, untimed) once the items are
 * written, as autovacuum keeps them on a database in service (gatherPlannerStatistics).
 */

const SESSIONS = 1_000;
const ITEMS_PER_SESSION = 200;
const EXPIRED_ITEMS = SESSIONS * ITEMS_PER_SESSION;
const PAGE = 1_000;
const actor = { type: 'service' as const, id: 'bench', tenantId: 'bench' };

/** The benchmark's result, as `--json` prints it. */
export interface JobsBenchResult {
  readonly jobs: {
    readonly purgeItemsPerSec: { readonly sqlite: number; readonly postgres: number };
    readonly eraseSubjectMs: { readonly sqlite: number; readonly postgres: number };
    readonly readLimit20DuringPurge: { readonly off: number; readonly on: number };
  };
}

/** A bench store with the audit trail on, and the jobs over it. */
export interface JobsStore {
  readonly open: OpenStore;
  readonly keyRing: KeyRing;
  readonly service: EncryptedSessionService;
  readonly retention: RetentionService;
  readonly rotation: KeyRotationService;
  dispose(): Promise<void>;
}

export async function openJobsStore(backend: 'sqlite' | 'postgres'): Promise<JobsStore> {
  if (backend === 'postgres') await checkServerReachable('postgres');
  const store = await createBenchStore(backend);
  const open = await openStoreAt(store.location, { migrate: true, poolSize: 4 });
  const rootKey = newRootKeyEntry('k1');
  const keyRing = new KeyRing(
    open.storage,
    new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }),
  );
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const trail = new AuditTrail(open.storage.audit!, new KeyRingAuditKeys(keyRing, 86_400_000), {
    requireActor: true,
    reads: 'group-commit',
    checkpointSigner: { keyId: 'bench', privateKey, publicKey },
  });
  keyRing.attachAuditTrail(trail);
  const config: JobsConfig = {
    leaseTtlMs: 60_000,
    kekRewrap: { enabled: false, cron: '0 * * * *', batchSize: 100, maxBatchesPerRun: 50 },
    keyRotation: {
      enabled: false,
      cron: '0 3 * * *',
      batchSize: 500,
      maxBatchesPerRun: 1_000_000,
    },
    retentionPurge: {
      enabled: false,
      cron: '*/15 * * * *',
      sessionIdleDays: null,
      batchSize: PAGE,
      maxBatchesPerRun: 1_000_000,
    },
  };
  const jobs = new EncryptedSessionJobs(
    open.storage,
    new KekRotationService(open.storage, keyRing, trail),
    config,
  );
  return {
    open,
    keyRing,
    service: new EncryptedSessionService(open.storage, keyRing, undefined, trail),
    retention: new RetentionService(open.storage, keyRing, jobs, config, trail),
    rotation: new KeyRotationService(open.storage, keyRing, jobs, config, trail),
    async dispose() {
      await open.close();
      keyRing.clear();
      await store.remove();
    },
  };
}

/**
 * Postgres plans each statement from its tables' statistics, which autovacuum gathers on a
 * database in service, but not in the seconds a benchmark fills its tables: without them the
 * purge's page query reads every expired row to return one page of them. Gathered here
 * (ANALYZE, not timed), so the timed run plans as a live database does. SQLite needs none.
 */
export async function gatherPlannerStatistics(store: JobsStore): Promise<void> {
  if (store.open.dataSource?.options.type === 'postgres')
    await store.open.dataSource.query('ANALYZE');
}

/** Writes the expired items (one addItems per session) and waits until they expired. */
async function writeExpired(store: JobsStore, log: (line: string) => void): Promise<void> {
  await runAs(actor, async () => {
    for (let index = 0; index < SESSIONS; index++) {
      const session = await store.service.open(`expiring-${index}`, {
        tenantId: 'bench',
        ttlSeconds: 1,
      });
      await session.addItems(
        Array.from({ length: ITEMS_PER_SESSION }, (_, n) => itemOf(index * ITEMS_PER_SESSION + n)),
      );
      if ((index + 1) % 250 === 0) log(`jobs: ${(index + 1) * ITEMS_PER_SESSION} items written`);
    }
  });
  await gatherPlannerStatistics(store);
  // The last items expire a second after they were written.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
}

const ERASE_SESSIONS = 100;

/** Ms of one eraseSubject() of a subject with 100 sessions of 200 items. */
export async function eraseSubjectTime(
  store: JobsStore,
  log: (line: string) => void,
): Promise<number> {
  await runAs(actor, async () => {
    for (let index = 0; index < ERASE_SESSIONS; index++) {
      const session = await store.service.open(`subject-${index}`, {
        tenantId: 'bench',
        subjectId: 'bench-subject',
        ttlSeconds: null,
      });
      await session.addItems(
        Array.from({ length: ITEMS_PER_SESSION }, (_, n) => itemOf(index * ITEMS_PER_SESSION + n)),
      );
    }
  });
  log(`jobs: erasing a subject with ${ERASE_SESSIONS} sessions of ${ITEMS_PER_SESSION} items`);
  const started = performance.now();
  const receipt = await runAs(actor, () =>
    store.service.eraseSubject('bench-subject', { tenantId: 'bench', reason: 'subject-request' }),
  );
  const elapsedMs = performance.now() - started;
  if (
    receipt.sessions !== ERASE_SESSIONS ||
    receipt.itemsDeleted !== ERASE_SESSIONS * ITEMS_PER_SESSION ||
    receipt.signature === null
  ) {
    throw new Error(
      `the erasure erased ${receipt.sessions} sessions and ${receipt.itemsDeleted} items`,
    );
  }
  return Math.round(elapsedMs);
}

/** Items/s of one purge run over everything `writeExpired` wrote. */
async function purgeRate(store: JobsStore): Promise<number> {
  const started = performance.now();
  const report = await store.retention.purgeExpired();
  const elapsedMs = performance.now() - started;
  if (report.outcome !== 'done' || report.result?.purged !== EXPIRED_ITEMS) {
    throw new Error(
      `the purge ended ${report.outcome} (${report.errorCode ?? ''}) with ${report.result?.purged ?? 0} of ${EXPIRED_ITEMS} items purged`,
    );
  }
  return Math.round((EXPIRED_ITEMS * 1000) / elapsedMs);
}

export async function liveSession(store: JobsStore): Promise<EncryptedSession> {
  return runAs(actor, async () => {
    const session = await store.service.open('live', { tenantId: 'bench', ttlSeconds: null });
    await session.addItems(Array.from({ length: 100 }, (_, n) => itemOf(n)));
    return session;
  });
}

/**
 * How long the reads alone run. With the trail on each read commits its audit event, so one
 * slow disk flush weighs on a second of reads as much as the few it delays: reads alone run for
 * seconds, as the job they are compared with does, not for a fixed count of calls (a thousand
 * took about one second and moved by a third from run to run).
 */
const READS_ALONE_MS = 5_000;

/**
 * getItems(20) calls/s of `session`, until `stop` resolves (by default after
 * {@link READS_ALONE_MS}). Each call starts on a turn of the event loop of its own, as a
 * server's requests do: a loop of awaits alone would never let a timer run (the job's lease
 * renewal, its pause) on the synchronous SQLite driver.
 */
export async function readRate(
  session: EncryptedSession,
  stop: Promise<unknown> = delay(READS_ALONE_MS),
): Promise<number> {
  // Set when `stop` settles (the time is up, or the job beside the reads ended).
  const state = { stopped: false };
  void stop.finally(() => (state.stopped = true));
  let calls = 0;
  const started = performance.now();
  await runAs(actor, async () => {
    while (!state.stopped) {
      await setImmediate();
      const items = await session.getItems(READ_LIMIT);
      if (items.length !== READ_LIMIT) throw new Error(`getItems(20) returned ${items.length}`);
      calls++;
    }
  });
  return Math.round((calls * 1000) / (performance.now() - started));
}

/** Runs the jobs benchmark; `log` reports progress on stderr. */
export async function jobsBenchmark(log: (line: string) => void): Promise<JobsBenchResult> {
  const purgeItemsPerSec = { sqlite: 0, postgres: 0 };
  const eraseSubjectMs = { sqlite: 0, postgres: 0 };
  let readLimit20DuringPurge = { off: 0, on: 0 };
  for (const backend of ['sqlite', 'postgres'] as const) {
    const store = await openJobsStore(backend);
    try {
      log(`jobs: ${backend}, writing ${EXPIRED_ITEMS} expiring items in ${SESSIONS} sessions`);
      await writeExpired(store, log);
      log(`jobs: ${backend}, purging`);
      purgeItemsPerSec[backend] = await purgeRate(store);
      eraseSubjectMs[backend] = await eraseSubjectTime(store, log);
      if (backend === 'sqlite') {
        const session = await liveSession(store);
        log('jobs: sqlite, getItems(20) alone');
        const off = await readRate(session);
        await writeExpired(store, log);
        log('jobs: sqlite, getItems(20) while a purge runs');
        const purge = store.retention.purgeExpired();
        const on = await readRate(session, purge);
        await purge;
        readLimit20DuringPurge = { off, on };
      }
    } finally {
      await store.dispose();
    }
  }
  return {
    jobs: {
      purgeItemsPerSec,
      eraseSubjectMs,
      readLimit20DuringPurge,
    },
  };
}

/** The result as a table, with the targets. */
export function formatJobsReport(result: JobsBenchResult): string {
  const { jobs } = result;
  const ratio = (jobs.readLimit20DuringPurge.on / jobs.readLimit20DuringPurge.off).toFixed(2);
  return (
    `Retention purge, audit trail on (${EXPIRED_ITEMS.toLocaleString('en')} expired items in ${SESSIONS.toLocaleString('en')} sessions)\n` +
    `  purge, SQLite (FULL)   ${String(jobs.purgeItemsPerSec.sqlite).padStart(8)} items/s  target >= 50,000\n` +
    `  purge, Postgres        ${String(jobs.purgeItemsPerSec.postgres).padStart(8)} items/s  target >= 25,000\n` +
    `  getItems(20), SQLite   ${String(jobs.readLimit20DuringPurge.off).padStart(8)} calls/s alone, ${jobs.readLimit20DuringPurge.on} during a purge (${ratio} x, target >= 0.7)\n` +
    `  eraseSubject, SQLite   ${String(jobs.eraseSubjectMs.sqlite).padStart(8)} ms (100 sessions of 200 items)  target < 1000\n` +
    `  eraseSubject, Postgres ${String(jobs.eraseSubjectMs.postgres).padStart(8)} ms  target < 1000\n`
  );
}
