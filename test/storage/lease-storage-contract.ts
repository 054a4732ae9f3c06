import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError, InvalidArgumentError, MemorySessionStorage } from '../../src/index.js';
import type { LeaseStorage } from '../../src/storage/storage.ports.js';
import type { JobLease } from '../../src/storage/storage.records.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { REDIS_URL } from '../support/redis-support.js';
import type { HarnessFactory, SessionHarness } from '../support/session-harness.js';

/*
 * What every adapter's job leases do: one holder per job at a time, a fencing token that rises
 * with each taking and never goes back, expiry by the backend's own clock. Expiry is waited out
 * for real (short leases): the backend's clock is what is under test.
 */

/** A second storage over the same data, as another replica opens it. */
export interface LeaseReplica {
  readonly leases: LeaseStorage;
  close(): Promise<void>;
}

/** Opens a {@link LeaseReplica} beside a harness's storage. */
export type LeaseReplicaFactory = (harness: SessionHarness) => Promise<LeaseReplica>;

/**
 * The default replica: the same in-memory storage (a process's memory is one replica's), a
 * second connection to the SQLite file, a second storage on a server's pool, or a second Redis
 * connection under the same key prefix.
 */
const replicaOf: LeaseReplicaFactory = async (harness) => {
  const { storage } = harness;
  if (storage instanceof MemorySessionStorage) {
    return { leases: storage.leases, close: async () => undefined };
  }
  if (storage instanceof RedisSessionStorage) {
    const replica = new RedisSessionStorage({ url: REDIS_URL, keyPrefix: storage.keyPrefix });
    return { leases: replica.leases, close: () => replica.close() };
  }
  if (harness.databasePath !== undefined) {
    const dataSource = await openSqliteDataSource({ path: harness.databasePath });
    const replica = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
    return { leases: replica.leases, close: () => replica.close() };
  }
  if (harness.dataSource !== undefined) {
    const replica = new TypeOrmSessionStorage({ dataSource: harness.dataSource });
    return { leases: replica.leases, close: () => replica.close() };
  }
  throw new Error(`No second ${harness.backend} storage to race with; pass a replica factory`);
};

const uniqueJob = (): string => `job-${randomUUID()}`;

/** Asserts a lease by its parts; returns it. */
function expectLease(lease: JobLease | undefined, expected: Partial<JobLease>): JobLease {
  expect(lease).toMatchObject(expected);
  return lease!;
}

/** Asserts that a lease lapses `ttlMs` from now, give or take (the backends run locally). */
function expectExpiresIn(lease: JobLease, ttlMs: number): void {
  expect(Math.abs(lease.expiresAt - (Date.now() + ttlMs))).toBeLessThan(5_000);
}

export function describeLeaseStorageContract(
  name: string,
  createHarness: HarnessFactory,
  openReplica: LeaseReplicaFactory = replicaOf,
): void {
  describe(`${name} job leases`, () => {
    let harness: SessionHarness;
    let leases: LeaseStorage;
    let replica: LeaseReplica;

    beforeAll(async () => {
      harness = await createHarness();
      leases = harness.storage.leases!;
      replica = await openReplica(harness);
    });
    afterAll(async () => {
      await replica?.close();
      await harness?.close();
    });

    it('offers job leases', () => {
      expect(harness.storage.leases).toBeDefined();
    });

    it('gives the first taker token 1 until the ttl, by the storage clock', async () => {
      const job = uniqueJob();
      expect(await leases.current(job)).toBeUndefined();
      const lease = expectLease(await leases.acquire(job, 'replica-a', 30_000), {
        job,
        owner: 'replica-a',
        token: 1,
      });
      expectExpiresIn(lease, 30_000);
      expect(await leases.current(job)).toEqual(lease);
    });

    it('refuses a second owner while the lease is held, and leaves the lease as it was', async () => {
      const job = uniqueJob();
      const held = await leases.acquire(job, 'replica-a', 30_000);
      expect(await leases.acquire(job, 'replica-b', 30_000)).toBeUndefined();
      expect(await replica.leases.acquire(job, 'replica-b', 30_000)).toBeUndefined();
      expect(await leases.current(job)).toEqual(held);
    });

    it('extends the lease of a holder that acquires again, keeping its token', async () => {
      const job = uniqueJob();
      const first = (await leases.acquire(job, 'replica-a', 10_000))!;
      await sleep(20);
      const again = expectLease(await leases.acquire(job, 'replica-a', 20_000), {
        job,
        owner: 'replica-a',
        token: 1,
      });
      expectExpiresIn(again, 20_000);
      expect(again.expiresAt).toBeGreaterThan(first.expiresAt);
      expect(await leases.current(job)).toEqual(again);
    });

    it('renews for its holder with the same token, from now', async () => {
      const job = uniqueJob();
      const first = (await leases.acquire(job, 'replica-a', 10_000))!;
      await sleep(20);
      const renewed = expectLease(await replica.leases.renew(first, 20_000), {
        job,
        owner: 'replica-a',
        token: 1,
      });
      expectExpiresIn(renewed, 20_000);
      expect(renewed.expiresAt).toBeGreaterThan(first.expiresAt);
      expect(await leases.current(job)).toEqual(renewed);
    });

    it('after expiry another owner takes it with token 2; the old holder can neither renew nor release', async () => {
      const job = uniqueJob();
      const old = (await leases.acquire(job, 'replica-a', 50))!;
      await sleep(150);
      const taken = expectLease(await replica.leases.acquire(job, 'replica-b', 30_000), {
        job,
        owner: 'replica-b',
        token: 2,
      });
      expectExpiresIn(taken, 30_000);
      expect(await leases.renew(old, 30_000)).toBeUndefined();
      await leases.release(old);
      expect(await leases.current(job)).toEqual(taken);
      expect(await leases.acquire(job, 'replica-a', 30_000)).toBeUndefined();
    });

    it('a lapsed lease cannot be renewed, even by its owner with nobody else waiting', async () => {
      const job = uniqueJob();
      const lapsed = (await leases.acquire(job, 'replica-a', 50))!;
      await sleep(150);
      expect(await leases.renew(lapsed, 30_000)).toBeUndefined();
      expect(await leases.current(job)).toEqual(lapsed);
      // Taken afresh by the same owner: a new token, so writes fenced by the old one fail.
      expectLease(await leases.acquire(job, 'replica-a', 30_000), {
        job,
        owner: 'replica-a',
        token: 2,
      });
    });

    it('release lapses the lease at once: another owner takes it with a higher token', async () => {
      const job = uniqueJob();
      const held = (await leases.acquire(job, 'replica-a', 30_000))!;
      await leases.release(held);
      const released = (await leases.current(job))!;
      expect(released).toMatchObject({ job, owner: 'replica-a', token: 1 });
      expect(released.expiresAt).toBeLessThanOrEqual(held.expiresAt - 29_000);
      expect(await leases.renew(held, 30_000)).toBeUndefined();
      expectLease(await replica.leases.acquire(job, 'replica-b', 30_000), {
        job,
        owner: 'replica-b',
        token: 2,
      });
    });

    it('never gives a token twice: each taking after a release or an expiry rises by one', async () => {
      const job = uniqueJob();
      const tokens: number[] = [];
      for (const owner of ['replica-a', 'replica-a', 'replica-b', 'replica-a', 'replica-b']) {
        const lease = (await leases.acquire(job, owner, 30_000))!;
        tokens.push(lease.token);
        await leases.release(lease);
        // Releasing twice, or a stale copy, changes nothing.
        await replica.leases.release(lease);
      }
      const short = (await leases.acquire(job, 'replica-c', 50))!;
      tokens.push(short.token);
      await sleep(150);
      tokens.push((await replica.leases.acquire(job, 'replica-d', 30_000))!.token);
      expect(tokens).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect((await leases.current(job))!.token).toBe(7);
    });

    it('lets exactly one of 8 owners racing on two storages take a free lease', async () => {
      const job = uniqueJob();
      const owners = Array.from({ length: 8 }, (_, i) => `replica-${i}`);
      const results = await Promise.all(
        owners.map((owner, i) => (i % 2 ? replica.leases : leases).acquire(job, owner, 30_000)),
      );
      const winners = results.filter((lease) => lease !== undefined);
      expect(winners).toHaveLength(1);
      expect(winners[0].token).toBe(1);
      expect(await leases.current(job)).toEqual(winners[0]);
      expect(await replica.leases.current(job)).toEqual(winners[0]);
    });

    it('lets exactly one of 8 owners racing on two storages take a lapsed lease', async () => {
      const job = uniqueJob();
      await leases.acquire(job, 'replica-old', 50);
      await sleep(150);
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? replica.leases : leases).acquire(job, `replica-${i}`, 30_000),
        ),
      );
      const winners = results.filter((lease) => lease !== undefined);
      expect(winners).toHaveLength(1);
      expect(winners[0].token).toBe(2);
    });

    it('keeps job names and owners that differ only in case, trailing spaces or normalisation apart', async () => {
      const base = uniqueJob();
      const jobs = [base, `${base} `, base.toUpperCase(), `${base}\u00e9`, `${base}e\u0301`];
      for (const job of jobs) {
        expectLease(await leases.acquire(job, 'caf\u00e9', 30_000), {
          job,
          owner: 'caf\u00e9',
          token: 1,
        });
      }
      for (const owner of ['CAF\u00c9', 'caf\u00e9 ', 'cafe\u0301']) {
        expect(await leases.acquire(base, owner, 30_000)).toBeUndefined();
      }
    });

    it('takes names of up to 191 UTF-8 bytes', async () => {
      const job = `${'\u00e9'.repeat(95)}j`;
      const owner = '\u{1f600}'.repeat(47) + 'abc';
      expect(Buffer.byteLength(job)).toBe(191);
      expect(Buffer.byteLength(owner)).toBe(191);
      const lease = expectLease(await leases.acquire(job, owner, 30_000), { job, owner });
      expect(await leases.current(job)).toEqual(lease);
      await leases.release(lease);
    });

    it('refuses bad arguments with InvalidArgumentError, before touching the store', async () => {
      const job = uniqueJob();
      const bad: Array<[string, () => Promise<unknown>, RegExp]> = [
        ['an empty job', () => leases.acquire('', 'replica-a', 1000), /job must be a non-empty/],
        ['a job of 192 bytes', () => leases.acquire('\u00e9'.repeat(96), 'a', 1000), /191 UTF-8/],
        ['a control character', () => leases.acquire('job\n1', 'a', 1000), /control/],
        ['a lone surrogate', () => leases.acquire('job\ud800', 'a', 1000), /job must/],
        ['an empty owner', () => leases.acquire(job, '', 1000), /owner must be a non-empty/],
        ['a ttl of 0', () => leases.acquire(job, 'a', 0), /ttlMs must be a whole number/],
        ['a fraction', () => leases.acquire(job, 'a', 1.5), /ttlMs/],
        ['more than a day', () => leases.acquire(job, 'a', 86_400_001), /from 1 to 86400000/],
        [
          'a token of 0',
          () => leases.renew({ job, owner: 'a', token: 0, expiresAt: 0 }, 1000),
          /token must be a whole number >= 1/,
        ],
        ['no lease', () => leases.release(undefined as unknown as JobLease), /Pass the lease/],
        [
          'a bad renew ttl',
          () => leases.renew({ job, owner: 'a', token: 1, expiresAt: 0 }, -1),
          /ttlMs/,
        ],
        ['current of no job', () => leases.current(''), /job must/],
      ];
      for (const [what, call, message] of bad) {
        const error = await call().then(
          () => new Error(`${what} was accepted`),
          (caught: unknown) => caught,
        );
        expect(error, what).toBeInstanceOf(InvalidArgumentError);
        expect((error as Error).message, what).toMatch(message);
      }
      expect(await leases.current(job)).toBeUndefined();
    });

    it('reports a damaged lease row as IntegrityError (SQL backends)', async (context) => {
      const dataSource = harness.dataSource;
      if (!dataSource) {
        context.skip();
        return;
      }
      const job = uniqueJob();
      await leases.acquire(job, 'replica-a', 30_000);
      const dialect = dialectFor(dataSource);
      await dataSource.query(
        dialect.sql(`UPDATE "nes_job_leases" SET "token" = -1 WHERE "job" = ${dialect.param(1)}`),
        [job],
      );
      await expect(leases.current(job)).rejects.toBeInstanceOf(IntegrityError);
    });
  });
}
