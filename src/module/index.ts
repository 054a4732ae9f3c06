// The module layer as hosts use it.
export { EncryptedSessionModule } from './encrypted-session.module.js';
export {
  DEFAULT_SQLITE_PATH,
  type ActorResolver,
  type AuditOptions,
  type JobsOptions,
  type AwsCredentialsOption,
  type AwsKmsKeySourceOptions,
  type EncryptedSessionModuleExtras,
  type EncryptedSessionModuleOptions,
  type EnvKeySourceOptions,
  type KeysOptions,
  type RedisStorageOptions,
  type SqlServerStorageOptions,
  type SqliteStorageOptions,
  type StorageOptions,
  type VaultAuthOptions,
  type VaultKvKeySourceOptions,
  type VaultTransitKeySourceOptions,
} from './module-options.schema.js';
