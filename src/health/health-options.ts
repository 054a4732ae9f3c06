import { z } from 'zod';
import { milliseconds, parseOptions, strictOptions, takes } from '../errors/option-schema.js';

const periods = takes('a number of periods above 0, e.g. 2 (the default)');

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
  },
  'an object, e.g. { timeoutMs: 2000, maxLagPeriods: 2 }',
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
  return { timeoutMs: parsed.timeoutMs ?? 2000, maxLagPeriods: parsed.maxLagPeriods ?? 2 };
}
