import { InvalidArgumentError } from '../errors/index.js';

/**
 * Longest id the tables store (tenant, session, subject).
 *
 * @publicApi
 */
export const MAX_ID_LENGTH = 191;

/** Returns `value` when it is a storable id; InvalidArgumentError naming `name` otherwise. */
export function checkId(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw new InvalidArgumentError(`${name} must be a string of 1-${MAX_ID_LENGTH} characters`);
  }
  // eslint-disable-next-line no-control-regex
  if (!value.isWellFormed() || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new InvalidArgumentError(`${name} must be well-formed text without control characters`);
  }
  return value;
}
