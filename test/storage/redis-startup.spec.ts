import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigurationError, StorageUnavailableError } from '../../src/index.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { createSessionStorage } from '../../src/module/session-storage.factory.js';
import { errorText } from '../support/error-text.js';
import {
  REDIS_URL,
  redisReadyFor,
  startPrivateRedis,
  unusedPort,
  type PrivateRedis,
} from '../support/redis-support.js';

const up = await redisReadyFor('Redis startup check spec');

/** A password that must never reach an error. */
const PASSWORD = `pw-canary-${randomUUID().slice(0, 8)}`;
const CONNECT_TIMEOUT_MS = 800;

/** What verifyConnection (or the module's storage factory) threw, with how long it took. */
async function startupFailure(start: () => Promise<unknown>) {
  const started = Date.now();
  const error = await start().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  return { error, ms: Date.now() - started };
}

describe.skipIf(!up)('Redis: the module checks its own connection at startup', () => {
  let secured: PrivateRedis;
  const storages: RedisSessionStorage[] = [];

  beforeAll(async () => {
    secured = await startPrivateRedis(['--requirepass', PASSWORD]);
  });
  afterAll(async () => {
    await secured.stop();
  });
  afterEach(async () => {
    await Promise.all(storages.splice(0).map((storage) => storage.close()));
  });

  function storageAt(url: string): RedisSessionStorage {
    const storage = new RedisSessionStorage({ url, connectTimeoutMs: CONNECT_TIMEOUT_MS });
    storages.push(storage);
    return storage;
  }

  it('fails with StorageUnavailableError naming options.storage.url and host:port when nothing listens', async () => {
    const port = await unusedPort();

    const { error, ms } = await startupFailure(() =>
      storageAt(`redis://:${PASSWORD}@127.0.0.1:${port}/0`).verifyConnection(),
    );

    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect((error as Error).message).toContain('options.storage.url');
    expect((error as Error).message).toContain(`127.0.0.1:${port}`);
    expect((error as Error).message).toContain('ECONNREFUSED');
    expect(errorText(error)).not.toContain(PASSWORD);
    expect(ms).toBeLessThan(CONNECT_TIMEOUT_MS + 500);
  });

  it('fails with ConfigurationError on a wrong password, naming the option, never the password', async () => {
    const { error } = await startupFailure(() =>
      storageAt(`redis://:${PASSWORD}-wrong@127.0.0.1:${secured.port}/0`).verifyConnection(),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(/options\.storage\.url.* refused the credentials/);
    expect((error as Error).message).toContain(`127.0.0.1:${secured.port}`);
    expect(errorText(error)).not.toContain(PASSWORD);
  });

  it('fails with ConfigurationError when the server wants a password the url lacks (NOAUTH)', async () => {
    const { error } = await startupFailure(() =>
      storageAt(`redis://127.0.0.1:${secured.port}/0`).verifyConnection(),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(/refused the credentials/);
  });

  it('fails with ConfigurationError on a database number the server does not have', async () => {
    const { error } = await startupFailure(() =>
      storageAt(`redis://:${PASSWORD}@127.0.0.1:${secured.port}/99`).verifyConnection(),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(/no database with the url's number/);
    expect(errorText(error)).not.toContain(PASSWORD);
  });

  it('starts when the url is right', async () => {
    await expect(
      storageAt(`redis://:${PASSWORD}@127.0.0.1:${secured.port}/0`).verifyConnection(),
    ).resolves.toBeUndefined();
  });

  it("does not block startup on a host's client; its calls then fail retryably within commandTimeoutMs", async () => {
    const host = new Redis(await unusedPort(), '127.0.0.1', { lazyConnect: true });
    host.on('error', () => undefined);
    const storage = new RedisSessionStorage({ client: host, commandTimeoutMs: 300 });
    storages.push(storage);
    try {
      await expect(storage.verifyConnection()).resolves.toBeUndefined();
      const { error, ms } = await startupFailure(() =>
        storage.read({ tenantId: 't', sessionId: 's' }, (scope) => scope.session.find()),
      );
      expect(error).toBeInstanceOf(StorageUnavailableError);
      expect(ms).toBeLessThan(1000);
    } finally {
      host.disconnect();
    }
  });

  it("makes the module's storage factory fail (and close its client) instead of starting", async () => {
    const port = await unusedPort();

    const { error } = await startupFailure(() =>
      createSessionStorage(
        { type: 'redis', url: `redis://127.0.0.1:${port}/0`, connectTimeoutMs: 500 },
        null,
      ),
    );

    expect(error).toBeInstanceOf(StorageUnavailableError);
  });

  it('lets the factory start on a reachable url', async () => {
    const storage = await createSessionStorage({ type: 'redis', url: REDIS_URL }, null);
    await storage.close();
    expect(storage.backend).toBe('redis');
  });
});
