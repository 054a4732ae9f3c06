import { ConfigurationError } from '../errors/index.js';
import {
  AwsKmsKeyProvider,
  EnvKeyProvider,
  VaultKvKeyProvider,
  VaultTransitKeyProvider,
  type KeyProvider,
} from '../keys/index.js';
import { checkSqlServerOptions, tableNamesFor, validateRedisKeyPrefix } from '../storage/index.js';
import { refuseUnreadOptions } from './module-option-keys.js';
import type {
  EncryptedSessionModuleOptions,
  StorageOptions,
} from './encrypted-session-module-options.interface.js';

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Checks options at startup and builds the key provider they name, so a bad setting stops the
 * app with a message that says what to set, not a failure on the first request.
 */
export function validateModuleOptions(options: EncryptedSessionModuleOptions): KeyProvider {
  if (!isPlainObject(options)) {
    throw new ConfigurationError(
      'EncryptedSessionModule needs an options object with at least { keys }',
    );
  }
  refuseUnreadOptions(options);
  const { keys, storage, itemTtlSeconds, defaultTenantId, runMigrations, tablePrefix } = options;
  if (tablePrefix !== undefined) tableNamesFor(tablePrefix);
  if (storage !== undefined) validateStorageOptions(storage);
  if (
    itemTtlSeconds !== undefined &&
    itemTtlSeconds !== null &&
    (!Number.isSafeInteger(itemTtlSeconds) || itemTtlSeconds <= 0)
  ) {
    throw new ConfigurationError(
      'options.itemTtlSeconds must be a positive whole number of seconds, or null',
    );
  }
  if (
    defaultTenantId !== undefined &&
    (typeof defaultTenantId !== 'string' || defaultTenantId === '')
  ) {
    throw new ConfigurationError('options.defaultTenantId must be a non-empty string');
  }
  if (
    options.maxItemBytes !== undefined &&
    (typeof options.maxItemBytes !== 'number' ||
      !Number.isSafeInteger(options.maxItemBytes) ||
      options.maxItemBytes <= 0)
  ) {
    throw new ConfigurationError(
      'options.maxItemBytes must be a positive whole number of bytes (the largest encoded item), e.g. 4194304 for 4 MiB (the default)',
    );
  }
  if (runMigrations !== undefined && typeof runMigrations !== 'boolean') {
    throw new ConfigurationError('options.runMigrations must be true or false');
  }
  if (!isPlainObject(keys)) {
    throw new ConfigurationError(
      'options.keys is required: { env: { keys, activeKeyId } } or { provider } (there is no default key)',
    );
  }
  if ('provider' in keys) {
    const provider = keys.provider as Partial<KeyProvider> | undefined;
    if (
      !provider ||
      typeof provider.generateDataKey !== 'function' ||
      typeof provider.unwrapDataKey !== 'function' ||
      typeof provider.activeKekId !== 'function' ||
      typeof provider.rewrapDataKey !== 'function'
    ) {
      throw new ConfigurationError(
        'options.keys.provider must implement KeyProvider (activeKekId, generateDataKey, unwrapDataKey, rewrapDataKey)',
      );
    }
    return keys.provider;
  }
  if ('env' in keys && isPlainObject(keys.env)) {
    if (keys.env.sourceNames === undefined) refuseMissingEnvKeys(keys.env);
    // Messages name the options the host sets, not the provider's own parameter names.
    return new EnvKeyProvider({
      sourceNames: { keys: 'options.keys.env.keys', activeKeyId: 'options.keys.env.activeKeyId' },
      ...keys.env,
    });
  }
  // Each constructor checks its own options and says what to set.
  if ('awsKms' in keys && isPlainObject(keys.awsKms)) return new AwsKmsKeyProvider(keys.awsKms);
  if ('vaultTransit' in keys && isPlainObject(keys.vaultTransit)) {
    return new VaultTransitKeyProvider(keys.vaultTransit);
  }
  if ('vaultKv' in keys && isPlainObject(keys.vaultKv)) return new VaultKvKeyProvider(keys.vaultKv);
  throw new ConfigurationError(
    'options.keys must be one of { env }, { awsKms }, { vaultTransit }, { vaultKv } or { provider }',
  );
}

/** What each env key option takes, and where the README's snippet reads it from. */
const ENV_KEY_FIELDS = {
  keys: {
    takes:
      "'id:base64key,...' (comma-separated; each key 32 random bytes, e.g. k1:$(openssl rand -base64 32))",
    readmeVariable: 'SESSION_KEYS',
  },
  activeKeyId: {
    takes: 'the id of the key in options.keys.env.keys that wraps new data keys',
    readmeVariable: 'SESSION_ACTIVE_KEY',
  },
} as const;

/**
 * `keys: { env: { keys: process.env.SESSION_KEYS! } }` with the variable unset passes
 * `undefined`: say which option is missing and where the README takes it from.
 */
function refuseMissingEnvKeys(env: Record<string, unknown>): void {
  for (const [field, { takes, readmeVariable }] of Object.entries(ENV_KEY_FIELDS)) {
    const value = env[field];
    if (value === undefined || value === null || value === '') {
      throw new ConfigurationError(
        `options.keys.env.${field} is ${value === '' ? 'empty' : `missing (${String(value)})`}: set it to ${takes} (the README reads it from ${readmeVariable})`,
      );
    }
  }
}

const STORAGE_TYPES = ['sqlite', 'postgres', 'mysql', 'mariadb', 'redis', 'memory'];

/** Checks `options.storage` without opening anything; messages never echo a URL. */
function validateStorageOptions(storage: StorageOptions): void {
  const given: unknown = storage;
  if (
    !isPlainObject(given) ||
    !(typeof given.type === 'string' && STORAGE_TYPES.includes(given.type))
  ) {
    throw new ConfigurationError(
      `options.storage.type must be one of ${STORAGE_TYPES.map((t) => `'${t}'`).join(', ')} (default 'sqlite')`,
    );
  }
  switch (storage.type) {
    case 'sqlite':
      if (storage.path !== undefined && (typeof storage.path !== 'string' || storage.path === '')) {
        throw new ConfigurationError(
          'options.storage.path must be a file path, e.g. ./data/sessions.sqlite',
        );
      }
      if (storage.synchronous !== undefined && !['FULL', 'NORMAL'].includes(storage.synchronous)) {
        throw new ConfigurationError(
          "options.storage.synchronous must be 'FULL' (the default) or 'NORMAL'",
        );
      }
      return;
    case 'postgres':
    case 'mysql':
    case 'mariadb': {
      if (typeof storage.url !== 'string' || storage.url === '') {
        throw new ConfigurationError(
          `options.storage.url is required for storage type '${storage.type}', e.g. ${storage.type === 'postgres' ? 'postgres' : 'mysql'}://user:password@host:port/database`,
        );
      }
      checkSqlServerOptions({
        ...storage,
        type: storage.type === 'postgres' ? 'postgres' : 'mysql',
      });
      return;
    }
    case 'redis':
      if ((storage.url === undefined) === (storage.client === undefined)) {
        throw new ConfigurationError(
          "options.storage for type 'redis' needs exactly one of url (e.g. redis://127.0.0.1:6379/0) or client (an ioredis instance)",
        );
      }
      if (storage.keyPrefix !== undefined) validateRedisKeyPrefix(storage.keyPrefix);
      return;
    case 'memory':
      return;
  }
}
