import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../src/errors/index.js';
import { LeasedJobRunner } from '../../src/jobs/index.js';
import { MemorySessionStorage } from '../../src/storage/memory/index.js';
import { isBackgroundWork, type JobLease, type LeaseStorage } from '../../src/storage/index.js';

const JOB = 'test-job';

function leasesOf(storage = new MemorySessionStorage()): LeaseStorage {
  return storage.leases;
}

describe('LeasedJobRunner', () => {
  it('runs the work under the lease and releases it at the end', async () => {
    const leases = leasesOf();
    const runner = new LeasedJobRunner(leases, 'replica-a', 60_000);
    let heldDuringWork: JobLease | undefined;
    const report = await runner.run(JOB, async (lease) => {
      heldDuringWork = await leases.current(JOB);
      expect(lease.current.owner).toBe('replica-a');
      return 42;
    });
    expect(report).toMatchObject({ job: JOB, outcome: 'done', result: 42 });
    expect(heldDuringWork?.owner).toBe('replica-a');
    // Released: another replica takes it at once, with a newer token.
    const next = await leases.acquire(JOB, 'replica-b', 60_000);
    expect(next?.token).toBeGreaterThan(heldDuringWork!.token);
  });

  it('runs the work as background work, and renews the lease in the foreground', async () => {
    const leases = leasesOf();
    const renewedInBackground: boolean[] = [];
    const watched: LeaseStorage = {
      ...leases,
      renew: (lease, ttlMs) => {
        renewedInBackground.push(isBackgroundWork());
        return leases.renew(lease, ttlMs);
      },
    };
    const report = await new LeasedJobRunner(watched, 'replica-a', 60).run(JOB, async () => {
      await sleep(100);
      return isBackgroundWork();
    });
    expect({ work: report.result, renewals: [...new Set(renewedInBackground)] }).toEqual({
      work: true,
      renewals: [false],
    });
  });

  it('reports an acting run as started once it holds the lease, after a slow acquire', async () => {
    const leases = leasesOf();
    const slowAcquire: LeaseStorage = {
      ...leases,
      acquire: async (job, owner, ttlMs) => {
        await sleep(50);
        return leases.acquire(job, owner, ttlMs);
      },
    };
    const asked = Date.now();
    let workStarted = 0;
    const report = await new LeasedJobRunner(slowAcquire, 'replica-a', 60_000).run(
      JOB,
      async () => {
        workStarted = Date.now();
      },
    );
    expect(report.startedAt.getTime()).toBeGreaterThanOrEqual(asked + 45);
    expect(report.startedAt.getTime()).toBeLessThanOrEqual(workStarted);
  });

  it('skips the work while another replica holds the lease, naming the holder', async () => {
    const leases = leasesOf();
    await leases.acquire(JOB, 'replica-b', 60_000);
    let ran = false;
    const report = await new LeasedJobRunner(leases, 'replica-a', 60_000).run(JOB, async () => {
      ran = true;
    });
    expect(report).toMatchObject({ outcome: 'skipped', heldBy: 'replica-b' });
    expect(ran).toBe(false);
  });

  it('lets exactly one of two replicas run at a time', async () => {
    const leases = leasesOf();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = new LeasedJobRunner(leases, 'replica-a', 60_000).run(JOB, () => gate);
    await sleep(10);
    const second = await new LeasedJobRunner(leases, 'replica-b', 60_000).run(
      JOB,
      async () => undefined,
    );
    release();
    expect(second.outcome).toBe('skipped');
    expect((await first).outcome).toBe('done');
  });

  it('renews the lease while the work outlasts its time to live', async () => {
    const leases = leasesOf();
    const report = await new LeasedJobRunner(leases, 'replica-a', 150).run(JOB, async () => {
      await sleep(450);
      // Three lease lifetimes later, still ours: nobody else may take it.
      return (await leases.acquire(JOB, 'replica-b', 150)) === undefined;
    });
    expect(report).toMatchObject({ outcome: 'done', result: true });
  });

  it('marks the lease lost, aborts its signal and does not release it, when a renewal fails', async () => {
    const leases = leasesOf();
    const losing: LeaseStorage = { ...leases, renew: async () => undefined };
    let aborted = false;
    const report = await new LeasedJobRunner(losing, 'replica-a', 60).run(JOB, async (lease) => {
      await sleep(120);
      aborted = lease.signal.aborted;
      return lease.lost;
    });
    expect(report).toMatchObject({ outcome: 'lease_lost', result: true });
    expect(aborted).toBe(true);
    // Not released by the loser: the stored lease still names it until it lapses.
    expect((await leases.current(JOB))?.owner).toBe('replica-a');
  });

  it('reports a failed run with the error code and releases the lease', async () => {
    const leases = leasesOf();
    const report = await new LeasedJobRunner(leases, 'replica-a', 60_000).run(JOB, async () => {
      throw new ConfigurationError('no');
    });
    expect(report).toMatchObject({ outcome: 'failed', errorCode: 'CONFIGURATION' });
    expect(await leases.acquire(JOB, 'replica-b', 60_000)).toBeDefined();
  });
});
