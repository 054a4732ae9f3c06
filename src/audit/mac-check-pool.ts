import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Tinypool } from 'tinypool';
import type { PackedMacPage } from './mac-check.js';

/** Workers at most: a verifier's reads stop keeping more than this busy. */
const MAX_THREADS = 4;
/** Page buffers kept for reuse, per worker (a verifier keeps a few pages per worker in flight). */
const SPARE_BUFFERS_PER_THREAD = 8;
/**
 * A worker's heap limits, in MB. A worker hashes the pages it is handed and keeps nothing; small
 * heaps keep a verifier's memory flat (V8 sizes a thread's heap for a general program).
 */
const WORKER_RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 16 };

/** One worker per core, up to {@link MAX_THREADS}; none on a single core. */
function defaultThreads(): number {
  const cores = availableParallelism();
  return cores < 2 ? 0 : Math.min(cores, MAX_THREADS);
}

/**
 * Worker threads that check the MACs of packed pages while a verifier walks a long chain's
 * links (tinypool: a maintained pool with queueing, transfer lists and clean shutdown, rather
 * than a hand-rolled one; unlike piscina it brings no native addon into a host's install).
 */
export class MacCheckPool {
  /** Buffers of answered pages, to pack next pages into. */
  private readonly spareBuffers: ArrayBuffer[] = [];

  private constructor(
    private readonly pool: Tinypool,
    /** Worker threads of the pool. */
    readonly threads: number,
  ) {}

  /**
   * A pool of `threads` workers (default: one per core; the verifier's own thread mostly reads
   * and waits, and checks a page itself only when every worker is behind), or undefined where
   * it would not help: a single core, or the module running from its TypeScript sources, which
   * have no compiled worker to start.
   */
  static open(threads = defaultThreads()): MacCheckPool | undefined {
    if (!Number.isSafeInteger(threads) || threads < 1) return undefined;
    const worker = new URL('./mac-check.worker.js', import.meta.url);
    if (!existsSync(worker)) return undefined;
    const pool = new Tinypool({
      filename: worker.href,
      minThreads: threads,
      maxThreads: threads,
      resourceLimits: WORKER_RESOURCE_LIMITS,
    });
    return new MacCheckPool(pool, threads);
  }

  /**
   * A buffer an answered page came back in, to pack the next page into (`packMacPage`'s
   * `spare`), or undefined when none is free.
   */
  spareBuffer(): ArrayBuffer | undefined {
    return this.spareBuffers.pop();
  }

  /**
   * The index of the page's first record whose MAC does not hold, or -1. The page's buffer moves
   * to a worker and back, and is kept for {@link spareBuffer}.
   */
  async firstMismatch(page: PackedMacPage): Promise<number> {
    const answer = (await this.pool.run(page, { transferList: [page.buffer] })) as Int32Array;
    if (this.spareBuffers.length < this.threads * SPARE_BUFFERS_PER_THREAD) {
      this.spareBuffers.push(answer.buffer as ArrayBuffer);
    }
    return answer[0];
  }

  /** Stops the workers. */
  close(): Promise<void> {
    return this.pool.destroy();
  }
}
