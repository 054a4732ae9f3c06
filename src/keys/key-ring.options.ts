import { ConfigurationError } from '../errors/index.js';

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

/** What each option takes, for the message that refuses another value. */
const KEY_RING_OPTION_RULES: Record<
  keyof KeyRingOptions,
  { min: number; max: number; takes: string }
> = {
  cacheMaxEntries: {
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    takes: 'a whole number of keys, at least 1',
  },
  cacheMaxAgeMs: {
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    takes: 'a whole number of milliseconds, 0 or more',
  },
  maxItemsPerDataKey: { min: 1, max: 2 ** 28, takes: 'a whole number of items from 1 to 2^28' },
  providerMaxAttempts: { min: 1, max: 100, takes: 'a whole number of attempts from 1 to 100' },
  providerRetryBudgetMs: {
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    takes: 'a whole number of milliseconds, 0 or more',
  },
  providerRetryBaseDelayMs: {
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    takes: 'a whole number of milliseconds, 0 or more',
  },
  providerOutageCooldownMs: {
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    takes: 'a whole number of milliseconds, 0 or more',
  },
};

/**
 * The key ring's options with defaults filled in, each checked: `cacheMaxEntries: 0` would
 * otherwise make every write fail (a new key cannot be cached) with a retryable error.
 *
 * @throws ConfigurationError naming the option (`options.keyCache.<name>`) and what it takes.
 */
export function resolveKeyRingOptions(options: KeyRingOptions = {}): Required<KeyRingOptions> {
  const resolved = { ...KEY_RING_DEFAULTS };
  for (const [name, value] of Object.entries(options) as Array<[keyof KeyRingOptions, unknown]>) {
    if (value === undefined) continue;
    const rule = KEY_RING_OPTION_RULES[name];
    if (!rule) {
      throw new ConfigurationError(
        `Unknown option options.keyCache.${name}; options.keyCache takes: ${Object.keys(KEY_RING_OPTION_RULES).join(', ')}`,
      );
    }
    if (
      !Number.isSafeInteger(value) ||
      (value as number) < rule.min ||
      (value as number) > rule.max
    ) {
      throw new ConfigurationError(
        `options.keyCache.${name} must be ${rule.takes} (default ${KEY_RING_DEFAULTS[name]})`,
      );
    }
    resolved[name] = value as number;
  }
  return resolved;
}
