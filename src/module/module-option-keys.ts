import { ConfigurationError } from '../errors/index.js';
import { KEY_RING_DEFAULTS } from '../keys/index.js';
import type {
  AwsKmsKeyProviderOptions,
  EnvKeyProviderOptions,
  VaultAuthOptions,
  VaultKvKeyProviderOptions,
  VaultTransitKeyProviderOptions,
} from '../keys/index.js';
import type {
  EncryptedSessionModuleExtras,
  EncryptedSessionModuleOptions,
  RedisStorageOptions,
  SqliteStorageOptions,
  SqlServerStorageOptions,
} from './encrypted-session-module-options.interface.js';

/**
 * The keys each options object may hold. `satisfies Record<keyof T, true>` keeps every list
 * equal to its interface: an option added to an interface and not here (or the reverse) fails
 * the typecheck instead of being refused at startup.
 */
type KeysOf<T> = Record<keyof T, true>;

// `maxItemBytes` is listed ahead of its interface field (another branch adds it).
const TOP_LEVEL = {
  keys: true,
  storage: true,
  tablePrefix: true,
  runMigrations: true,
  defaultTenantId: true,
  itemTtlSeconds: true,
  keyCache: true,
  maxItemBytes: true,
} satisfies Record<keyof EncryptedSessionModuleOptions | 'maxItemBytes', true>;

const EXTRAS = {
  isGlobal: true,
  dataSourceName: true,
} satisfies KeysOf<EncryptedSessionModuleExtras>;

/** Keys of `forRootAsync`'s own options (Nest's `ConfigurableModuleAsyncOptions`). */
const ASYNC_OPTIONS = {
  useFactory: true,
  useClass: true,
  useExisting: true,
  inject: true,
  imports: true,
  provideInjectionTokensFrom: true,
};

const KEY_SOURCES = { env: true, awsKms: true, vaultTransit: true, vaultKv: true, provider: true };

// Every key ring option has a default, so the defaults name them all.
const KEY_CACHE = Object.fromEntries(Object.keys(KEY_RING_DEFAULTS).map((name) => [name, true]));

const ENV_KEYS = {
  keys: true,
  activeKeyId: true,
  sourceNames: true,
} satisfies KeysOf<EnvKeyProviderOptions>;

const AWS_KMS = {
  keyId: true,
  region: true,
  endpoint: true,
  credentials: true,
  client: true,
  requestTimeoutMs: true,
  maxAttempts: true,
} satisfies KeysOf<AwsKmsKeyProviderOptions>;

const VAULT_CONNECTION = {
  endpoint: true,
  namespace: true,
  auth: true,
  client: true,
  requestTimeoutMs: true,
  renewAtFraction: true,
} as const;

const VAULT_TRANSIT = {
  ...VAULT_CONNECTION,
  mountPath: true,
  keyName: true,
  useDatakeyEndpoint: true,
} satisfies KeysOf<VaultTransitKeyProviderOptions>;

const VAULT_KV = {
  ...VAULT_CONNECTION,
  mountPath: true,
  secretPath: true,
  field: true,
  keyCacheTtlMs: true,
} satisfies KeysOf<VaultKvKeyProviderOptions>;

type AuthOf<M extends VaultAuthOptions['method']> = Extract<VaultAuthOptions, { method: M }>;
const VAULT_AUTH: Record<VaultAuthOptions['method'], Record<string, true>> = {
  token: { method: true, token: true } satisfies KeysOf<AuthOf<'token'>>,
  approle: {
    method: true,
    roleId: true,
    secretId: true,
    mountPath: true,
  } satisfies KeysOf<AuthOf<'approle'>>,
  kubernetes: {
    method: true,
    role: true,
    jwt: true,
    jwtPath: true,
    mountPath: true,
  } satisfies KeysOf<AuthOf<'kubernetes'>>,
};

const SQL_SERVER = {
  type: true,
  url: true,
  poolSize: true,
  connectTimeoutMs: true,
  schema: true,
  ssl: true,
} satisfies KeysOf<SqlServerStorageOptions>;

const STORAGE: Record<string, Record<string, true>> = {
  sqlite: {
    type: true,
    path: true,
    synchronous: true,
    busyTimeoutMs: true,
    cacheSizeKiB: true,
  } satisfies KeysOf<SqliteStorageOptions>,
  postgres: SQL_SERVER,
  mysql: SQL_SERVER,
  mariadb: SQL_SERVER,
  redis: {
    type: true,
    client: true,
    url: true,
    keyPrefix: true,
    expiryBackstopSeconds: true,
    maxConflictRetries: true,
    commandTimeoutMs: true,
    connectTimeoutMs: true,
  } satisfies KeysOf<RedisStorageOptions>,
  memory: { type: true },
};

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const has = (allowed: object, key: string) => Object.hasOwn(allowed, key);

const listOf = (allowed: object) => Object.keys(allowed).join(', ');

/** Refuses the first key of `value` that `allowed` does not list, naming it and the choices. */
function refuseUnknownKeys(value: unknown, allowed: object, path: string): void {
  if (!isPlainObject(value)) return;
  for (const key of Object.keys(value)) {
    if (!has(allowed, key)) {
      throw new ConfigurationError(
        `Unknown option ${path}.${key}; ${path} takes: ${listOf(allowed)} (a misspelt or misplaced option would otherwise be ignored)`,
      );
    }
  }
}

/**
 * Refuses every key of the module's options that the module does not read there: extras
 * returned from a `forRootAsync` factory (read only beside it), and unknown keys at any level.
 * Values are checked elsewhere; this only makes sure nothing given is silently ignored.
 *
 * @throws ConfigurationError naming the key and where it belongs.
 */
export function refuseUnreadOptions(options: object): void {
  for (const key of Object.keys(options)) {
    if (has(EXTRAS, key)) {
      throw new ConfigurationError(
        `options.${key} changes the module graph: pass it beside useFactory (forRootAsync({ ${key}, useFactory })), not in the factory's result, where it is not read`,
      );
    }
  }
  refuseUnknownKeys(options, TOP_LEVEL, 'options');
  const { keys, storage, keyCache } = options as Record<string, unknown>;
  refuseUnknownKeys(keyCache, KEY_CACHE, 'options.keyCache');

  if (isPlainObject(keys)) {
    refuseUnknownKeys(keys, KEY_SOURCES, 'options.keys');
    const sources = Object.keys(keys);
    if (sources.length > 1) {
      throw new ConfigurationError(
        `options.keys names ${sources.length} key sources (${sources.join(', ')}); give exactly one`,
      );
    }
    refuseUnknownKeys(keys.env, ENV_KEYS, 'options.keys.env');
    refuseUnknownKeys(keys.awsKms, AWS_KMS, 'options.keys.awsKms');
    for (const [source, allowed] of [
      ['vaultTransit', VAULT_TRANSIT],
      ['vaultKv', VAULT_KV],
    ] as const) {
      const vault = keys[source];
      refuseUnknownKeys(vault, allowed, `options.keys.${source}`);
      const auth = isPlainObject(vault) ? vault.auth : undefined;
      if (isPlainObject(auth) && typeof auth.method === 'string' && has(VAULT_AUTH, auth.method)) {
        refuseUnknownKeys(
          auth,
          VAULT_AUTH[auth.method as VaultAuthOptions['method']],
          `options.keys.${source}.auth`,
        );
      }
    }
  }
  // An unknown storage type is refused with the list of types by the value checks.
  if (isPlainObject(storage) && typeof storage.type === 'string' && has(STORAGE, storage.type)) {
    refuseUnknownKeys(storage, STORAGE[storage.type], 'options.storage');
  }
}

/**
 * Refuses keys given beside `forRootAsync`'s factory that are read only from its result
 * (`tablePrefix`, `storage`, ...) or not at all. Nest would take them as extras and ignore them.
 *
 * @throws ConfigurationError naming the key and where it belongs.
 */
export function refuseUnreadAsyncOptions(asyncOptions: object): void {
  for (const key of Object.keys(asyncOptions)) {
    if (has(ASYNC_OPTIONS, key) || has(EXTRAS, key)) continue;
    if (has(TOP_LEVEL, key)) {
      throw new ConfigurationError(
        `forRootAsync option ${key} is read from the factory's result, not beside useFactory: return it from useFactory`,
      );
    }
    throw new ConfigurationError(
      `Unknown forRootAsync option ${key}; beside useFactory it takes: ${listOf({ ...ASYNC_OPTIONS, ...EXTRAS })}`,
    );
  }
}
