// The Vault key providers; the connection itself stays internal: hosts name its options and
// read its counters only.
export {
  VaultTransitKeyProvider,
  type VaultTransitKeyProviderOptions,
} from './transit-key-provider.js';
export { VaultKvKeyProvider, type VaultKvKeyProviderOptions } from './kv-key-provider.js';
export type {
  VaultAuthOptions,
  VaultClient,
  VaultConnectionOptions,
} from './connection-options.js';
export type { VaultConnectionStats } from './connection.js';
