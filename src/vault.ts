/**
 * `nest-encrypted-sessions/vault`: root keys in HashiCorp Vault (transit, or a KV v2 secret),
 * for `keys: { provider: new VaultTransitKeyProvider({ ..., client }) }` with a node-vault client
 * of the host's. `node-vault` is an optional peer dependency: `npm install node-vault@^0.12`.
 *
 * @packageDocumentation
 */
export {
  VaultKvKeyProvider,
  VaultTransitKeyProvider,
  type VaultAuthOptions,
  type VaultClient,
  type VaultConnectionOptions,
  type VaultConnectionStats,
  type VaultKvKeyProviderOptions,
  type VaultTransitKeyProviderOptions,
} from './keys/providers/vault/index.js';
