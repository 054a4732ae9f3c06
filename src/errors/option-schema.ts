import { z } from 'zod';
import { ConfigurationError } from './errors.js';

/**
 * Building blocks of the module's option schemas (zod 4), so every refusal reads
 * `<path> must be <what it takes>`: zod's own messages say what was received, not what to set.
 * Messages never contain the value given (a URL may hold a password).
 *
 * @internal
 */

/** The error of a field that takes `takes`: "is required: set it to ..." when left out. */
export function takes(what: string): { error: (issue: { input?: unknown }) => string } {
  return {
    error: (issue) =>
      issue.input === undefined ? `is required: set it to ${what}` : `must be ${what}`,
  };
}

/** A whole number from `min` to `max`, with the message naming its unit and default. */
export function wholeNumber(
  what: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): z.ZodNumber {
  const message = takes(what);
  return z.number(message).int(message).min(min, message).max(max, message);
}

/** A whole number of milliseconds, 0 or more (`min` 1 where 0 would mean "never"). */
export const milliseconds = (defaultMs: number | string, min = 0): z.ZodNumber =>
  wholeNumber(
    `a whole number of milliseconds, ${min === 0 ? '0 or more' : `at least ${min}`} (default ${defaultMs})`,
    min,
  );

/** A non-empty string, e.g. an id or a name. */
export const nonEmptyString = (what: string): z.ZodString =>
  z.string(takes(what)).min(1, takes(what));

/**
 * An object that refuses keys it does not list, naming them and the ones it takes: a misspelt
 * or misplaced option would otherwise be ignored.
 */
export function strictOptions<Shape extends z.ZodRawShape>(
  shape: Shape,
  what = 'an object',
): z.ZodObject<Shape, z.core.$strict> {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `takes: ${Object.keys(shape).join(', ')}`
        : takes(what).error(issue),
  });
}

/**
 * Parses `value` with `schema`, throwing the first refusal as a {@link ConfigurationError} that
 * names the option by its path under `root` (`options.storage.url`).
 */
export function parseOptions<Schema extends z.ZodType>(
  schema: Schema,
  value: unknown,
  root: string,
): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw optionIssueError(result.error.issues[0], root);
}

/** One zod issue as the ConfigurationError the module throws. */
export function optionIssueError(issue: z.core.$ZodIssue, root: string): ConfigurationError {
  const path = [root, ...issue.path.map(String)].join('.');
  if (issue.code === 'unrecognized_keys') {
    return new ConfigurationError(
      `Unknown option ${path}.${issue.keys[0]}; ${path} ${issue.message} (a misspelt or misplaced option would otherwise be ignored)`,
    );
  }
  return new ConfigurationError(`${path} ${issue.message}`);
}
