import { setTimeout as sleep } from 'node:timers/promises';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  runAs,
  supportsMaintenance,
  type EncryptedSessionModuleOptions,
  type StorageMaintenance,
} from '../../src/index.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import { startReplicas, type JobReplica, type ReplicaRun } from '../support/job-replica.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import {
  openThrowawayStore,
  storeBackendsUnderTest,
  type OpenThrowawayStore,
  type StoreLocation,
} from '../support/throwaway-store.js';

/*
 * Three real app processes run the retention purge on a one-second cron against one store, as
 * three replicas of a host do. One acts per run (the job's lease); kill -9 of the acting one
 * mid-run, and another finishes after the lease lapses; SIGSTOP of the acting one past its
 * lease, another takes over, and on SIGCONT its next write is refused. Each time: every
 * expired item purged once (the audit trail's counts add up to exactly the items there were),
 * nothing live touched, the trail intact.
 */

const JOB = 'nest-encrypted-sessions:retention-purge';
const REPLICAS = 3;
const LEASE_TTL_SECONDS = 5;
const SESSIONS = 30;
const ITEMS_PER_SESSION = 100;
const EXPIRED = SESSIONS * ITEMS_PER_SESSION;
/** Small batches, so a run lasts long enough to be interrupted mid-way. */
const BATCH_SIZE = 10;
const BOOT_TIMEOUT_MS = 60_000;
const actor = { type: 'service' as const, id: 'replica-test', tenantId: 'acme' };

/** The backends the issue names; SQLite is one file on one host. */
const BACKENDS = (await storeBackendsUnderTest()).filter((backend) =>
  ['postgres', 'mysql', 'redis'].includes(backend.type),
);

let library: CompiledLibrary;
beforeAll(() => {
  library = compileLibrary();
}, 60_000);
afterAll(() => library?.dispose());

function storageOption(location: StoreLocation): EncryptedSessionModuleOptions['storage'] {
  switch (location.type) {
    case 'sqlite':
      return { type: 'sqlite', path: location.path };
    case 'redis':
      return { type: 'redis', url: location.url, keyPrefix: location.keyPrefix };
    default:
      return { type: location.type, url: location.url };
  }
}

/** Polls `condition` every 100 ms until it holds; fails with `what` after `timeoutMs`. */
async function until(
  condition: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

/**
 * Runs that acted (not skipped) never overlap: one replica per run. A run that ends refused
 * (its lease lost) is the one that may meet its successor.
 */
function expectOneActorAtATime(runs: readonly ReplicaRun[]): void {
  const acting = runs
    .filter((run) => run.outcome !== 'skipped')
    .toSorted((a, b) => a.startedAt - b.startedAt);
  const overlaps = acting.filter(
    (run, index) =>
      index > 0 &&
      acting[index - 1].outcome === 'done' &&
      run.startedAt < acting[index - 1].finishedAt,
  );
  expect(overlaps).toEqual([]);
}

for (const { name, type, available } of BACKENDS) {
  describe.skipIf(!available)(`${REPLICAS} replicas running the retention purge on ${name}`, () => {
    const rootKey = newRootKeyEntry('k1');
    let store: OpenThrowawayStore;
    let app: TestingModule;
    let replicas: JobReplica[] = [];
    let maintenance: StorageMaintenance;

    beforeAll(async () => {
      store = await openThrowawayStore(type);
      if (!supportsMaintenance(store.storage)) throw new Error(`${name} has no maintenance port`);
      maintenance = store.storage.maintenance;
      app = await Test.createTestingModule({
        imports: [
          EncryptedSessionModule.forRoot({
            keys: { env: { keys: rootKey, activeKeyId: 'k1' } },
            storage: storageOption(store.location),
          }),
        ],
      }).compile();
      await app.init();
      const liveSession = await runAs(actor, () =>
        app.get(EncryptedSessionService).open('live', { tenantId: 'acme', ttlSeconds: null }),
      );
      await runAs(actor, () => liveSession.addItems([{ role: 'user', content: 'kept' }]));
    }, BOOT_TIMEOUT_MS);
    afterEach(async () => {
      await Promise.all(replicas.map((replica) => replica.stop()));
      replicas = [];
    });
    afterAll(async () => {
      await app?.close();
      await store?.dispose();
    });

    /** `EXPIRED` items across `SESSIONS` sessions that expire in a second, under `prefix`. */
    async function expiredItems(prefix: string): Promise<void> {
      const service = app.get(EncryptedSessionService);
      await runAs(actor, async () => {
        for (let index = 0; index < SESSIONS; index++) {
          const session = await service.open(`${prefix}-${index}`, {
            tenantId: 'acme',
            ttlSeconds: 1,
          });
          await session.addItems(
            Array.from({ length: ITEMS_PER_SESSION }, (_, n) => ({
              role: 'user' as const,
              content: `${prefix}-${index}-${n}`,
            })),
          );
        }
      });
      await sleep(1_100);
    }

    const expiredLeft = async () =>
      (await maintenance.listExpiredItems!(Date.now(), undefined, 1)).items.length > 0;
    const expiredCount = async () => {
      let count = 0;
      let cursor: string | undefined;
      do {
        const page = await maintenance.listExpiredItems!(Date.now(), cursor, 1000);
        count += page.items.length;
        cursor = page.cursor;
      } while (cursor !== undefined);
      return count;
    };

    /** Items the purge's audit events say it deleted, over every run so far. */
    async function auditedPurgeCount(): Promise<number> {
      let total = 0;
      let cursor: string | undefined;
      do {
        const page = await runAs(actor, () =>
          app.get(AuditService).accessReport({
            tenantId: 'acme',
            actorId: JOB,
            from: 0,
            to: Date.now() + 60_000,
            limit: 1000,
            cursor,
          }),
        );
        for (const event of page.events) {
          if (event.action === 'retention.purge.batch') total += event.target.count ?? 0;
        }
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      return total;
    }

    /** The replica holding the purge's lease now, once one does. */
    async function actingReplica(): Promise<JobReplica> {
      let acting: JobReplica | undefined;
      await until(
        async () => {
          const lease = await store.storage.leases!.current(JOB);
          const pid = lease && lease.expiresAt > Date.now() ? Number(lease.owner.split(':')[1]) : 0;
          acting = replicas.find((replica) => replica.pid === pid);
          return acting !== undefined;
        },
        20_000,
        'a replica holds the lease',
      );
      return acting!;
    }

    /** `REPLICAS` app processes on the store, each with the purge on its one-second cron. */
    const startPurgingReplicas = () =>
      startReplicas(
        REPLICAS,
        {
          entryUrl: library.entryUrl,
          backend: store.location,
          rootKey,
          leaseTtlSeconds: LEASE_TTL_SECONDS,
          batchSize: BATCH_SIZE,
        },
        BOOT_TIMEOUT_MS,
      );

    const purgeStarted = async () => (await expiredCount()) < EXPIRED;

    async function live(): Promise<unknown[]> {
      const session = await runAs(actor, () =>
        app.get(EncryptedSessionService).open('live', { tenantId: 'acme', ttlSeconds: null }),
      );
      return runAs(actor, () => session.getItems());
    }

    it('kill -9 of the acting replica mid-run: another finishes after its lease lapses, each item purged once', async () => {
      await expiredItems('kill');
      replicas = await startPurgingReplicas();
      await until(purgeStarted, 30_000, 'the purge started');
      const acting = await actingReplica();

      acting.signal('SIGKILL');
      await acting.exited;
      expect(await expiredLeft()).toBe(true);

      await until(async () => !(await expiredLeft()), 60_000, 'every expired item is purged');
      expect(await auditedPurgeCount()).toBe(EXPIRED);
      expect(await live()).toEqual([{ role: 'user', content: 'kept' }]);
      const survivors = replicas.filter((replica) => replica !== acting);
      expect(
        survivors.flatMap((replica) => replica.runs).some((run) => run.outcome === 'done'),
      ).toBe(true);
      expectOneActorAtATime(replicas.flatMap((replica) => replica.runs));
      expect(
        await runAs(actor, () => app.get(AuditService).verify({ tenantId: 'acme' })),
      ).toMatchObject({ ok: true });
    }, 180_000);

    it('SIGSTOP of the acting replica past its lease: another takes over, and on SIGCONT its next write is refused', async () => {
      const before = await auditedPurgeCount();
      await expiredItems('stop');
      replicas = await startPurgingReplicas();
      await until(purgeStarted, 30_000, 'the purge started');
      const stopped = await actingReplica();

      stopped.signal('SIGSTOP');
      const successor = await (async () => {
        let next: JobReplica | undefined;
        await until(
          async () => {
            next = await actingReplica().catch(() => undefined);
            return next !== undefined && next !== stopped;
          },
          60_000,
          'another replica took the lease over',
        );
        return next!;
      })();
      expect(successor).not.toBe(stopped);
      expect(await expiredLeft()).toBe(true);
      // Resumed while the new holder still works: its next write meets the fence.
      stopped.signal('SIGCONT');
      // Its renewal finds the lease gone (lease_lost), or its next fenced write is refused.
      await until(
        () => stopped.runs.some((run) => run.outcome === 'lease_lost' || run.outcome === 'failed'),
        30_000,
        'the resumed replica ends its run refused',
      ).catch((error: unknown) => {
        throw new Error(
          `${(error as Error).message}; its runs: ${JSON.stringify(stopped.runs)}; its stderr: ${stopped.errors}`,
        );
      });

      await until(async () => !(await expiredLeft()), 60_000, 'every expired item is purged');
      expect(await auditedPurgeCount()).toBe(before + EXPIRED);
      expect(await live()).toEqual([{ role: 'user', content: 'kept' }]);
      expectOneActorAtATime(replicas.flatMap((replica) => replica.runs));
      expect(
        await runAs(actor, () => app.get(AuditService).verify({ tenantId: 'acme' })),
      ).toMatchObject({ ok: true });
    }, 240_000);
  });
}
