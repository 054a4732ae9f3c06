import { z } from 'zod';
import { milliseconds, parseOptions, strictOptions, takes } from '../errors/option-schema.js';

const periods = takes('a number of periods above 0, e.g. 2 (the default)');
const lagDays = takes('a number of days above 0 (at most 36500), e.g. 7, or null (the default)');

const healthOptionsSchema = strictOptions(
  {
    /**
     * How long the storage check waits for its round trip before it reports `down` with
     * `error: 'TIMEOUT'`. @default 2000
     */
    timeoutMs: milliseconds(2000, 1).optional(),
    /**
     * How late an enabled job may be, in periods of its cron, before the jobs check reports it
     * `down`. @default 2
     */
    maxLagPeriods: z.number(periods).positive(periods).max(1_000_000, periods).optional(),
    /**
     * How long a data key may stay `retiring` (its items not yet re-encrypted) before the key
     * rotation check reports `down` with `reason: 'ROTATION_LAG'`; null reports the lag and is
     * never down for it (a key under a legal hold stays retiring for as long as the hold).
     * @default null
     */
    maxRotationLagDays: z
      .number(lagDays)
      .positive(lagDays)
      .max(36_500, lagDays)
      .nullable()
      .optional(),
    /**
     * How long the key rotation check reuses its figures: each refresh is a full scan of the
     * data keys. @default 60000
     */
    keyRotationCacheMs: milliseconds(60_000, 0).optional(),
  },
  'an object, e.g. { timeoutMs: 2000, maxLagPeriods: 2, maxRotationLagDays: 7 }',
);

/**
 * Options of `EncryptedSessionHealthModule.forRoot` (or of the
 * {@link ENCRYPTED_SESSION_HEALTH_OPTIONS} provider).
 *
 * @publicApi
 */
export type EncryptedSessionHealthOptions = z.input<typeof healthOptionsSchema>;

/** The options with their defaults filled in. */
export type ResolvedHealthOptions = Required<EncryptedSessionHealthOptions>;

/**
 * Injection token of the {@link EncryptedSessionHealthOptions} that
 * `EncryptedSessionHealthIndicator` reads; optional (the defaults apply without it).
 *
 * @publicApi
 */
export const ENCRYPTED_SESSION_HEALTH_OPTIONS = Symbol('ENCRYPTED_SESSION_HEALTH_OPTIONS');

/**
 * Checks the options and fills in the defaults.
 *
 * @throws ConfigurationError naming the option and what it takes.
 */
export function resolveHealthOptions(options: unknown = {}): ResolvedHealthOptions {
  const parsed = parseOptions(healthOptionsSchema, options, 'healthOptions');
  return {
    timeoutMs: parsed.timeoutMs ?? 2000,
    maxLagPeriods: parsed.maxLagPeriods ?? 2,
    maxRotationLagDays: parsed.maxRotationLagDays ?? null,
    keyRotationCacheMs: parsed.keyRotationCacheMs ?? 60_000,
  };
}
