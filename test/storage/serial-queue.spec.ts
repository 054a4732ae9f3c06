import { AsyncLocalStorage } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import {
  BACKGROUND_SHARE,
  SerialQueue,
  chargeBackgroundWork,
  isBackgroundWork,
  runAsBackgroundWork,
} from '../../src/storage/serial-queue.js';

/** Holds the thread for `ms`, as a synchronous SQLite statement does. */
function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

/** A task that records its name and span, holding the queue for `ms`. */
function recorder() {
  const spans: Array<{ name: string; start: number; end: number }> = [];
  const task = (name: string, ms: number) => async () => {
    const start = performance.now();
    busyFor(ms);
    spans.push({ name, start, end: performance.now() });
  };
  return { spans, task };
}

/** Bytes in use in V8's old generation. */
const oldSpaceUsed = () =>
  getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')!.space_used_size;

describe('SerialQueue', () => {
  it('runs tasks one at a time in arrival order', async () => {
    const queue = new SerialQueue();
    const order: number[] = [];
    let running = 0;
    let overlapped = false;
    await Promise.all(
      Array.from({ length: 20 }, (_, n) =>
        queue.run(async () => {
          overlapped ||= running > 0;
          running++;
          await Promise.resolve();
          order.push(n);
          running--;
        }),
      ),
    );
    expect({ order, overlapped }).toEqual({
      order: Array.from({ length: 20 }, (_, n) => n),
      overlapped: false,
    });
  });

  it('goes on after a task that throws, and hands the caller its error', async () => {
    const queue = new SerialQueue();
    const failed = queue.run(async () => {
      throw new Error('first');
    });
    const next = queue.run(async () => 'second');
    await expect(failed).rejects.toThrow('first');
    await expect(next).resolves.toBe('second');
  });

  it("runs each task in its caller's async context, not the previous task's", async () => {
    const queue = new SerialQueue();
    const actor = new AsyncLocalStorage<string>();
    const seen = await Promise.all(
      ['a', 'b', 'c'].map((name) =>
        actor.run(name, () => queue.run(async () => [actor.getStore(), isBackgroundWork()])),
      ),
    );
    const inBackground = await runAsBackgroundWork(() =>
      actor.run('job', () => queue.run(async () => [actor.getStore(), isBackgroundWork()])),
    );
    expect([...seen, inBackground]).toEqual([
      ['a', false],
      ['b', false],
      ['c', false],
      ['job', true],
    ]);
  });

  it("lets a task's result die young: a long read does not grow the old generation by its output", async () => {
    // 400 pages of 1,000 rows (about 60 MB of strings and arrays), each dropped once counted,
    // as a verifier or a purge reads pages. With AsyncResource.bind around each task, Node 20
    // promoted nearly every page to the old generation (about 40 MB here); without, about 1 MB.
    const queue = new SerialQueue();
    const before = oldSpaceUsed();
    let rows = 0;
    for (let page = 0; page < 400; page++) {
      const read = await queue.run(async () =>
        Array.from({ length: 1000 }, (_, row) => [page, `row ${row} `.repeat(10)]),
      );
      rows += read.length;
    }
    expect(rows).toBe(400_000);
    expect(oldSpaceUsed() - before).toBeLessThan(10 * 1024 * 1024);
  });

  it('lets background units follow each other at once when nothing of the app waits', async () => {
    const queue = new SerialQueue();
    const { spans, task } = recorder();
    await runAsBackgroundWork(async () => {
      for (let unit = 0; unit < 5; unit++) await queue.run(task(`unit ${unit}`, 20));
    });
    const gaps = spans.slice(1).map((span, n) => span.start - spans[n].end);
    // A pause would be 180 ms.
    expect(Math.max(...gaps)).toBeLessThan(20);
  });

  it('starts waiting foreground calls first after a background unit, then resumes the job after its pause', async () => {
    const queue = new SerialQueue();
    const { spans, task } = recorder();
    const unitMs = 20;
    const first = runAsBackgroundWork(() => queue.run(task('job 1', unitMs)));
    const second = runAsBackgroundWork(() => queue.run(task('job 2', 1)));
    const read = queue.run(task('read', 1));
    await Promise.all([first, second, read]);
    const [job1, , job2] = spans;
    expect(spans.map((span) => span.name)).toEqual(['job 1', 'read', 'job 2']);
    // A pause of (1 - share) / share times the unit, less timer slack.
    const pause = (unitMs * (1 - BACKGROUND_SHARE)) / BACKGROUND_SHARE;
    expect(job2.start - job1.end).toBeGreaterThanOrEqual(pause - 2);
  });

  it('keeps a background job to its share while foreground calls use the connection, without starving it', async () => {
    const queue = new SerialQueue();
    const { spans, task } = recorder();
    const state = { done: false };
    const job = runAsBackgroundWork(async () => {
      while (!state.done) await queue.run(task('job', 10));
    });
    // One caller that starts its next read as soon as its last returned (microtasks only).
    const started = performance.now();
    while (performance.now() - started < 600) await queue.run(task('read', 1));
    state.done = true;
    await job;
    const busy = (name: string) =>
      spans
        .filter((span) => span.name === name && span.start >= started)
        .reduce((sum, span) => sum + span.end - span.start, 0);
    const jobShare = busy('job') / (busy('job') + busy('read'));
    expect({
      starved: busy('job') === 0,
      withinShare: jobShare <= BACKGROUND_SHARE + 0.05,
    }).toEqual({ starved: false, withinShare: true });
  });

  it('adds the time a job charged outside its units to the pause after its next unit', async () => {
    const queue = new SerialQueue();
    const { spans, task } = recorder();
    const chargedMs = 20;
    const job = runAsBackgroundWork(async () => {
      chargeBackgroundWork(() => busyFor(chargedMs));
      await queue.run(task('job 1', 1));
      await queue.run(task('job 2', 1));
    });
    const read = queue.run(task('read', 1));
    await Promise.all([job, read]);
    const [job1, , job2] = spans;
    expect(spans.map((span) => span.name)).toEqual(['job 1', 'read', 'job 2']);
    // Without the charge the pause would be nine times the 1 ms unit.
    const pause = (chargedMs * (1 - BACKGROUND_SHARE)) / BACKGROUND_SHARE;
    expect(job2.start - job1.end).toBeGreaterThanOrEqual(pause);
  });

  it("lets the process's timers and I/O run between a job's units", async () => {
    const queue = new SerialQueue();
    const { spans, task } = recorder();
    let timerFiredAt: number | undefined;
    setTimeout(() => (timerFiredAt = performance.now()), 0);
    await runAsBackgroundWork(async () => {
      for (let unit = 0; unit < 20; unit++) await queue.run(task(`unit ${unit}`, 2));
    });
    expect(timerFiredAt).toBeLessThan(spans.at(-1)!.start);
  });

  it('drain waits for a background unit still in its pause', async () => {
    const queue = new SerialQueue();
    const { spans, task } = recorder();
    void runAsBackgroundWork(() => queue.run(task('job 1', 10)));
    void queue.run(task('read', 1));
    void runAsBackgroundWork(() => queue.run(task('job 2', 1)));
    await queue.drain();
    expect(spans.map((span) => span.name)).toEqual(['job 1', 'read', 'job 2']);
  });
});
