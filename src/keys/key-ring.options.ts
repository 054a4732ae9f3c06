/** Tuning of the in-process data key cache. */
export interface KeyRingOptions {
  /** Most unwrapped data keys held at once; the least recently used goes first. @default 10000 */
  cacheMaxEntries?: number;
  /** Longest time an unwrapped data key stays cached, in ms. @default 900000 (15 minutes) */
  cacheMaxAgeMs?: number;
  /**
   * Items one data key may seal before the session moves to a new generation. Far below the
   * 2^32 bound for random 96-bit GCM nonces. Lower only in tests.
   * @default 268435456 (2^28)
   */
  maxItemsPerDataKey?: number;
  /**
   * Provider calls that fail with a retryable error (throttling, 5xx, a dropped connection) are
   * retried with exponential backoff and full jitter, within this many attempts in all (and
   * within `providerRetryBudgetMs`). @default 4
   */
  providerMaxAttempts?: number;
  /** Time budget of one provider call including its retries, in ms. @default 2000 */
  providerRetryBudgetMs?: number;
  /** First backoff delay in ms; doubles per retry (randomized). @default 50 */
  providerRetryBaseDelayMs?: number;
  /**
   * After a call used up its retries, further calls fail at once for this long (ms) instead of
   * waiting on a provider that is down; the first call after it probes the provider again.
   * Sessions whose keys are cached never notice. @default 1000
   */
  providerOutageCooldownMs?: number;
}

/** Injection token for {@link KeyRingOptions}. */
export const KEY_RING_OPTIONS = Symbol('KEY_RING_OPTIONS');

export const KEY_RING_DEFAULTS: Required<KeyRingOptions> = {
  cacheMaxEntries: 10_000,
  cacheMaxAgeMs: 15 * 60_000,
  maxItemsPerDataKey: 2 ** 28,
  providerMaxAttempts: 4,
  providerRetryBudgetMs: 2000,
  providerRetryBaseDelayMs: 50,
  providerOutageCooldownMs: 1000,
};
