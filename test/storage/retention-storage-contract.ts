import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  LeaseLostError,
  StorageUnavailableError,
  supportsMaintenance,
  type SessionRef,
  type SessionStorage,
} from '../../src/index.js';
import type {
  LeaseStorage,
  SessionWriteScope,
  StorageMaintenance,
} from '../../src/storage/storage.ports.js';
import type { ExpiredItemRecord, JobLease, StoredItem } from '../../src/storage/storage.records.js';
import { EnvKeyProvider, KeyRing } from '../../src/keys/index.js';
import { IdleSessionPurge } from '../../src/sessions/index.js';
import type { HarnessFactory, SessionHarness } from '../support/session-harness.js';
import { newSessionRecord } from '../support/session-records.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { rejectionOf } from '../support/thrown-by.js';

/*
 * What the retention purge needs of an adapter: a scan of the expired items of every session,
 * in keyset pages by (expiry, tenant bytes, session bytes, seq), and a lease fence on a
 * session's unit of work, so a purge that lost its lease commits nothing. Items are written
 * through the storage port (any bytes do as ciphertext there). The scan sees every session
 * of the store, so each test has a store of its own.
 */

/** The callers' clock of the scans; items expire relative to it. */
const NOW = 1_767_000_000_000;
const DEK_ID = '00000000-0000-4000-8000-000000000001';
const DAY_MS = 86_400_000;

/** An item's place in the scan, as the tests compare it. */
type Found = [tenantId: string, sessionId: string, seq: number, expiresAt: number | null];

const uniqueJob = (): string => `retention-${randomUUID()}`;

/** A found item's place in the scan. */
const foundOf = (record: ExpiredItemRecord): Found => [
  record.tenantId,
  record.sessionId,
  record.item.seq,
  record.item.expiresAt,
];

/** A cursor-shaped string: base64url JSON. */
const base64Json = (value: unknown): string =>
  Buffer.from(JSON.stringify(value)).toString('base64url');

export function describeRetentionStorageContract(
  name: string,
  createHarness: HarnessFactory,
): void {
  // Postgres and MySQL/MariaDB end a fenced unit left idle past its lease; SQLite and memory
  // hold the lease for as long as the unit lives.
  const serverEndsIdleUnits = /^(postgres|mariadb|mysql)/.test(name);
  describe(`${name} retention scan and lease fence`, () => {
    let harness: SessionHarness;
    let storage: SessionStorage;
    let maintenance: StorageMaintenance;
    let leases: LeaseStorage;

    beforeEach(async () => {
      harness = await createHarness();
      storage = harness.storage;
      if (!supportsMaintenance(storage)) throw new Error(`${name} offers no maintenance`);
      maintenance = storage.maintenance;
      leases = storage.leases!;
    });
    afterEach(async () => {
      await harness?.close();
    });

    /**
     * A unit that fences with `lease`, deletes item 1 of `ref`, and stays open until `finish()`,
     * then runs `atTheEnd` in the same transaction.
     */
    const unitHeldOpen = (
      ref: SessionRef,
      lease: JobLease,
      atTheEnd?: (scope: SessionWriteScope) => Promise<unknown>,
    ) => {
      let fenced!: () => void;
      const isFenced = new Promise<void>((resolve) => (fenced = resolve));
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const unit = storage.transaction(ref, async (scope) => {
        await scope.fence!(lease);
        await scope.items.deleteBySeq([1]);
        fenced();
        await finished;
        await atTheEnd?.(scope);
      });
      return { isFenced, finish, unit };
    };

    /** Creates the session if needed and appends items with these expiries, as an append does. */
    const append = (ref: SessionRef, expiries: Array<number | null>): Promise<StoredItem[]> =>
      storage.transaction(ref, async (scope) => {
        await scope.session.insertIfAbsent(newSessionRecord(ref));
        const first = (await scope.session.reserveSequence(expiries.length, NOW))!;
        const items = expiries.map((expiresAt, index) => ({
          seq: first + index,
          dekId: DEK_ID,
          expiresAt,
          createdAt: NOW - 60_000,
          ciphertext: Buffer.from(`${ref.tenantId}/${ref.sessionId}/${first + index}\u0000\u00ff`),
        }));
        await scope.items.insertMany(items);
        return items;
      });

    /** Every page of the scan at `now`, `limit` items each. */
    const scanAll = async (now: number, limit: number) => {
      const pages: Array<{ found: Found[]; cursor: string | undefined }> = [];
      let cursor: string | undefined;
      do {
        const page = await maintenance.listExpiredItems!(now, cursor, limit);
        pages.push({ found: page.items.map(foundOf), cursor: page.cursor });
        cursor = page.cursor;
        if (pages.length > 50) throw new Error('the scan does not end');
      } while (cursor !== undefined);
      return pages;
    };

    /** The seqs of a session's items, expired or not, as stored. */
    const storedSeqs = (ref: SessionRef) =>
      storage.read(ref, async (scope) =>
        (await scope.items.listVisiblePage(0, 0, Number.MAX_SAFE_INTEGER, 100)).map(
          (item) => item.seq,
        ),
      );

    const deleteItem = (ref: SessionRef, seq: number) =>
      storage.transaction(ref, (scope) => scope.items.deleteBySeq([seq]));

    it('offers the scan and a fence on units of work', async () => {
      expect('listExpiredItems' in maintenance).toBe(true);
      expect(
        await storage.transaction({ tenantId: 't', sessionId: 's' }, async (scope) => scope.fence),
      ).toBeTypeOf('function');
    });

    it('lists only items expired at now, of every session and tenant, by expiry, tenant, session and seq', async () => {
      const a1 = { tenantId: 'tenant-a', sessionId: 's1' };
      const a2 = { tenantId: 'tenant-a', sessionId: 's2' };
      const b1 = { tenantId: 'tenant-b', sessionId: 's1' };
      await append(b1, [NOW - 5_000, null, NOW + 1, NOW - 1_000]);
      await append(a2, [NOW - 1_000, NOW, NOW + 60_000, NOW - 1_000]);
      await append(a1, [null, NOW - 1_000, NOW - 9_000]);

      const [page, ...more] = await scanAll(NOW, 100);
      expect(more).toEqual([]);
      expect(page).toEqual({
        found: [
          ['tenant-a', 's1', 3, NOW - 9_000],
          ['tenant-b', 's1', 1, NOW - 5_000],
          ['tenant-a', 's1', 2, NOW - 1_000],
          ['tenant-a', 's2', 1, NOW - 1_000],
          ['tenant-a', 's2', 4, NOW - 1_000],
          ['tenant-b', 's1', 4, NOW - 1_000],
          ['tenant-a', 's2', 2, NOW],
        ],
        cursor: undefined,
      });
      // The whole stored item comes back, as it was written.
      const [first] = (await maintenance.listExpiredItems!(NOW, undefined, 1)).items;
      expect(first).toEqual({
        tenantId: 'tenant-a',
        sessionId: 's1',
        item: {
          seq: 3,
          dekId: DEK_ID,
          expiresAt: NOW - 9_000,
          createdAt: NOW - 60_000,
          ciphertext: Buffer.from(`tenant-a/s1/3\u0000\u00ff`),
        },
      });
      expect(await scanAll(NOW - 10_000, 100)).toEqual([{ found: [], cursor: undefined }]);
    });

    it('pages with a cursor: limit 2 over 5 items gives 2, 2 and 1, and no item twice', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'pages' };
      await append(ref, [NOW - 500, NOW - 400, null, NOW - 300, NOW - 200, NOW - 100]);
      const pages = await scanAll(NOW, 2);
      expect(pages.map((page) => page.found.map(([, , seq]) => seq))).toEqual([
        [1, 2],
        [4, 5],
        [6],
      ]);
      expect(pages.map((page) => page.cursor === undefined)).toEqual([false, false, true]);
      // Items left in place are passed over, not found again.
      expect(await storedSeqs(ref)).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it('continues after the cursor when the listed items were deleted between pages', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'purged' };
      await append(ref, [NOW - 500, NOW - 400, NOW - 300, NOW - 200, NOW - 100]);
      const seen: number[][] = [];
      let cursor: string | undefined;
      do {
        const page = await maintenance.listExpiredItems!(NOW, cursor, 2);
        seen.push(page.items.map((record) => record.item.seq));
        for (const record of page.items) await deleteItem(ref, record.item.seq);
        cursor = page.cursor;
      } while (cursor !== undefined);
      expect(seen).toEqual([[1, 2], [3, 4], [5]]);
      expect(await storedSeqs(ref)).toEqual([]);
    });

    it('keeps ids that differ only by case, a trailing space or normalisation apart, ordered by bytes', async () => {
      const tenants = ['Tenant', 'tenant', 'a', 'a ', '\u00e9', 'e\u0301'];
      const sessions = ['S', 's', 'x', 'x ', 'caf\u00e9', 'cafe\u0301'];
      const refs = [
        ...tenants.map((tenantId) => ({ tenantId, sessionId: 'session' })),
        ...sessions.map((sessionId) => ({ tenantId: 'ids', sessionId })),
      ];
      for (const ref of refs) await append(ref, [NOW - 1_000]);
      const byBytes = refs.toSorted(
        (x, y) =>
          Buffer.compare(Buffer.from(x.tenantId), Buffer.from(y.tenantId)) ||
          Buffer.compare(Buffer.from(x.sessionId), Buffer.from(y.sessionId)),
      );
      const expected = byBytes.map((ref): Found => [ref.tenantId, ref.sessionId, 1, NOW - 1_000]);
      expect((await scanAll(NOW, 100))[0].found).toEqual(expected);
      // One by one: the cursor's comparison of ids is by bytes too.
      const pages = await scanAll(NOW, 1);
      expect(pages.flatMap((page) => page.found)).toEqual(expected);
    });

    it('refuses a cursor no page returned with InvalidArgumentError', async () => {
      for (const cursor of [
        'not a cursor',
        '',
        base64Json({ expiresAt: 1 }),
        base64Json([1, 'tenant', 'session']),
        base64Json(['1', 'tenant', 'session', 1]),
        base64Json([1, 'tenant', 2, 1]),
      ]) {
        const error = await rejectionOf(() => maintenance.listExpiredItems!(NOW, cursor, 10));
        expect(error, cursor).toBeInstanceOf(InvalidArgumentError);
        expect(error.message).toMatch(/cursor passed to listExpiredItems/);
      }
    });

    it('commits a unit fenced by a lease its job holds', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'fenced' };
      await append(ref, [NOW - 100, NOW - 50]);
      const lease = (await leases.acquire(uniqueJob(), 'purge-a', 30_000))!;
      const deleted = await storage.transaction(ref, async (scope) => {
        await scope.fence!(lease);
        return scope.items.deleteBySeq([1]);
      });
      expect(deleted).toBe(1);
      expect(await storedSeqs(ref)).toEqual([2]);
    });

    it('refuses a lease taken afresh by another owner, and stores nothing of the unit', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'stale' };
      await append(ref, [NOW - 100, NOW - 50]);
      const job = uniqueJob();
      const stale = (await leases.acquire(job, 'purge-a', 50))!;
      await sleep(150);
      const taken = (await leases.acquire(job, 'purge-b', 30_000))!;
      expect(taken.token).toBe(2);
      const error = await rejectionOf(() =>
        storage.transaction(ref, async (scope) => {
          await scope.items.deleteBySeq([1]);
          await scope.fence!(stale);
          await scope.items.deleteBySeq([2]);
        }),
      );
      expect(error).toBeInstanceOf(LeaseLostError);
      expect(error.message).toBe(
        `Job '${job}' no longer holds its lease (token 1): another replica may hold it now. Nothing of this write was stored; the job stops and the lease holder carries on`,
      );
      expect(await storedSeqs(ref)).toEqual([1, 2]);
      expect(await leases.current(job)).toEqual(taken);
    });

    it('refuses a lease with another owner or token than the stored one', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'impostor' };
      await append(ref, [NOW - 100]);
      const held = (await leases.acquire(uniqueJob(), 'purge-a', 30_000))!;
      const forged: JobLease[] = [
        { ...held, owner: 'purge-b' },
        { ...held, owner: 'PURGE-A' },
        { ...held, token: held.token + 1 },
        { ...held, job: uniqueJob() },
      ];
      for (const lease of forged) {
        const error = await rejectionOf(() =>
          storage.transaction(ref, async (scope) => {
            await scope.fence!(lease);
            await scope.items.deleteBySeq([1]);
          }),
        );
        expect(error, JSON.stringify(lease)).toBeInstanceOf(LeaseLostError);
      }
      expect(await storedSeqs(ref)).toEqual([1]);
    });

    it('refuses a lease once its ttl ran out by the storage clock, nobody else holding it', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'lapsed' };
      await append(ref, [NOW - 100]);
      const lease = (await leases.acquire(uniqueJob(), 'purge-a', 1_500))!;
      await sleep(1_800);
      const error = await rejectionOf(() =>
        storage.transaction(ref, async (scope) => {
          await scope.items.deleteBySeq([1]);
          await scope.fence!(lease);
        }),
      );
      expect(error).toBeInstanceOf(LeaseLostError);
      expect(await storedSeqs(ref)).toEqual([1]);
    });

    it('commits nothing of a unit whose work caught the fence error', async () => {
      const ref = { tenantId: 'tenant', sessionId: 'caught' };
      await append(ref, [NOW - 100]);
      const lease = (await leases.acquire(uniqueJob(), 'purge-a', 30_000))!;
      const error = await rejectionOf(() =>
        storage.transaction(ref, async (scope) => {
          await scope.items.deleteBySeq([1]);
          await scope.fence!({ ...lease, owner: 'purge-b' }).catch(() => undefined);
          return 'done';
        }),
      );
      expect(error).toBeInstanceOf(LeaseLostError);
      expect(await storedSeqs(ref)).toEqual([1]);
    });

    // Redis keeps each session in a hash slot of its own: no unit spans two sessions there.
    it.runIf(!name.startsWith('redis'))(
      'fences a multi-session unit: under a stale lease it stores nothing of any of its sessions',
      async () => {
        const refs = [
          { tenantId: 'tenant', sessionId: 'across-1' },
          { tenantId: 'tenant', sessionId: 'across-2' },
        ];
        for (const ref of refs) await append(ref, [NOW - 100, NOW - 50]);
        const job = uniqueJob();
        const stale = (await leases.acquire(job, 'purge-a', 50))!;
        await sleep(150);
        expect(await leases.acquire(job, 'purge-b', 30_000)).toBeDefined();
        const error = await rejectionOf(() =>
          storage.transactionAcross!('tenant', refs, async (unit) => {
            await unit.scopes[0].items.deleteBySeq([1]);
            await unit.scopes[0].fence!(stale);
            await unit.scopes[1].items.deleteBySeq([1]);
          }),
        );
        expect(error).toBeInstanceOf(LeaseLostError);
        expect([await storedSeqs(refs[0]), await storedSeqs(refs[1])]).toEqual([
          [1, 2],
          [1, 2],
        ]);
      },
    );

    it.runIf(!serverEndsIdleUnits)(
      'lets no other owner take the lease while a fenced unit runs, even once it lapsed',
      async () => {
        const ref = { tenantId: 'tenant', sessionId: 'held' };
        await append(ref, [NOW - 100]);
        const job = uniqueJob();
        const lease = (await leases.acquire(job, 'purge-a', 1_000))!;
        const { isFenced, finish, unit } = unitHeldOpen(ref, lease);
        try {
          await isFenced;
          await sleep(1_300);
          // SQLite: the taking waits for the unit's write lock; memory refuses it at once.
          const taking = leases.acquire(job, 'purge-b', 30_000);
          const early = await Promise.race([taking, sleep(300).then(() => 'waiting' as const)]);
          expect(early === 'waiting' || early === undefined, JSON.stringify(early)).toBe(true);
          finish();
          await unit;
          const taken = (await taking) ?? (await leases.acquire(job, 'purge-b', 30_000));
          expect(taken).toMatchObject({ job, owner: 'purge-b', token: 2 });
        } finally {
          finish();
          await unit.catch(() => undefined);
        }
        expect(await storedSeqs(ref)).toEqual([]);
      },
    );

    it.runIf(serverEndsIdleUnits)(
      "lets the holder's units fence side by side, while renewing the lease waits for them",
      async () => {
        const [first, second] = ['first', 'second'].map((sessionId) => ({
          tenantId: 'tenant',
          sessionId,
        }));
        await append(first, [NOW - 100]);
        await append(second, [NOW - 100]);
        const lease = (await leases.acquire(uniqueJob(), 'purge-a', 30_000))!;
        const { isFenced, finish, unit: firstUnit } = unitHeldOpen(first, lease);
        try {
          await isFenced;
          const secondUnit = storage.transaction(second, async (scope) => {
            await scope.fence!(lease);
            return scope.items.deleteBySeq([1]);
          });
          const beside = await Promise.race([secondUnit, sleep(3_000).then(() => 'waiting')]);
          expect(beside).toBe(1);
          const renewing = leases.renew(lease, 30_000);
          const early = await Promise.race([renewing, sleep(300).then(() => 'waiting' as const)]);
          expect(early).toBe('waiting');
          finish();
          await firstUnit;
          expect(await renewing).toMatchObject({ owner: 'purge-a', token: lease.token });
        } finally {
          finish();
          await firstUnit.catch(() => undefined);
        }
        expect([await storedSeqs(first), await storedSeqs(second)]).toEqual([[], []]);
      },
    );

    it.runIf(serverEndsIdleUnits)(
      'ends a fenced unit left idle past its lease (a paused job), so another owner takes over and the unit stores nothing',
      async () => {
        const ref = { tenantId: 'tenant', sessionId: 'paused' };
        await append(ref, [NOW - 100]);
        const job = uniqueJob();
        const lease = (await leases.acquire(job, 'purge-a', 1_000))!;
        // Idle in its transaction, as a stopped process is, then deleting again once resumed.
        const {
          isFenced,
          finish: resume,
          unit,
        } = unitHeldOpen(ref, lease, (scope) => scope.items.deleteBySeq([1]));
        try {
          await isFenced;
          const taken = await leases.acquire(job, 'purge-b', 30_000).then(async (first) => {
            // Taken once the server ended the idle unit (about a second after the lease lapsed).
            for (let waited = 0; !first && waited < 10_000; waited += 250) {
              await sleep(250);
              first = await leases.acquire(job, 'purge-b', 30_000);
            }
            return first;
          });
          expect(taken).toMatchObject({ job, owner: 'purge-b', token: 2 });
          resume();
          // The server closed its connection: a retryable storage error, nothing committed.
          await expect(unit).rejects.toBeInstanceOf(StorageUnavailableError);
        } finally {
          resume();
          await unit.catch(() => undefined);
        }
        expect(await storedSeqs(ref)).toEqual([1]);
      },
    );

    // Redis units commit by compare-and-set: whichever commits first wins, so there the purge
    // may rightly win this race; elsewhere the append holds the row lock the purge waits for.
    it.runIf(!name.startsWith('redis'))(
      'leaves a session alone when an append committed while the idle purge waited for its lock',
      async () => {
        const ref = { tenantId: 't-idle', sessionId: 'woken' };
        await append(ref, [null]);
        const lease = (await leases.acquire(uniqueJob(), 'purge-a', 30_000))!;
        const keyRing = new KeyRing(
          storage,
          new EnvKeyProvider({ keys: newRootKeyEntry('k1'), activeKeyId: 'k1' }),
        );
        // An append's unit: it holds the session's lock, with a later activity time, until
        // finish().
        let locked!: () => void;
        const isLocked = new Promise<void>((resolve) => (locked = resolve));
        let finish!: () => void;
        const finished = new Promise<void>((resolve) => (finish = resolve));
        const appending = storage.transaction(ref, async (scope) => {
          await scope.session.lockForWrite(NOW + 10 * DAY_MS);
          locked();
          await finished;
        });
        await isLocked;
        const purging = new IdleSessionPurge(storage, keyRing, undefined).purgeSession(
          ref,
          NOW + DAY_MS,
          lease,
        );
        await sleep(300);
        finish();
        await appending;
        expect(await purging).toEqual({ outcome: 'active' });
        expect(await storedSeqs(ref)).toEqual([1]);
      },
    );
  });
}
