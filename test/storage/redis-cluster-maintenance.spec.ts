import { Cluster } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EnvKeyProvider,
  KekRotationService,
  KeyRing,
  supportsMaintenance,
} from '../../src/index.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { newRootKeyEntry } from '../support/test-keys.js';

// On a Redis Cluster client the expired-item scan is offered (it SCANs every master, see
// redis-expiry-index-cluster.spec.ts), but the data-key scans of KEK rotation still refuse with
// a ConfigurationError before anything runs. The client never connects: nothing here reaches a
// server.

describe('RedisSessionStorage on a Redis Cluster client', () => {
  it('offers the expired-item scan, and KEK rotation refuses before it reaches the server', async () => {
    const client = new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true });
    const storage = new RedisSessionStorage({ client });
    const provider = new EnvKeyProvider({ keys: newRootKeyEntry('k1'), activeKeyId: 'k1' });
    const rotation = new KekRotationService(storage, new KeyRing(storage, provider));
    try {
      expect(supportsMaintenance(storage)).toBe(true);
      expect(supportsMaintenance(storage) && 'listExpiredItems' in storage.maintenance).toBe(true);
      await expect(rotation.status()).rejects.toThrow(/not supported on a Redis Cluster/);
      await expect(rotation.rewrapAll()).rejects.toBeInstanceOf(ConfigurationError);
      expect(client.status).toBe('wait');
    } finally {
      client.disconnect();
    }
  });
});
