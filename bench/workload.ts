import type { AgentInputItem } from '@openai/agents-core';

/** Characters of each item's `content` (the JSON payload is ~1 KiB). */
export const CONTENT_LENGTH = 1000;
/** Items per `addItems` call. */
export const BATCH_SIZE = 10;
/** Items that never expire (the newest ones); all older items get a TTL. */
export const LIVE_TAIL = 20;
/** `getItems(20)` calls per timed read phase. */
export const LIMIT_READ_CALLS = 1000;
/** The `limit` of the limited read phases. */
export const READ_LIMIT = 20;

const POOL_LENGTH = 256 * 1024;
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** mulberry32: a tiny seeded PRNG, so every variant stores exactly the same text. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function letterPool(): string {
  const random = seededRandom(0x5e55_1075);
  return Array.from(
    { length: POOL_LENGTH },
    () => LETTERS[Math.floor(random() * LETTERS.length)]!,
  ).join('');
}

const pool = letterPool();

/**
 * The `content` of item `index`: a counter followed by random letters, exactly
 * {@link CONTENT_LENGTH} characters. Deterministic, so it can be recomputed to check reads,
 * and cheap (a slice of a shared pool), so building items costs nothing in the timed loops.
 */
export function contentOf(index: number): string {
  const prefix = `item ${index}: `;
  const offset = (index * 7919) % (POOL_LENGTH - CONTENT_LENGTH);
  return prefix + pool.slice(offset, offset + CONTENT_LENGTH - prefix.length);
}

/**
 * Whether `content` is exactly {@link contentOf}(index), checked without building the expected
 * string, so verifying 20,000 items read back allocates nothing.
 */
export function isContentOf(index: number, content: unknown): boolean {
  if (typeof content !== 'string' || content.length !== CONTENT_LENGTH) return false;
  const prefix = `item ${index}: `;
  const offset = (index * 7919) % (POOL_LENGTH - CONTENT_LENGTH);
  return content.startsWith(prefix) && pool.startsWith(content.slice(prefix.length), offset);
}

/** Item `index` of the workload: `{ role: 'user', content }`. */
export function itemOf(index: number): AgentInputItem {
  return { role: 'user', content: contentOf(index) };
}

/**
 * Splits `0..total-1` into `addItems` batches of {@link BATCH_SIZE}: the items before the live
 * tail are written with a TTL (they expire for the last read phase), the newest
 * {@link LIVE_TAIL} without one. A batch never mixes the two.
 */
export function* batchesOf(
  total: number,
): Generator<{ from: number; to: number; expiring: boolean }> {
  const tailStart = total - LIVE_TAIL;
  for (let from = 0; from < total;) {
    const expiring = from < tailStart;
    const to = Math.min(from + BATCH_SIZE, expiring ? tailStart : total);
    yield { from, to, expiring };
    from = to;
  }
}
