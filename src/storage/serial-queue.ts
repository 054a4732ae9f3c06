import { AsyncLocalStorage } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';

/** A background job's time spent outside the queue, charged to its next unit. */
interface BackgroundMeter {
  chargedMs: number;
}

/** Marks the calls made inside {@link runAsBackgroundWork}. */
const backgroundWork = new AsyncLocalStorage<BackgroundMeter>();

/**
 * Runs `work` as background work: on a store with a single connection (SQLite, memory), each of
 * its units of work yields the connection to the app's own calls waiting for it (see
 * {@link SerialQueue}). The jobs layer runs every job's work this way.
 */
export function runAsBackgroundWork<T>(work: () => T): T {
  return backgroundWork.run({ chargedMs: 0 }, work);
}

/** Whether the caller runs inside {@link runAsBackgroundWork}. */
export function isBackgroundWork(): boolean {
  return backgroundWork.getStore() !== undefined;
}

/**
 * Runs synchronous `work` of a background job done outside any unit of work (opening a page of
 * items before the unit that deletes them) and adds its time to the job's next unit: it holds
 * the thread the app's calls need as surely as the unit holds the connection, so the pause
 * after that unit covers it too. Outside background work it only runs `work`.
 */
export function chargeBackgroundWork<T>(work: () => T): T {
  const meter = backgroundWork.getStore();
  if (!meter) return work();
  const started = performance.now();
  try {
    return work();
  } finally {
    meter.chargedMs += performance.now() - started;
  }
}

/**
 * The largest share of a single connection's time background work takes while foreground calls
 * use it too: a job's unit that held the connection for `d` ms (plus the time the job charged
 * with {@link chargeBackgroundWork} since its last unit) is followed by `9d` ms in which only
 * foreground calls start. With no foreground call meanwhile, units follow each other at
 * once. Postgres's cost-based vacuum delay throttles its background work the same way.
 */
export const BACKGROUND_SHARE = 1 / 10;

/** The longest a background unit waits for its turn, whatever the last one took. */
const MAX_BACKGROUND_PAUSE_MS = 1_000;

/** Tasks waiting for the connection, in arrival order. */
type Lane = Array<() => void>;

/**
 * Runs async tasks one at a time. SQLite has one connection per process and TypeORM shares one
 * query runner for it, so two interleaved transactions would nest and a reader could see
 * another's uncommitted batch; serializing here keeps each unit of work whole.
 *
 * Two lanes share it, each in arrival order: foreground tasks (the app's calls) and background
 * tasks (those started inside {@link runAsBackgroundWork}: the scheduled jobs). While foreground
 * tasks use the connection, background ones get at most {@link BACKGROUND_SHARE} of its time, so
 * a purge or a key rotation slows down rather than the app's reads and writes; once a
 * background task's pause is over it goes before waiting foreground ones, so it is never starved.
 */
export class SerialQueue {
  private readonly foreground: Lane = [];
  private readonly background: Lane = [];
  private running = false;
  /** Whether a foreground task started since the last background task ended. */
  private foregroundSinceBackground = false;
  /** When (performance.now()) the next background task may go before foreground ones. */
  private backgroundPauseEnds = 0;
  private pauseTimer: NodeJS.Timeout | undefined;
  private readonly idleWaiters: Array<() => void> = [];

  run<T>(task: () => Promise<T>): Promise<T> {
    const meter = backgroundWork.getStore();
    const lane = meter ? this.background : this.foreground;
    let started = 0;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    // The reactions are attached here, so the task runs in its caller's async context (actor,
    // background mark), not in that of whichever task finished before it. (Not with
    // AsyncResource.bind: on Node 20 that made V8 promote nearly every task's result to the
    // old generation, so a long read, a verify or a purge grew the heap by its whole output.)
    const result = gate.then(() => {
      started = performance.now();
      return task();
    });
    void result.then(
      () => this.finished(started, meter),
      () => this.finished(started, meter),
    );
    lane.push(openGate);
    this.dispatch();
    return result;
  }

  /** Resolves once no task runs or waits in either lane. */
  drain(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private idle(): boolean {
    return !this.running && this.foreground.length === 0 && this.background.length === 0;
  }

  /** Ends a task started at `started`; a background task's `meter` sets the pause after it. */
  private finished(started: number, meter: BackgroundMeter | undefined): void {
    this.running = false;
    if (meter) {
      const now = performance.now();
      const worked = now - started + meter.chargedMs;
      meter.chargedMs = 0;
      const pause = (worked * (1 - BACKGROUND_SHARE)) / BACKGROUND_SHARE;
      this.backgroundPauseEnds = now + Math.min(pause, MAX_BACKGROUND_PAUSE_MS);
      this.foregroundSinceBackground = false;
    }
    this.dispatch();
  }

  private dispatch(): void {
    if (this.running) return;
    const next = this.nextLane();
    if (next === undefined) {
      if (this.background.length > 0) this.resumeAfterPause();
      else if (this.idle()) this.idleWaiters.splice(0).forEach((resolve) => resolve());
      return;
    }
    clearTimeout(this.pauseTimer);
    this.pauseTimer = undefined;
    const isBackground = next === this.background;
    if (!isBackground) this.foregroundSinceBackground = true;
    this.running = true;
    const start = next.shift()!;
    // A background unit starts on a turn of the event loop of its own: on a synchronous driver
    // a job's awaits never leave the microtask queue, so without it no request, timer or lease
    // renewal of the process would run until the whole job had finished.
    if (isBackground) setImmediate(start);
    else start();
  }

  /**
   * The lane whose first task goes next; undefined while none may start yet (a background task
   * waits out its pause with no foreground task waiting).
   */
  private nextLane(): Lane | undefined {
    const backgroundWaits = this.background.length > 0;
    const paused = performance.now() < this.backgroundPauseEnds;
    if (backgroundWaits && !paused) return this.background;
    if (this.foreground.length > 0) return this.foreground;
    // Nothing of the app's used the connection since the last background task: no one to
    // yield to.
    if (backgroundWaits && !this.foregroundSinceBackground) return this.background;
    return undefined;
  }

  /** Dispatches again when the waiting background task's pause is over. */
  private resumeAfterPause(): void {
    this.pauseTimer ??= setTimeout(
      () => {
        this.pauseTimer = undefined;
        this.dispatch();
      },
      Math.max(1, Math.ceil(this.backgroundPauseEnds - performance.now())),
    );
  }
}
