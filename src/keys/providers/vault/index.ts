export * from './transit-key-provider.js';
export * from './kv-key-provider.js';
// The connection itself stays internal: hosts name its options and read its counters only.
export type {
  VaultAuthOptions,
  VaultClient,
  VaultConnectionOptions,
} from './connection-options.js';
export type { VaultConnectionStats } from './connection.js';
