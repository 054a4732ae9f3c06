import { z } from 'zod';
import { ConfigurationError } from '../errors/index.js';
import {
  milliseconds,
  optionIssueError,
  strictOptions,
  wholeNumber,
} from '../errors/option-schema.js';

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
  /**
   * Rotation policy by age: a session's data key that has sealed items and is this many days
   * old gives way to a new generation at the session's next write; null turns it off.
   * @default 90
   */
  rotationMaxAgeDays?: number | null;
  /**
   * Rotation policy by use: a session's data key that has sealed at least this many items gives
   * way to a new generation at the session's next write (that write may take the key past it,
   * up to `maxItemsPerDataKey`); null leaves only `maxItemsPerDataKey`. @default null
   */
  rotationMaxItems?: number | null;
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
  rotationMaxAgeDays: 90,
  rotationMaxItems: null,
};

/** The data key cache of `options.keyCache`: how many unwrapped keys, and for how long. */
export const keyCacheOptionsSchema = strictOptions(
  {
    /** Most unwrapped data keys held at once; the least recently used goes first. @default 10000 */
    maxEntries: wholeNumber('a whole number of keys, at least 1 (default 10000)', 1).optional(),
    /** Longest time an unwrapped data key stays cached, in ms. @default 900000 (15 minutes) */
    maxAgeMs: milliseconds(KEY_RING_DEFAULTS.cacheMaxAgeMs).optional(),
  },
  'an object: { maxEntries, maxAgeMs }',
);

/**
 * `options.keyCache`: the in-process cache of unwrapped data keys.
 *
 * @publicApi
 */
export type KeyCacheOptions = z.input<typeof keyCacheOptionsSchema>;

/** How key provider calls are retried (`options.keys.retry`). */
export const keyProviderRetrySchema = strictOptions(
  {
    /**
     * Provider calls that fail with a retryable error (throttling, 5xx, a dropped connection)
     * are retried with exponential backoff and full jitter, within this many attempts in all
     * (and within `budgetMs`). @default 4
     */
    maxAttempts: wholeNumber(
      'a whole number of attempts from 1 to 100 (default 4)',
      1,
      100,
    ).optional(),
    /** Time budget of one provider call including its retries, in ms. @default 2000 */
    budgetMs: milliseconds(KEY_RING_DEFAULTS.providerRetryBudgetMs).optional(),
    /** First backoff delay in ms; doubles per retry (randomized). @default 50 */
    baseDelayMs: milliseconds(KEY_RING_DEFAULTS.providerRetryBaseDelayMs).optional(),
    /**
     * After a call used up its retries, further calls fail at once for this long (ms) instead
     * of waiting on a provider that is down; the first call after it probes the provider again.
     * Sessions whose keys are cached never notice. @default 1000
     */
    outageCooldownMs: milliseconds(KEY_RING_DEFAULTS.providerOutageCooldownMs).optional(),
  },
  'an object: { maxAttempts, budgetMs, baseDelayMs, outageCooldownMs }',
);

/**
 * `options.keys.retry`: retries of key provider calls that failed retryably.
 *
 * @publicApi
 */
export type KeyProviderRetryOptions = z.input<typeof keyProviderRetrySchema>;

/**
 * Items one data key may seal before the session moves to a new generation
 * (`options.keys.maxItemsPerDataKey`). Far below the 2^32 bound for random 96-bit GCM nonces.
 */
export const maxItemsPerDataKeySchema = wholeNumber(
  `a whole number of items from 1 to 2^28 (default ${KEY_RING_DEFAULTS.maxItemsPerDataKey})`,
  1,
  2 ** 28,
);

/**
 * `options.keys.rotation`: when a session's data key gives way to a new generation, besides the
 * hard bound `maxItemsPerDataKey`. The new generation seals the session's next write; the old
 * key still opens the items it sealed.
 */
export const keyRotationPolicySchema = strictOptions(
  {
    /** Days after which a data key that sealed items is rotated; null: never by age. @default 90 */
    maxAgeDays: wholeNumber('a whole number of days, at least 1, or null (default 90)', 1)
      .nullable()
      .optional(),
    /** Items after which a data key is rotated; null: only at `maxItemsPerDataKey`. @default null */
    maxItems: wholeNumber(
      'a whole number of items from 1 to 2^28, or null (default null)',
      1,
      2 ** 28,
    )
      .nullable()
      .optional(),
  },
  'an object, e.g. { maxAgeDays: 90, maxItems: null }',
);

/**
 * `options.keys.rotation`: the data key rotation policy.
 *
 * @publicApi
 */
export type KeyRotationPolicyOptions = z.input<typeof keyRotationPolicySchema>;

/** Each key ring option, where it sits in the module's options, and the rule it follows. */
const KEY_RING_FIELDS: Record<
  keyof KeyRingOptions,
  { path: readonly [string, ...string[]]; schema: z.ZodType<number | null> }
> = {
  cacheMaxEntries: {
    path: ['keyCache', 'maxEntries'],
    schema: keyCacheOptionsSchema.shape.maxEntries.unwrap(),
  },
  cacheMaxAgeMs: {
    path: ['keyCache', 'maxAgeMs'],
    schema: keyCacheOptionsSchema.shape.maxAgeMs.unwrap(),
  },
  maxItemsPerDataKey: { path: ['keys', 'maxItemsPerDataKey'], schema: maxItemsPerDataKeySchema },
  providerMaxAttempts: {
    path: ['keys', 'retry', 'maxAttempts'],
    schema: keyProviderRetrySchema.shape.maxAttempts.unwrap(),
  },
  providerRetryBudgetMs: {
    path: ['keys', 'retry', 'budgetMs'],
    schema: keyProviderRetrySchema.shape.budgetMs.unwrap(),
  },
  providerRetryBaseDelayMs: {
    path: ['keys', 'retry', 'baseDelayMs'],
    schema: keyProviderRetrySchema.shape.baseDelayMs.unwrap(),
  },
  providerOutageCooldownMs: {
    path: ['keys', 'retry', 'outageCooldownMs'],
    schema: keyProviderRetrySchema.shape.outageCooldownMs.unwrap(),
  },
  rotationMaxAgeDays: {
    path: ['keys', 'rotation', 'maxAgeDays'],
    schema: keyRotationPolicySchema.shape.maxAgeDays.unwrap(),
  },
  rotationMaxItems: {
    path: ['keys', 'rotation', 'maxItems'],
    schema: keyRotationPolicySchema.shape.maxItems.unwrap(),
  },
};

/** The module's key options, in the places {@link KEY_RING_FIELDS} names. */
export interface ModuleKeyRingOptions {
  readonly keyCache?: KeyCacheOptions;
  readonly keys?: {
    readonly retry?: KeyProviderRetryOptions;
    readonly maxItemsPerDataKey?: number;
    readonly rotation?: KeyRotationPolicyOptions;
  };
}

/** The module's key options as the key ring takes them. */
export function keyRingOptionsFrom(options: ModuleKeyRingOptions): KeyRingOptions {
  const valueAt = (path: readonly string[]): unknown =>
    path.reduce<unknown>(
      (node, key) => (node as Record<string, unknown> | undefined)?.[key],
      options,
    );
  return Object.fromEntries(
    Object.entries(KEY_RING_FIELDS).map(([name, field]) => [name, valueAt(field.path)]),
  ) as KeyRingOptions;
}

/**
 * The key ring's options with defaults filled in, each checked by the same rules as the
 * module's options: `cacheMaxEntries: 0` would otherwise make every write fail (a new key
 * cannot be cached) with a retryable error.
 *
 * @throws ConfigurationError naming the public option (`options.keyCache.maxEntries`) and what
 *   it takes.
 */
export function resolveKeyRingOptions(options: KeyRingOptions = {}): Required<KeyRingOptions> {
  const resolved = { ...KEY_RING_DEFAULTS };
  for (const [name, value] of Object.entries(options) as Array<[keyof KeyRingOptions, unknown]>) {
    if (value === undefined) continue;
    const field = Object.hasOwn(KEY_RING_FIELDS, name) ? KEY_RING_FIELDS[name] : undefined;
    if (!field) {
      throw new ConfigurationError(
        `Unknown key ring option ${name}; the key ring takes: ${Object.keys(KEY_RING_FIELDS).join(', ')}`,
      );
    }
    const result = field.schema.safeParse(value);
    if (!result.success) {
      throw optionIssueError(result.error.issues[0], `options.${field.path.join('.')}`);
    }
    // Only the fields whose schema takes null (the rotation policy) can be null here.
    (resolved as Record<keyof KeyRingOptions, number | null>)[name] = result.data;
  }
  return resolved;
}
