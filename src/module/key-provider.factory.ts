import type { KeyProvider } from '../keys/index.js';
import { EnvKeyProvider } from '../keys/index.js';
import type { ResolvedKeySource } from './resolve-module-options.js';

/**
 * Builds the key provider `options.keys` names. The AWS KMS and Vault providers are loaded
 * only when named: their SDKs are optional packages, and each provider says which one to
 * install when it is missing. A host's own provider is used as given.
 */
export async function createKeyProvider(keys: ResolvedKeySource): Promise<KeyProvider> {
  switch (keys.source) {
    case 'provider':
      return keys.options;
    case 'env':
      // Messages name the options the host sets, not the provider's own parameter names.
      return new EnvKeyProvider({
        sourceNames: { keys: 'options.keys.env.keys', activeKeyId: 'options.keys.env.activeKeyId' },
        ...keys.options,
      });
    case 'awsKms': {
      const { AwsKmsKeyProvider } = await import('../keys/providers/aws-kms-key-provider.js');
      const { credentials } = keys.options;
      return new AwsKmsKeyProvider({
        ...keys.options,
        // The resolved options are frozen; the SDK marks the credentials it is given.
        credentials: typeof credentials === 'object' ? { ...credentials } : credentials,
      });
    }
    case 'vaultTransit': {
      const { VaultTransitKeyProvider } = await import('../keys/providers/vault/index.js');
      return new VaultTransitKeyProvider({ ...keys.options });
    }
  }
  const { VaultKvKeyProvider } = await import('../keys/providers/vault/index.js');
  return new VaultKvKeyProvider({ ...keys.options });
}
