import { performance } from 'node:perf_hooks';
import { runAs } from '../src/audit/index.js';
import {
  gatherPlannerStatistics,
  liveSession,
  openJobsStore,
  readRate,
  type JobsStore,
} from './jobs.js';
import { itemOf } from './workload.js';

/*
 * `npm run bench -- --rotation`: staged data key rotation with the audit trail on, on the
 * embedded SQLite store (synchronous FULL, the default) and on Postgres:
 *
 * - reencryptItemsPerSec: 200,000 items across 1,000 sessions (200 each, one data key per
 *   session), every session's key then rotated (a new generation; the old one retiring), and
 *   KeyRotationService.reencryptRetiring() run once (batches of 500 items: one unit of work per
 *   key, which also destroys it); items re-encrypted per second of the run;
 * - readLimit20DuringRotation (SQLite): getItems(20) calls/s of a live session, alone (for five
 *   seconds) and while a second rotation of the same 200,000 items runs beside it in the same
 *   process.
 *
 * On Postgres the tables' planner statistics are gathered (ANALYZE, untimed) once the keys are
 * rotated, as autovacuum keeps them on a database in service (gatherPlannerStatistics).
 */

const SESSIONS = 1_000;
const ITEMS_PER_SESSION = 200;
const ITEMS = SESSIONS * ITEMS_PER_SESSION;
const actor = { type: 'service' as const, id: 'bench', tenantId: 'bench' };

/** The benchmark's result, as `--json` prints it. */
export interface RotationBenchResult {
  readonly rotation: {
    readonly reencryptItemsPerSec: { readonly sqlite: number; readonly postgres: number };
    readonly readLimit20DuringRotation: { readonly off: number; readonly on: number };
  };
}

const refOf = (round: number, index: number) => ({
  tenantId: 'bench',
  sessionId: `rotating-${round}-${index}`,
});

/**
 * Writes the items of `round` (fresh sessions each round: a key that holds re-encrypted items
 * but sealed no append since it was created is not rotated again), one addItems of 200 per
 * session, then starts a new generation in every one of them: the key so far retires, with all
 * its items.
 */
async function writeAndRotate(
  store: JobsStore,
  round: number,
  log: (line: string) => void,
): Promise<void> {
  await runAs(actor, async () => {
    for (let index = 0; index < SESSIONS; index++) {
      const session = await store.service.open(refOf(round, index).sessionId, {
        tenantId: 'bench',
        ttlSeconds: null,
      });
      await session.addItems(
        Array.from({ length: ITEMS_PER_SESSION }, (_, n) => itemOf(index * ITEMS_PER_SESSION + n)),
      );
      if ((index + 1) % 250 === 0)
        log(`rotation: ${(index + 1) * ITEMS_PER_SESSION} items written`);
    }
    for (let index = 0; index < SESSIONS; index++) {
      const ref = refOf(round, index);
      const row = await store.open.storage.read(ref, (scope) => scope.session.find());
      await store.keyRing.rotate(ref, null, row!.nextSeq);
    }
  });
  await gatherPlannerStatistics(store);
}

/** Items/s of one run, checked to have moved every item and destroyed every retiring key. */
async function reencryptRate(
  store: JobsStore,
  beside?: (stop: Promise<unknown>) => Promise<number>,
) {
  const started = performance.now();
  const running = runAs(actor, () => store.rotation.reencryptRetiring());
  const reads = beside?.(running);
  const report = await running;
  const elapsedMs = performance.now() - started;
  if (
    report.outcome !== 'done' ||
    report.result?.reencrypted !== ITEMS ||
    report.result.destroyed !== SESSIONS
  ) {
    throw new Error(
      `the rotation ended ${report.outcome} (${report.errorCode ?? ''}), ${report.result?.reencrypted ?? 0} of ${ITEMS} items re-encrypted, ${report.result?.destroyed ?? 0} keys destroyed`,
    );
  }
  return { rate: Math.round((ITEMS * 1000) / elapsedMs), reads: await reads };
}

/** Runs the rotation benchmark; `log` reports progress on stderr. */
export async function rotationBenchmark(log: (line: string) => void): Promise<RotationBenchResult> {
  const reencryptItemsPerSec = { sqlite: 0, postgres: 0 };
  let readLimit20DuringRotation = { off: 0, on: 0 };
  for (const backend of ['sqlite', 'postgres'] as const) {
    const store = await openJobsStore(backend);
    try {
      log(`rotation: ${backend}, writing ${ITEMS} items in ${SESSIONS} sessions`);
      await writeAndRotate(store, 1, log);
      log(`rotation: ${backend}, re-encrypting`);
      reencryptItemsPerSec[backend] = (await reencryptRate(store)).rate;
      if (backend === 'sqlite') {
        const session = await liveSession(store);
        log('rotation: sqlite, getItems(20) alone');
        const off = await readRate(session);
        await writeAndRotate(store, 2, log);
        log('rotation: sqlite, getItems(20) while a rotation runs');
        const { reads } = await reencryptRate(store, (stop) => readRate(session, stop));
        readLimit20DuringRotation = { off, on: reads ?? 0 };
      }
    } finally {
      await store.dispose();
    }
  }
  return { rotation: { reencryptItemsPerSec, readLimit20DuringRotation } };
}

/** The result as a table, with the targets. */
export function formatRotationReport(result: RotationBenchResult): string {
  const { rotation } = result;
  const { off, on } = rotation.readLimit20DuringRotation;
  return (
    `Data key rotation, audit trail on (${ITEMS.toLocaleString('en')} items in ${SESSIONS.toLocaleString('en')} sessions)\n` +
    `  re-encrypt, SQLite (FULL) ${String(rotation.reencryptItemsPerSec.sqlite).padStart(8)} items/s  target >= 20,000\n` +
    `  re-encrypt, Postgres      ${String(rotation.reencryptItemsPerSec.postgres).padStart(8)} items/s  target >= 10,000\n` +
    `  getItems(20), SQLite      ${String(off).padStart(8)} calls/s alone, ${on} during a rotation (${(on / off).toFixed(2)} x, target >= 0.7)\n`
  );
}
