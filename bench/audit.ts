import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AuditTrail, auditChainOf, buildAuditEvent, runAs } from '../src/audit/index.js';
import { EnvKeyProvider, KeyRing } from '../src/keys/index.js';
import { KeyRingAuditKeys } from '../src/module/key-ring-audit-keys.js';
import { EncryptedSessionService, type EncryptedSession } from '../src/sessions/index.js';
import { runSessionMigrations } from '../src/storage/typeorm/migration-runner.js';
import { dialectFor } from '../src/storage/typeorm/sql-dialect.js';
import { openSqliteDataSource } from '../src/storage/typeorm/sqlite-data-source.js';
import { TypeOrmSessionStorage } from '../src/storage/typeorm/typeorm.session-storage.js';
import { newRootKeyEntry } from '../test/support/test-keys.js';
import { BATCH_SIZE, LIMIT_READ_CALLS, READ_LIMIT, itemOf } from './workload.js';

/*
 * `npm run bench -- --audit`: what the audit trail costs, on the embedded SQLite store
 * (synchronous FULL, the default), each phase with the trail off and on in a fresh file:
 *
 * - add: 20,000 items appended in batches of 10 (the main benchmark's batches; no TTL);
 * - readLimit20: 1,000 getItems(20) one after another;
 * - readLimit20Concurrent16: 16 callers, each starting its next getItems(20) as soon as its last
 *   returned, 1,008 calls in all (with the trail on, reads waiting together share a commit);
 * - verify: a 1,000,000-record session chain written through the trail, then verified from the
 *   file by AuditService.verify in a process of its own (audit-verify.child.ts), whose peak RSS
 *   is sampled every 10 ms.
 *
 * Each throughput phase runs twice per variant, off and on alternating, and reports the better
 * run of each. Every read is checked to return 20 items; the verification must come back ok.
 */

const ADD_ITEMS = 20_000;
const CONCURRENT_CALLERS = 16;
const VERIFY_RECORDS = 1_000_000;
const actor = { type: 'service' as const, id: 'bench', tenantId: 'bench' };

/** The benchmark's result, as `--json` prints it. */
export interface AuditBenchResult {
  readonly audit: {
    readonly add: { readonly off: number; readonly on: number };
    readonly readLimit20: { readonly off: number; readonly on: number };
    readonly readLimit20Concurrent16: { readonly off: number; readonly on: number };
    readonly verifyRecordsPerSec: number;
    readonly verifyPeakRssMb: number;
  };
}

interface Store {
  readonly path: string;
  readonly rootKey: string;
  readonly storage: TypeOrmSessionStorage;
  readonly keyRing: KeyRing;
  readonly trail: AuditTrail;
  service(audited: boolean): EncryptedSessionService;
  /** Closes the file, keeping it. */
  close(): Promise<void>;
  dispose(): Promise<void>;
}

async function openStore(): Promise<Store> {
  const directory = mkdtempSync(join(tmpdir(), 'nes-bench-audit-'));
  const path = join(directory, 'sessions.sqlite');
  const rootKey = newRootKeyEntry('k1');
  const dataSource = await openSqliteDataSource({ path });
  await runSessionMigrations(dataSource, dialectFor(dataSource));
  const storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
  const keyRing = new KeyRing(storage, new EnvKeyProvider({ keys: rootKey, activeKeyId: 'k1' }));
  const trail = new AuditTrail(storage.audit, new KeyRingAuditKeys(keyRing, 86_400_000), {
    requireActor: true,
    reads: 'group-commit',
  });
  keyRing.attachAuditTrail(trail);
  const close = async () => {
    await storage.close();
    keyRing.clear();
  };
  return {
    path,
    rootKey,
    storage,
    keyRing,
    trail,
    service: (audited) =>
      new EncryptedSessionService(storage, keyRing, undefined, audited ? trail : undefined),
    close,
    async dispose() {
      await close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

const perSecond = (count: number, ms: number): number => Math.round((count * 1000) / ms);

/** Items/s of ADD_ITEMS appended in batches, and the session they went to. */
async function addPhase(
  service: EncryptedSessionService,
): Promise<{ rate: number; session: EncryptedSession }> {
  const session = await service.open('bench-session', { tenantId: 'bench' });
  const started = performance.now();
  for (let from = 0; from < ADD_ITEMS; from += BATCH_SIZE) {
    const batch = Array.from({ length: BATCH_SIZE }, (_, offset) => itemOf(from + offset));
    await session.addItems(batch);
  }
  return { rate: perSecond(ADD_ITEMS, performance.now() - started), session };
}

async function readOnce(session: EncryptedSession): Promise<void> {
  const items = await session.getItems(READ_LIMIT);
  if (items.length !== READ_LIMIT) throw new Error(`getItems(20) returned ${items.length} items`);
}

async function sequentialReads(session: EncryptedSession): Promise<number> {
  const started = performance.now();
  for (let call = 0; call < LIMIT_READ_CALLS; call++) await readOnce(session);
  return perSecond(LIMIT_READ_CALLS, performance.now() - started);
}

async function concurrentReads(session: EncryptedSession): Promise<number> {
  const perCaller = Math.ceil(LIMIT_READ_CALLS / CONCURRENT_CALLERS);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENT_CALLERS }, async () => {
      for (let call = 0; call < perCaller; call++) await readOnce(session);
    }),
  );
  return perSecond(perCaller * CONCURRENT_CALLERS, performance.now() - started);
}

/** One variant's three rates, in a fresh store. */
async function variant(audited: boolean): Promise<[number, number, number]> {
  const store = await openStore();
  try {
    return await runAs(actor, async () => {
      const { rate, session } = await addPhase(store.service(audited));
      return [rate, await sequentialReads(session), await concurrentReads(session)];
    });
  } finally {
    await store.dispose();
  }
}

/** Writes a chain of `count` records through the trail, in commits of up to 5,000. */
async function writeLongChain(
  store: Store,
  count: number,
  log: (line: string) => void,
): Promise<void> {
  const chain = auditChainOf({ tenantId: 'bench', sessionId: 'long-chain' });
  const macKey = await store.trail.keyring.currentMacKey();
  const burst = 5000;
  for (let written = 0; written < count; written += burst) {
    const size = Math.min(burst, count - written);
    await Promise.all(
      Array.from({ length: size }, (_, index) =>
        store.trail.commitAlone(
          chain,
          buildAuditEvent({
            action: 'session.read',
            outcome: 'success',
            actor,
            target: { tenantId: 'bench', sessionId: 'long-chain', count: written + index },
          }),
          macKey,
        ),
      ),
    );
    if ((written + size) % 200_000 === 0) log(`audit: ${written + size} records written`);
  }
}

/** Runs the audit benchmark; `log` reports progress on stderr. */
export async function auditBenchmark(log: (line: string) => void): Promise<AuditBenchResult> {
  const best = { off: [0, 0, 0], on: [0, 0, 0] };
  for (let round = 0; round < 2; round++) {
    for (const audited of [false, true]) {
      log(`audit: round ${round + 1}, trail ${audited ? 'on' : 'off'}`);
      const rates = await variant(audited);
      const slot = audited ? best.on : best.off;
      rates.forEach((rate, index) => (slot[index] = Math.max(slot[index], rate)));
    }
  }

  const store = await openStore();
  let verified: { recordsPerSec: number; peakRssMb: number; verifiedThroughSeq: number };
  try {
    await runAs(actor, () => writeLongChain(store, VERIFY_RECORDS, log));
    await store.close();
    log('audit: verifying the chain in a process of its own');
    const chainId = auditChainOf({ tenantId: 'bench', sessionId: 'long-chain' }).chainId;
    const child = fileURLToPath(new URL('./audit-verify.child.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [
      child,
      store.path,
      store.rootKey,
      chainId,
    ]);
    verified = JSON.parse(stdout) as typeof verified;
    if (verified.verifiedThroughSeq !== VERIFY_RECORDS) {
      throw new Error(`the verifier stopped at seq ${verified.verifiedThroughSeq}`);
    }
  } finally {
    await store.dispose();
  }
  const verifyRecordsPerSec = verified.recordsPerSec;
  const peakRssMb = verified.peakRssMb;
  return {
    audit: {
      add: { off: best.off[0], on: best.on[0] },
      readLimit20: { off: best.off[1], on: best.on[1] },
      readLimit20Concurrent16: { off: best.off[2], on: best.on[2] },
      verifyRecordsPerSec,
      verifyPeakRssMb: peakRssMb,
    },
  };
}

const ratio = (pair: { off: number; on: number }) => (pair.on / pair.off).toFixed(2);

/** One line of the table: a phase, off and on, their ratio and the target. */
const row = (name: string, pair: { off: number; on: number }, unit: string, target: string) =>
  `${name.padEnd(28)}${String(pair.off).padStart(10)}${String(pair.on).padStart(10)}${ratio(pair).padStart(8)}  ${unit}  ${target}\n`;

/** The result as a table, with the targets. */
export function formatAuditReport(result: AuditBenchResult): string {
  const { audit } = result;
  return (
    `Audit trail on SQLite (synchronous FULL)  ${'off'.padStart(10)}${'on'.padStart(10)}   on/off\n` +
    row('add', audit.add, 'items/s', 'target on >= 0.85 x off') +
    row('getItems(20)', audit.readLimit20, 'calls/s', '(single caller)') +
    row(
      'getItems(20) x16 callers',
      audit.readLimit20Concurrent16,
      'calls/s',
      'target on >= 0.6 x off',
    ) +
    `verify 1,000,000-record chain: ${audit.verifyRecordsPerSec} records/s (target >= 150,000), peak RSS ${audit.verifyPeakRssMb} MB (target < 200)\n`
  );
}
