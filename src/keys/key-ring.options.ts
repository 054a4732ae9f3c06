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
}

/** Injection token for {@link KeyRingOptions}. */
export const KEY_RING_OPTIONS = Symbol('KEY_RING_OPTIONS');

export const KEY_RING_DEFAULTS: Required<KeyRingOptions> = {
  cacheMaxEntries: 10_000,
  cacheMaxAgeMs: 15 * 60_000,
  maxItemsPerDataKey: 2 ** 28,
};
