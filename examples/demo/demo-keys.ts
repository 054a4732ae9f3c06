import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Logger, type LoggerService } from '@nestjs/common';

/** Root keys the demo hands to `EncryptedSessionModule` (`keys: { env: ... }`). */
export interface DemoKeys {
  /** `id:base64` pairs, comma separated, exactly as in `SESSION_KEYS`. Never log this. */
  readonly keys: string;
  /** Id of the key that wraps new data keys. */
  readonly activeKeyId: string;
  /** Ids only (not secret), for the startup log. */
  readonly keyIds: readonly string[];
  /** `env`: SESSION_KEYS / SESSION_ACTIVE_KEY; `dev-file`: the generated development key file. */
  readonly source: 'env' | 'dev-file';
  /** The development key file, when `source` is `dev-file`. */
  readonly devKeyFile?: string;
}

/** What {@link resolveDemoKeys} reads. */
export interface ResolveDemoKeysOptions {
  /** Environment to read `SESSION_KEYS`, `SESSION_ACTIVE_KEY` and `NODE_ENV` from. */
  readonly env: NodeJS.ProcessEnv;
  /** Folder of the development key file (`dev-keys.env`). */
  readonly dataDir: string;
  /** Where the development-key warning goes. @default a Nest `Logger` with context 'DemoKeys' */
  readonly logger?: LoggerService;
}

/** The demo cannot start with the key configuration it was given; the message says what to set. */
export class DemoKeysError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DemoKeysError';
  }
}

/** Name of the development key file inside the data folder. */
export const DEV_KEY_FILE_NAME = 'dev-keys.env';
/** Id of the generated development root key. */
export const DEV_KEY_ID = 'dev1';

const HOW_TO_SET_KEYS = [
  'Set SESSION_KEYS to comma-separated id:base64 root keys (32 random bytes each) and',
  'SESSION_ACTIVE_KEY to the id that wraps new data keys, for example:',
  '  export SESSION_KEYS="k1:$(openssl rand -base64 32)"',
  '  export SESSION_ACTIVE_KEY=k1',
];

/**
 * Decides which root keys the demo runs with:
 *
 * - `SESSION_KEYS` set: those keys, with `SESSION_ACTIVE_KEY` (required) as the active one.
 * - not set and `NODE_ENV` is not `production`: a development key file in `dataDir`, created
 *   with one fresh random key (mode 0600) or reused, with a loud warning.
 * - not set and `NODE_ENV=production`: refuses with {@link DemoKeysError}.
 *
 * Key material is never logged; only key ids are.
 */
export function resolveDemoKeys(options: ResolveDemoKeysOptions): DemoKeys {
  const { env, dataDir } = options;
  const keys = env.SESSION_KEYS?.trim() ?? '';
  const activeKeyId = env.SESSION_ACTIVE_KEY?.trim() ?? '';
  if (keys !== '') {
    const keyIds = keyIdsOf(keys);
    if (activeKeyId === '') {
      throw new DemoKeysError(
        `SESSION_ACTIVE_KEY is not set; set it to the id of the key in SESSION_KEYS that wraps new data keys (one of: ${keyIds.join(', ')})`,
      );
    }
    // The module checks each key (32 random bytes, valid ids) and names the problem.
    return { keys, activeKeyId, keyIds, source: 'env' };
  }
  if (activeKeyId !== '') {
    throw new DemoKeysError(
      ['SESSION_ACTIVE_KEY is set but SESSION_KEYS is empty.', ...HOW_TO_SET_KEYS].join('\n'),
    );
  }
  if (env.NODE_ENV === 'production') {
    throw new DemoKeysError(
      [
        'Refusing to start: NODE_ENV=production and SESSION_KEYS / SESSION_ACTIVE_KEY are not set.',
        'The demo only generates keys for development.',
        ...HOW_TO_SET_KEYS,
      ].join('\n'),
    );
  }
  return useDevKeyFile(dataDir, options.logger ?? new Logger('DemoKeys'));
}

function keyIdsOf(keys: string): string[] {
  return keys
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map((entry) => {
      const separator = entry.indexOf(':');
      return separator > 0 ? entry.slice(0, separator) : '(no id)';
    });
}

function useDevKeyFile(dataDir: string, logger: LoggerService): DemoKeys {
  const file = join(dataDir, DEV_KEY_FILE_NAME);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let created = false;
  try {
    const line = `${DEV_KEY_ID}:${randomBytes(32).toString('base64')}`;
    const content = [
      '# Development root key of the nest-encrypted-sessions demo. NOT FOR PRODUCTION.',
      '# Deleting this file makes every session stored with it unreadable.',
      `SESSION_KEYS=${line}`,
      `SESSION_ACTIVE_KEY=${DEV_KEY_ID}`,
      '',
    ].join('\n');
    // 'wx' fails when the file exists, so two processes starting at once cannot overwrite each
    // other's key (and strand data sealed under the first one).
    writeFileSync(file, content, { mode: 0o600, flag: 'wx' });
    created = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const parsed = readDevKeyFile(file);
  if (!created && (statSync(file).mode & 0o077) !== 0) {
    chmodSync(file, 0o600);
    logger.warn(`Tightened permissions of ${file} to 0600 (it was readable by other users)`);
  }
  const warning = [
    '*'.repeat(78),
    `DEVELOPMENT KEYS - NOT FOR PRODUCTION. SESSION_KEYS is not set, so the demo ${created ? 'created' : 'reuses'}`,
    `the root key '${DEV_KEY_ID}' in ${file} (mode 0600).`,
    'Anyone who can read that file can decrypt every session stored beside it;',
    'deleting it makes those sessions unreadable.',
    ...HOW_TO_SET_KEYS,
    'and set NODE_ENV=production so the demo refuses to start without them.',
    '*'.repeat(78),
  ];
  for (const line of warning) logger.warn(line);
  return { ...parsed, keyIds: keyIdsOf(parsed.keys), source: 'dev-file', devKeyFile: file };
}

function readDevKeyFile(file: string): { keys: string; activeKeyId: string } {
  const values = new Map<string, string>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^\s*(SESSION_KEYS|SESSION_ACTIVE_KEY)\s*=\s*(.*?)\s*$/.exec(line);
    if (match) values.set(match[1], match[2]);
  }
  const keys = values.get('SESSION_KEYS') ?? '';
  const activeKeyId = values.get('SESSION_ACTIVE_KEY') ?? '';
  if (keys === '' || activeKeyId === '') {
    throw new DemoKeysError(
      `${file} lacks SESSION_KEYS or SESSION_ACTIVE_KEY. Restore it, or delete it to generate a new development key (sessions stored with the old key become unreadable)`,
    );
  }
  return { keys, activeKeyId };
}
