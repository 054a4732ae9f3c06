import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { jobConcurrencyOf, runSideBySide } from '../../src/jobs/side-by-side.js';
import { BatchBudget } from '../../src/sessions/index.js';
import { MemorySessionStorage } from '../../src/storage/memory/index.js';

/** Work that records how many units were in flight at once, and in which order they started. */
function tracked(delayMs: (unit: number) => number = () => 5) {
  const started: number[] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const work = async (unit: number): Promise<boolean> => {
    started.push(unit);
    mostInFlight = Math.max(mostInFlight, ++inFlight);
    await sleep(delayMs(unit));
    inFlight--;
    return true;
  };
  return { started, work, mostInFlight: () => mostInFlight, inFlight: () => inFlight };
}

describe('runSideBySide', () => {
  const units = [1, 2, 3, 4, 5, 6, 7];

  it('runs at most `concurrency` units at once, starting them in order', async () => {
    const run = tracked();
    await runSideBySide(units, 3, run.work);
    expect(run.started).toEqual(units);
    expect(run.mostInFlight()).toBe(3);
  });

  it('is a plain loop with a concurrency of 1', async () => {
    const run = tracked((unit) => 8 - unit);
    await runSideBySide(units, 1, run.work);
    expect(run.mostInFlight()).toBe(1);
  });

  it('starts no unit after one returned false, and waits for those already started', async () => {
    const run = tracked();
    let finished = 0;
    await runSideBySide(units, 2, async (unit) => {
      await run.work(unit);
      finished++;
      return unit !== 3;
    });
    // 3 said stop while 4 ran beside it: 4 finished, nothing after it started.
    expect(run.started).toEqual([1, 2, 3, 4]);
    expect(finished).toBe(4);
  });

  it('throws the first error once every started unit has settled, and starts no other', async () => {
    const run = tracked();
    const failure = new Error('unit 2 failed');
    const outcome = runSideBySide(units, 3, async (unit) => {
      if (unit === 2) throw failure;
      return run.work(unit);
    });
    await expect(outcome).rejects.toBe(failure);
    expect(run.inFlight()).toBe(0);
    expect(run.started).toEqual([1, 3]);
  });
});

describe('BatchBudget', () => {
  it('hands out its limit, takes back what a unit did not use, and then refuses', () => {
    const budget = new BatchBudget(2);
    expect([budget.take(), budget.take(), budget.take()]).toEqual([true, true, false]);
    expect(budget.exhausted).toBe(true);
    budget.giveBack();
    expect([budget.take(), budget.take()]).toEqual([true, false]);
  });
});

describe('jobConcurrencyOf', () => {
  it('runs one unit at a time on a store that says nothing', () => {
    expect(jobConcurrencyOf(new MemorySessionStorage())).toBe(1);
  });
});
