import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionService,
  KekRotationService,
  KeyProviderUnavailableError,
  KeyRing,
  MemorySessionStorage,
} from '../../src/index.js';
import { AwsKmsKeyProvider } from '../../src/keys/providers/aws-kms-key-provider.js';
import { KmsTestServer } from '../support/kms-test-server.js';
import { userMessage } from '../support/session-harness.js';

const COOLDOWN_MS = 300;

/**
 * A key provider outage seen from the sessions, with the real KMS client against the loopback
 * KMS server: warm sessions carry on, new ones fail fast, and everything recovers without a
 * restart or a lost item.
 */
describe('key provider outage (aws-kms over the wire)', () => {
  let server: KmsTestServer;
  let provider: AwsKmsKeyProvider;
  let storage: MemorySessionStorage;
  let keyRing: KeyRing;
  let service: EncryptedSessionService;

  beforeEach(async () => {
    server = new KmsTestServer();
    const { endpoint } = await server.start();
    const key = server.createKey();
    provider = new AwsKmsKeyProvider({
      keyId: key.arn,
      region: server.region,
      endpoint,
      credentials: {
        accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(30).toString('base64'),
      },
      maxAttempts: 1,
      requestTimeoutMs: 1000,
    });
    await provider.init();
    storage = new MemorySessionStorage();
    keyRing = new KeyRing(storage, provider, {
      providerMaxAttempts: 3,
      providerRetryBudgetMs: 500,
      providerOutageCooldownMs: COOLDOWN_MS,
    });
    service = new EncryptedSessionService(storage, keyRing);
  });
  afterEach(async () => {
    keyRing.clear();
    await provider.close();
    await server.stop();
  });

  it('keeps warm sessions working, fails new ones fast, and recovers with nothing lost', async () => {
    const warm = await service.open(`warm-${randomUUID()}`);
    await warm.addItems([userMessage('before the outage')]);

    await server.down();
    // Warm: its data key is cached, so no KMS call is needed to read or write.
    await warm.addItems([userMessage('during the outage')]);
    expect(await warm.getItems()).toEqual([
      userMessage('before the outage'),
      userMessage('during the outage'),
    ]);
    // New: its first write needs GenerateDataKey; it fails with a retryable error...
    const fresh = await service.open(`new-${randomUUID()}`);
    await expect(fresh.addItems([userMessage('lost?')])).rejects.toBeInstanceOf(
      KeyProviderUnavailableError,
    );
    // ...and, right after, fails at once instead of waiting on a dead provider.
    const callsBefore = server.calls.GenerateDataKey ?? 0;
    const started = Date.now();
    await expect(fresh.addItems([userMessage('still down')])).rejects.toMatchObject({
      retryable: true,
    });
    expect(Date.now() - started).toBeLessThan(100);
    expect(server.calls.GenerateDataKey ?? 0).toBe(callsBefore);

    await server.up();
    await new Promise((resolve) => setTimeout(resolve, COOLDOWN_MS + 50));
    await fresh.addItems([userMessage('after the outage')]);
    expect(await fresh.getItems()).toEqual([userMessage('after the outage')]);
    expect(await warm.getItems()).toHaveLength(2);
    expect(keyRing.stats()).toMatchObject({ providerFastFailures: 1 });
  });

  it('reads a cold session again once the provider is back, with no restart', async () => {
    const id = `cold-${randomUUID()}`;
    await (await service.open(id)).addItems([userMessage('kept')]);
    keyRing.clear(); // as after a restart: nothing cached
    await server.down();
    const session = await service.open(id);
    await expect(session.getItems()).rejects.toBeInstanceOf(KeyProviderUnavailableError);
    await server.up();
    await new Promise((resolve) => setTimeout(resolve, COOLDOWN_MS + 50));
    expect(await session.getItems()).toEqual([userMessage('kept')]);
  });

  it('sends one Decrypt for many concurrent cold reads of a session', async () => {
    const id = `busy-${randomUUID()}`;
    await (await service.open(id)).addItems([userMessage('popular')]);
    keyRing.clear();
    const session = await service.open(id);
    const decryptsBefore = server.calls.Decrypt ?? 0;
    const reads = await Promise.all(Array.from({ length: 50 }, () => session.getItems()));
    expect(reads.every((items) => items.length === 1)).toBe(true);
    expect((server.calls.Decrypt ?? 0) - decryptsBefore).toBe(1);
  });

  it('rotates to another KMS key with ReEncrypt only, and reads with the new wrapping', async () => {
    const ids = Array.from({ length: 5 }, () => `rotating-${randomUUID()}`);
    for (const id of ids) await (await service.open(id)).addItems([userMessage(id)]);
    const rotation = new KekRotationService(storage, keyRing);
    await provider.setActiveKey(server.createKey().arn);
    expect((await rotation.status()).remaining).toBe(ids.length);
    const decryptsBefore = server.calls.Decrypt ?? 0;

    const report = await rotation.rewrapAll({ batchSize: 2 });

    expect(report).toMatchObject({ rewrapped: ids.length, failed: 0, remaining: 0 });
    expect(server.calls.ReEncrypt).toBe(ids.length);
    // The data keys never came back to the process while being moved.
    expect(server.calls.Decrypt ?? 0).toBe(decryptsBefore);
    keyRing.clear();
    for (const id of ids)
      expect(await (await service.open(id)).getItems()).toEqual([userMessage(id)]);
  });
});
