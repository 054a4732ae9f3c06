import type {
  AwsKmsKeyProviderOptions,
  EnvKeyProviderOptions,
  KeyProvider,
  KeyRingOptions,
  VaultKvKeyProviderOptions,
  VaultTransitKeyProviderOptions,
} from '../keys/index.js';
import type {
  RedisSessionStorageOptions,
  SqlServerDatabaseOptions,
  SqliteSynchronous,
} from '../storage/index.js';

/** Where root keys come from. */
export type KeySourceOptions =
  /** Root keys in configuration (`id:base64` pairs) with one active id. */
  | { env: EnvKeyProviderOptions }
  /** A KMS key (id, ARN or alias) in AWS KMS: data keys from GenerateDataKey, bound to context. */
  | { awsKms: AwsKmsKeyProviderOptions }
  /** A derived transit key in HashiCorp Vault: data keys wrapped and rewrapped inside Vault. */
  | { vaultTransit: VaultTransitKeyProviderOptions }
  /** Root keys kept in a Vault KV v2 secret (its versions are the key ids), used like env keys. */
  | { vaultKv: VaultKvKeyProviderOptions }
  /** Any {@link KeyProvider} the host built itself (tests, custom HSMs). */
  | { provider: KeyProvider };

/** The module's own embedded SQLite file (WAL). The default. */
export interface SqliteStorageOptions {
  type: 'sqlite';
  /** Database file. @default './data/sessions.sqlite' */
  path?: string;
  /** `FULL` waits for the disk at every commit; `NORMAL` is faster (see README). @default 'FULL' */
  synchronous?: SqliteSynchronous;
  /** Wait for another process's write lock, in ms. @default 5000 */
  busyTimeoutMs?: number;
  /** SQLite page cache, in KiB. @default 8192 */
  cacheSizeKiB?: number;
}

/**
 * A Postgres or MySQL/MariaDB server the module connects to itself, from a URL. To share a
 * host's TypeORM DataSource instead, pass `dataSourceName` next to the options.
 */
export interface SqlServerStorageOptions extends Omit<SqlServerDatabaseOptions, 'type'> {
  /** `postgres`, or `mysql` / `mariadb` (the same mysql2 driver). */
  type: 'postgres' | 'mysql' | 'mariadb';
}

/** Redis (ioredis 5): items, sessions and wrapped data keys, one hash tag per session. */
export interface RedisStorageOptions extends RedisSessionStorageOptions {
  type: 'redis';
}

/** Where sessions are stored when no host DataSource is named. */
export type StorageOptions =
  | SqliteStorageOptions
  | SqlServerStorageOptions
  | RedisStorageOptions
  /** In process memory: nothing survives a restart. Tests and throwaway demos only. */
  | { type: 'memory' };

/** Options of `EncryptedSessionModule.forRoot` / `forRootAsync`. */
export interface EncryptedSessionModuleOptions {
  /** Root key source. Required: there is no default key. */
  keys: KeySourceOptions;
  /**
   * Storage when no host DataSource is named with `dataSourceName`.
   * @default { type: 'sqlite', path: './data/sessions.sqlite', synchronous: 'FULL' }
   */
  storage?: StorageOptions;
  /** Prefix of every table the module creates. @default 'nes_' */
  tablePrefix?: string;
  /**
   * Apply the module's migrations at startup (only the module's own, tracked in
   * `<prefix>schema_migrations`). Set false when the host runs the exported migrations itself.
   * @default true
   */
  runMigrations?: boolean;
  /** Tenant of sessions opened without one. @default 'default' */
  defaultTenantId?: string;
  /** Item time-to-live in seconds for sessions opened without one; null keeps items. @default null */
  itemTtlSeconds?: number | null;
  /**
   * Largest encoded (JSON) size of one item in bytes, checked before anything is written:
   * `addItems` and `applyHistoryTransaction` refuse a larger item with `InvalidArgumentError`.
   * Keep it below the storage backend's own ceiling (README). @default 4194304 (4 MiB)
   */
  maxItemBytes?: number;
  /** Data key cache tuning. */
  keyCache?: KeyRingOptions;
}

/** Options that change the module graph; given next to the options, never async. */
export interface EncryptedSessionModuleExtras {
  /** Register the module globally. @default false */
  isGlobal?: boolean;
  /**
   * Store sessions in a host's TypeORM DataSource registered with `TypeOrmModule.forRoot`:
   * `'default'` for the unnamed one, or its name. @default undefined (own SQLite file)
   */
  dataSourceName?: string;
}

/** Default SQLite file, relative to the working directory. */
export const DEFAULT_SQLITE_PATH = './data/sessions.sqlite';
