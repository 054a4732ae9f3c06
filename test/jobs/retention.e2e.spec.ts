import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleModule } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import type { DataSource } from 'typeorm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditService,
  ConfigurationError,
  EncryptedSessionJobs,
  EncryptedSessionModule,
  EncryptedSessionService,
  EnvKeyProvider,
  KekRotationService,
  KeyRing,
  LeaseLostError,
  MemorySessionStorage,
  RetentionService,
  runAs,
  type EncryptedSessionModuleOptions,
  type SessionStorage,
} from '../../src/index.js';
import { ExpiredItemPurge } from '../../src/sessions/index.js';
import { isBackgroundWork } from '../../src/storage/index.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/*
 * The retention purge on the embedded SQLite store, through the module as a host boots it:
 * expired items go (audited, a session's share of a page per batch), live ones stay, an item
 * whose expiry column was set back by hand is kept, and a run that lost its lease commits
 * nothing.
 */

const JOB = 'nest-encrypted-sessions:retention-purge';
const CANARY = 'CANARY-retention-7f3a';
const k1 = newRootKeyEntry('k1');
const actor = { type: 'service' as const, id: 'retention-test', tenantId: 'acme' };
const ITEM_TTL_MS = 1000;

/** `count` items in each of `sessions` that expire in a second, and one live session. */
async function expiringSessions(ref: TestingModule, sessions: string[], count: number) {
  const service = ref.get(EncryptedSessionService);
  await runAs(actor, async () => {
    for (const sessionId of sessions) {
      const session = await service.open(sessionId, {
        tenantId: 'acme',
        subjectId: `patient-${sessionId}`,
        ttlSeconds: ITEM_TTL_MS / 1000,
      });
      await session.addItems(
        Array.from({ length: count }, (_, index) => ({
          role: 'user' as const,
          content: `${CANARY} ${sessionId} ${index}`,
        })),
      );
    }
    const live = await service.open('live', { tenantId: 'acme', ttlSeconds: null });
    await live.addItems([{ role: 'user', content: 'kept' }]);
  });
  await sleep(ITEM_TTL_MS + 100);
}

describe('retention purge', () => {
  let directory: string;
  let databasePath: string;
  let moduleRef: TestingModule | undefined;
  let raw: DataSource | undefined;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-retention-'));
    databasePath = join(directory, 'sessions.sqlite');
  });
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    await raw?.destroy();
    raw = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  async function boot(
    options: Partial<EncryptedSessionModuleOptions> = {},
    withScheduler = false,
  ): Promise<TestingModule> {
    const ref = await Test.createTestingModule({
      imports: [
        ...(withScheduler ? [ScheduleModule.forRoot()] : []),
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: k1, activeKeyId: 'k1' } },
          storage: { type: 'sqlite', path: databasePath },
          audit: { requireActor: true },
          ...options,
        }),
      ],
    }).compile();
    moduleRef = ref;
    await ref.init();
    return ref;
  }

  /** A second connection to the file, for what the module does not show (rows, columns). */
  async function sql<T = Record<string, unknown>>(
    statement: string,
    params: unknown[] = [],
  ): Promise<T[]> {
    raw ??= await openSqliteDataSource({ path: databasePath });
    return raw.query<T[]>(statement, params);
  }

  const itemRows = async (sessionId: string) =>
    (
      await sql<{ n: number }>('SELECT count(*) AS n FROM nes_items WHERE session_id = ?', [
        sessionId,
      ])
    )[0].n;

  it('delete expired items, keep live ones, and report the counts', async () => {
    const ref = await boot();
    await expiringSessions(ref, ['s-1', 's-2'], 3);

    const report = await ref.get(RetentionService).purgeExpired();

    expect(report).toMatchObject({ job: JOB, outcome: 'done' });
    expect(report.result).toMatchObject({
      scanned: 6,
      purged: 6,
      shredded: 0,
      unverified: 0,
      skippedForHold: 0,
      batches: 2,
      complete: true,
    });
    expect(await itemRows('s-1')).toBe(0);
    expect(await itemRows('s-2')).toBe(0);
    expect(await itemRows('live')).toBe(1);
    const live = await runAs(actor, () =>
      ref.get(EncryptedSessionService).open('live', { tenantId: 'acme' }),
    );
    expect(await runAs(actor, () => live.getItems())).toEqual([{ role: 'user', content: 'kept' }]);
  });

  it('record one retention.purge.batch event per session batch, as the job, with no content', async () => {
    const ref = await boot();
    await expiringSessions(ref, ['s-1'], 4);
    await ref.get(RetentionService).purgeExpired();

    const audit = ref.get(AuditService);
    const page = await runAs(actor, () =>
      audit.accessReport({ tenantId: 'acme', sessionId: 's-1', from: 0, to: Date.now() + 60_000 }),
    );
    const purges = page.events.filter((event) => event.action === 'retention.purge.batch');
    expect(purges).toHaveLength(1);
    expect(purges[0]).toMatchObject({
      outcome: 'success',
      actor: { type: 'system', id: JOB, tenantId: 'acme' },
      target: { tenantId: 'acme', sessionId: 's-1', count: 4 },
    });
    // The session's subject, as the deleting unit read it from the session's row.
    const bySubject = await runAs(actor, () =>
      audit.accessReport({
        tenantId: 'acme',
        subjectId: 'patient-s-1',
        from: 0,
        to: Date.now() + 60_000,
      }),
    );
    expect(bySubject.events.filter((event) => event.action === 'retention.purge.batch')).toEqual(
      purges,
    );
    expect(await runAs(actor, () => audit.verify({ tenantId: 'acme' }))).toMatchObject({
      ok: true,
    });
    const bodies = await sql<{ body: string }>('SELECT body FROM nes_audit_records');
    expect(bodies.some((row) => row.body.includes(CANARY))).toBe(false);
  });

  it('keep an item whose expiry column was set back by hand, and record the integrity failure', async () => {
    const ref = await boot();
    const service = ref.get(EncryptedSessionService);
    await runAs(actor, async () => {
      const session = await service.open('forged', { tenantId: 'acme', ttlSeconds: null });
      await session.addItems([{ role: 'user', content: `${CANARY} never expires` }]);
    });
    // Someone with database access makes a live item look expired.
    await sql('UPDATE nes_items SET expires_at = 1 WHERE session_id = ?', ['forged']);

    const report = await ref.get(RetentionService).purgeExpired();

    expect(report.result).toMatchObject({ scanned: 1, purged: 0, unverified: 1, batches: 0 });
    expect(await itemRows('forged')).toBe(1);
    const page = await runAs(actor, () =>
      ref
        .get(AuditService)
        .accessReport({ tenantId: 'acme', sessionId: 'forged', from: 0, to: Date.now() + 60_000 }),
    );
    expect(page.events.map((event) => [event.action, event.outcome])).toContainEqual([
      'session.integrity_failure',
      'failure',
    ]);
  });

  it('stop at maxBatchesPerRun and let the next run go on', async () => {
    const ref = await boot({ jobs: { retentionPurge: { batchSize: 2, maxBatchesPerRun: 2 } } });
    await expiringSessions(ref, ['s-1', 's-2', 's-3'], 2);
    const retention = ref.get(RetentionService);

    const first = await retention.purgeExpired();
    expect(first.result).toMatchObject({ purged: 4, batches: 2, complete: false });
    const second = await retention.purgeExpired();
    expect(second.result).toMatchObject({ purged: 2, batches: 1, complete: true });
    expect(ref.get(EncryptedSessionJobs).status()).toContainEqual(
      expect.objectContaining({ key: 'retentionPurge', lastRun: second }),
    );
  });

  it('stop at maxBatchesPerRun inside a page, and let the next run purge its other sessions', async () => {
    const ref = await boot({ jobs: { retentionPurge: { batchSize: 100, maxBatchesPerRun: 2 } } });
    await expiringSessions(ref, ['s-1', 's-2', 's-3'], 2);
    const retention = ref.get(RetentionService);

    const first = await retention.purgeExpired();
    expect(first.result).toMatchObject({ scanned: 6, purged: 4, batches: 2, complete: false });
    const second = await retention.purgeExpired();
    expect(second.result).toMatchObject({ scanned: 2, purged: 2, batches: 1, complete: true });
  });

  it("delete a page's sessions in one transaction: when one's event cannot be written, none loses an item", async () => {
    const ref = await boot();
    await expiringSessions(ref, ['s-1', 's-2'], 2);
    // The audit store refuses the unit's second purge event: a real write failure, no mock.
    await sql(
      `CREATE TRIGGER "refuse_second_purge" BEFORE INSERT ON "nes_audit_records" WHEN NEW."action" = 'retention.purge.batch' AND NEW."outcome" = 'success' AND (SELECT count(*) FROM "nes_audit_records" WHERE "action" = 'retention.purge.batch') > 0 BEGIN SELECT RAISE(ABORT, 'audit store refuses writes'); END`,
    );
    const retention = ref.get(RetentionService);

    const failed = await retention.purgeExpired();

    expect(failed).toMatchObject({ outcome: 'failed', errorCode: 'AUDIT_WRITE_FAILED' });
    expect([await itemRows('s-1'), await itemRows('s-2')]).toEqual([2, 2]);
    // Each batch's failure is on record under its session's subject (read again after the
    // unit rolled back).
    for (const sessionId of ['s-1', 's-2']) {
      const report = await runAs(actor, () =>
        ref.get(AuditService).accessReport({
          tenantId: 'acme',
          subjectId: `patient-${sessionId}`,
          from: 0,
          to: Date.now() + 60_000,
        }),
      );
      expect(
        report.events
          .filter((event) => event.action === 'retention.purge.batch')
          .map((event) => [event.outcome, event.target.sessionId]),
      ).toEqual([['failure', sessionId]]);
    }
    await sql('DROP TRIGGER "refuse_second_purge"');
    const retried = await retention.purgeExpired();
    expect(retried.result).toMatchObject({ purged: 4, batches: 2, complete: true });
    expect([await itemRows('s-1'), await itemRows('s-2')]).toEqual([0, 0]);
  });

  it('skip the run while another replica holds the lease', async () => {
    const ref = await boot();
    await expiringSessions(ref, ['s-1'], 2);
    const dataSource = await openSqliteDataSource({ path: databasePath });
    const replica = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
    try {
      const held = await replica.leases.acquire(JOB, 'other-replica', 30_000);
      expect(held).toBeDefined();

      const report = await ref.get(RetentionService).purgeExpired();

      expect(report).toMatchObject({ outcome: 'skipped', heldBy: 'other-replica' });
      expect(await itemRows('s-1')).toBe(2);
    } finally {
      await replica.close();
    }
  });

  it('purge on the cron when the job is enabled', async () => {
    const ref = await boot(
      { jobs: { retentionPurge: { enabled: true, cron: '* * * * * *' } } },
      true,
    );
    await expiringSessions(ref, ['s-1'], 2);
    for (let waited = 0; waited < 10_000 && (await itemRows('s-1')) > 0; waited += 250) {
      await sleep(250);
    }
    expect(await itemRows('s-1')).toBe(0);
    expect(ref.get(EncryptedSessionJobs).status()).toContainEqual(
      expect.objectContaining({
        key: 'retentionPurge',
        enabled: true,
        lastRun: expect.objectContaining({ outcome: 'done' }),
      }),
    );
  });
});

/** The retention service over `storage` and `keyRing`, built by hand: no job on a cron. */
function retentionOver(storage: SessionStorage, keyRing: KeyRing): RetentionService {
  const jobs = new EncryptedSessionJobs(
    storage,
    new KekRotationService(storage, keyRing),
    unscheduledJobs,
  );
  return new RetentionService(storage, keyRing, jobs, unscheduledJobs);
}

/** The jobs config of the services built by hand below: none on a cron. */
const unscheduledJobs = {
  leaseTtlMs: 60_000,
  kekRewrap: { enabled: false, cron: '0 * * * *', batchSize: 100, maxBatchesPerRun: 50 },
  keyRotation: { enabled: false, cron: '0 3 * * *', batchSize: 500, maxBatchesPerRun: 1000 },
  retentionPurge: {
    enabled: false,
    cron: '* * * * *',
    batchSize: 100,
    maxBatchesPerRun: 10,
    sessionIdleDays: null,
  },
};

describe('a purge batch fenced by a lease', () => {
  const ref = { tenantId: 'acme', sessionId: 'fenced' };

  it('commit nothing once the lease passed to another owner', async () => {
    const storage = new MemorySessionStorage();
    const keyRing = new KeyRing(storage, new EnvKeyProvider({ keys: k1, activeKeyId: 'k1' }));
    const service = new EncryptedSessionService(storage, keyRing);
    const session = await service.open(ref.sessionId, { tenantId: ref.tenantId, ttlSeconds: 1 });
    await session.addItems([{ role: 'user', content: 'old' }]);
    const stale = (await storage.leases.acquire(JOB, 'paused-replica', 1000))!;
    await sleep(1100);
    const taken = await storage.leases.acquire(JOB, 'new-holder', 30_000);
    expect(taken?.token).toBeGreaterThan(stale.token);
    const rows = await storage.read(ref, (scope) => scope.items.listVisiblePage(0, 0, 10, 10));

    const purge = new ExpiredItemPurge(storage, keyRing, undefined);
    const failure = await purge
      .purgeSession(ref, rows, Date.now(), stale)
      .catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(LeaseLostError);
    expect(await storage.read(ref, (scope) => scope.items.listVisiblePage(0, 0, 10, 10))).toEqual(
      rows,
    );
  });

  it('preview a run (dry run) as background work, as the run itself is', async () => {
    const memory = new MemorySessionStorage();
    const scannedInBackground: boolean[] = [];
    const watched: SessionStorage = {
      backend: 'watched-memory',
      read: (sessionRef, work) => memory.read(sessionRef, work),
      transaction: (sessionRef, work) => memory.transaction(sessionRef, work),
      leases: memory.leases,
      maintenance: {
        ...memory.maintenance,
        listExpiredItems: (now, cursor, limit) => {
          scannedInBackground.push(isBackgroundWork());
          return memory.maintenance.listExpiredItems!(now, cursor, limit);
        },
      },
      close: () => memory.close(),
    };
    const keyRing = new KeyRing(watched, new EnvKeyProvider({ keys: k1, activeKeyId: 'k1' }));
    const retention = retentionOver(watched, keyRing);

    const report = await retention.purgeExpired({ dryRun: true });

    expect(report).toMatchObject({ outcome: 'done', result: { dryRun: true } });
    expect(scannedInBackground).toEqual([true]);
  });

  it('load a data key again when the ring evicted it while the next one loaded, and purge every item', async () => {
    const storage = new MemorySessionStorage();
    // Two items per data key: four items in two appends fill two generations.
    const keyRing = new KeyRing(storage, new EnvKeyProvider({ keys: k1, activeKeyId: 'k1' }), {
      rotationMaxItems: 2,
    });
    const service = new EncryptedSessionService(storage, keyRing);
    const session = await service.open('two-keys', { tenantId: 'acme', ttlSeconds: 1 });
    for (const batch of [0, 1]) {
      await session.addItems(
        [0, 1].map((n) => ({ role: 'user' as const, content: `${batch}-${n}` })),
      );
    }
    await sleep(1_100);
    // The second key's load evicts (and zeroes) the first, as a full cache does.
    const keyForRead = keyRing.keyForRead.bind(keyRing);
    let loads = 0;
    keyRing.keyForRead = async (sessionRef, dekId) => {
      if (++loads === 2) keyRing.forgetSession(sessionRef);
      return keyForRead(sessionRef, dekId);
    };
    const retention = retentionOver(storage, keyRing);

    const report = await retention.purgeExpired();

    expect(report.result).toMatchObject({ purged: 4, unverified: 0 });
    expect(loads).toBeGreaterThan(2);
  });

  it('refuse to run on a storage that cannot scan by expiry', () => {
    const memory = new MemorySessionStorage();
    // A host's own adapter with no maintenance port.
    const hostAdapter: SessionStorage = {
      backend: 'host-adapter',
      read: (sessionRef, work) => memory.read(sessionRef, work),
      transaction: (sessionRef, work) => memory.transaction(sessionRef, work),
      leases: memory.leases,
      close: () => memory.close(),
    };
    const keyRing = new KeyRing(hostAdapter, new EnvKeyProvider({ keys: k1, activeKeyId: 'k1' }));
    const retention = retentionOver(hostAdapter, keyRing);

    expect(() => retention.purgeExpired()).toThrow(ConfigurationError);
    expect(() => retention.purgeExpired()).toThrow(/cannot scan items by expiry/);
  });
});
