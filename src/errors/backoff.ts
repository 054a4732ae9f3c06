/**
 * The one retry policy of the module: how long to wait between attempts of a call that failed
 * in a way a retry may fix (a key provider throttling or briefly down, a Redis write that lost
 * a race). Exponential growth with full jitter, bounded in attempts and, optionally, in time.
 */
export interface BackoffPolicy {
  /** Upper bound of the wait before the second attempt, in ms. */
  readonly firstDelayMs: number;
  /** Each later wait's upper bound is the previous one's times this. */
  readonly growth: number;
  /** No wait's upper bound goes above this, in ms. @default no cap */
  readonly maxDelayMs?: number;
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  /** Time budget of all attempts and waits together, in ms. @default no budget */
  readonly budgetMs?: number;
}

/**
 * The wait before the next attempt once `attempt` attempts have failed, `elapsedMs` after the
 * first one began; `undefined` when the policy says stop: the attempts are used up, or the wait
 * would take the call past its budget. Full jitter (uniformly random below the exponential
 * bound), so callers that failed together do not retry together.
 */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  elapsedMs: number,
  random: () => number = Math.random,
): number | undefined {
  if (attempt >= policy.maxAttempts) return undefined;
  const bound = Math.min(
    policy.firstDelayMs * policy.growth ** (attempt - 1),
    policy.maxDelayMs ?? Number.POSITIVE_INFINITY,
  );
  const delay = random() * bound;
  if (elapsedMs + delay > (policy.budgetMs ?? Number.POSITIVE_INFINITY)) return undefined;
  return delay;
}

/** How a background task that must succeed before a deadline spaces its retries. */
export interface DeadlinePolicy {
  /** Share of the time left to the deadline to wait before the next try (e.g. 1/3). */
  readonly shareOfTimeLeft: number;
  /** Shortest wait, in ms: never a tight loop, even right at the deadline. */
  readonly minDelayMs: number;
  /** Longest wait, in ms, and the wait when there is no deadline. */
  readonly maxDelayMs: number;
}

/**
 * The wait before the next try of background work that keeps trying until a deadline (a Vault
 * token renewal or login before the token expires): a share of the time left, so tries come
 * closer together as the deadline nears, within `minDelayMs`..`maxDelayMs`. No jitter: one
 * process retries its own token, nothing to spread out.
 */
export function delayBeforeDeadline(
  policy: DeadlinePolicy,
  deadline: number | undefined,
  now: number = Date.now(),
): number {
  const share =
    deadline === undefined ? policy.maxDelayMs : (deadline - now) * policy.shareOfTimeLeft;
  return Math.min(policy.maxDelayMs, Math.max(policy.minDelayMs, share));
}
