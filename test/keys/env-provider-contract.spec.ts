import { EnvKeyProvider, type KeyProvider } from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { describeKeyProviderContract } from './provider-contract.js';

/**
 * Env root keys rotate by restarting with another active id: the fixture's provider delegates
 * to an EnvKeyProvider that is rebuilt with the next key active, old keys still listed.
 */
describeKeyProviderContract('env', async () => {
  const keys = [newRootKeyEntry('k1')];
  let inner = new EnvKeyProvider({ keys, activeKeyId: 'k1' });
  const provider: KeyProvider = {
    name: 'env',
    activeKekId: () => inner.activeKekId(),
    generateDataKey: (context) => inner.generateDataKey(context),
    unwrapDataKey: (wrapped, context) => inner.unwrapDataKey(wrapped, context),
    rewrapDataKey: (wrapped, context) => inner.rewrapDataKey(wrapped, context),
  };
  return {
    provider,
    secrets: keys.map((entry) => entry.slice(entry.indexOf(':') + 1)),
    async rotateRootKey() {
      const id = `k${keys.length + 1}`;
      keys.push(newRootKeyEntry(id));
      inner = new EnvKeyProvider({ keys, activeKeyId: id });
    },
    async close() {},
  };
});
