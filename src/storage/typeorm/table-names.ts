import { ConfigurationError } from '../../errors/index.js';

/** Names of the module's tables under a configurable prefix. */
export interface TableNames {
  readonly sessions: string;
  readonly items: string;
  readonly dataKeys: string;
  readonly historyOperations: string;
  readonly schemaMigrations: string;
}

/** Default prefix of every table the module creates. */
export const DEFAULT_TABLE_PREFIX = 'nes_';

const PREFIX_PATTERN = /^[a-z][a-z0-9_]{0,19}$/;

/**
 * Table names for a prefix. The prefix goes into SQL unquoted-safe, so it is restricted to
 * lowercase letters, digits and underscores.
 */
export function tableNamesFor(prefix: string = DEFAULT_TABLE_PREFIX): TableNames {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new ConfigurationError(
      `Invalid table prefix '${prefix}': use 1-20 lowercase letters, digits or underscores, starting with a letter (default '${DEFAULT_TABLE_PREFIX}')`,
    );
  }
  return {
    sessions: `${prefix}sessions`,
    items: `${prefix}items`,
    dataKeys: `${prefix}data_keys`,
    historyOperations: `${prefix}history_operations`,
    schemaMigrations: `${prefix}schema_migrations`,
  };
}
