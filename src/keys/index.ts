// The keys layer as the layers above use it. The AWS KMS and Vault providers need optional
// packages: the module loads them by path when the options name them, and hosts import them
// from the package's ./aws-kms and ./vault entries.
export {
  KEY_PROVIDER,
  type DataKeyContext,
  type GeneratedDataKey,
  type KeyProvider,
  type WrappedDataKey,
} from './key-provider.interface.js';
export {
  KEY_RING_DEFAULTS,
  KEY_RING_OPTIONS,
  keyCacheOptionsSchema,
  keyProviderRetrySchema,
  keyRingOptionsFrom,
  keyRotationPolicySchema,
  maxItemsPerDataKeySchema,
  resolveKeyRingOptions,
  type KeyCacheOptions,
  type KeyProviderRetryOptions,
  type KeyRingOptions,
  type KeyRotationPolicyOptions,
  type ModuleKeyRingOptions,
} from './key-ring.options.js';
export {
  KeyRing,
  type KeyProviderStatus,
  type KeyRingStats,
  type UsableDataKey,
} from './key-ring.service.js';
export {
  KekRotationService,
  type KekRotationStatus,
  type RewrapOptions,
  type RewrapProgress,
  type RewrapReport,
} from './kek-rotation.service.js';
export { EnvKeyProvider, type EnvKeyProviderOptions } from './providers/env-key-provider.js';
