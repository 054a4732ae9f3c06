import { randomBytes, randomUUID } from 'node:crypto';
import {
  CreateAliasCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  KMSClient,
  ScheduleKeyDeletionCommand,
  UpdateAliasCommand,
} from '@aws-sdk/client-kms';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  type DataKeyContext,
  type EncryptedSessionError,
} from '../../src/index.js';
import {
  AwsKmsKeyProvider,
  type AwsKmsKeyProviderOptions,
} from '../../src/keys/providers/aws-kms-key-provider.js';
import { KmsTestServer, type KmsTestKey } from '../support/kms-test-server.js';
import { thrownBy } from '../support/thrown-by.js';
import {
  describeKeyProviderContract,
  describeRemoteProviderContract,
} from './provider-contract.js';

/** Fake credentials: the server takes any SigV4 signature, but the SDK must sign with something. */
function fakeCredentials() {
  return {
    accessKeyId: `AKIATEST${randomBytes(6).toString('hex').toUpperCase()}`,
    secretAccessKey: `fake-secret-${randomUUID()}`,
    sessionToken: `fake-token-${randomUUID()}`,
  };
}

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

/** Runs `action` and returns what it rejected with, or fails when it resolves. */
async function rejectionOf(action: () => Promise<unknown>): Promise<EncryptedSessionError> {
  try {
    await action();
  } catch (error) {
    return error as EncryptedSessionError;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** A KMS test server with one key, fake credentials and helpers to build providers on it. */
interface KmsHarness {
  readonly server: KmsTestServer;
  readonly endpoint: string;
  readonly key: KmsTestKey;
  readonly credentials: ReturnType<typeof fakeCredentials>;
  /** Options of a provider on this server; `overrides` replace any of them. */
  options(overrides?: Partial<AwsKmsKeyProviderOptions>): AwsKmsKeyProviderOptions;
  /** A KMS client for what an operator does by hand (disable a key, move an alias). */
  operator: KMSClient;
  close(): Promise<void>;
}

async function startKms(): Promise<KmsHarness> {
  const server = new KmsTestServer();
  const { endpoint } = await server.start();
  const credentials = fakeCredentials();
  const key = server.createKey();
  const operator = new KMSClient({ region: server.region, endpoint, credentials, maxAttempts: 1 });
  return {
    server,
    endpoint,
    key,
    credentials,
    operator,
    options: (overrides = {}) => ({
      keyId: key.arn,
      region: server.region,
      endpoint,
      credentials,
      ...overrides,
    }),
    async close() {
      operator.destroy();
      await server.stop();
    },
  };
}

/**
 * The shared suites over a fresh server per test: rotation makes a new KMS key active with
 * `setActiveKey`; an outage closes the server's port.
 */
const kmsFixture = async () => {
  const kms = await startKms();
  const provider = new AwsKmsKeyProvider(kms.options());
  return {
    provider,
    get secrets() {
      return [
        kms.credentials.secretAccessKey,
        kms.credentials.sessionToken,
        ...kms.server.keyMaterials(),
      ];
    },
    async rotateRootKey() {
      await provider.setActiveKey(kms.server.createKey().arn);
    },
    breakService: () => kms.server.down(),
    restoreService: () => kms.server.up(),
    close: () => kms.close(),
  };
};

describeKeyProviderContract('aws-kms', kmsFixture);
describeRemoteProviderContract('aws-kms', kmsFixture);

describe('AwsKmsKeyProvider over the KMS wire protocol', () => {
  let kms: KmsHarness;
  const providers: AwsKmsKeyProvider[] = [];

  /** A provider on the test server, initialised, closed after the test. */
  async function providerWith(
    overrides: Partial<AwsKmsKeyProviderOptions> = {},
  ): Promise<AwsKmsKeyProvider> {
    const provider = new AwsKmsKeyProvider(kms.options(overrides));
    providers.push(provider);
    await provider.init();
    return provider;
  }

  beforeEach(async () => {
    kms = await startKms();
  });
  afterEach(async () => {
    await Promise.all(providers.splice(0).map((provider) => provider.close()));
    await kms.close();
  });

  describe('data keys', () => {
    it('asks GenerateDataKey for AES_256 under the key ARN, bound to tenant, session and data key id', async () => {
      const provider = await providerWith();
      const context = contextFor();
      await provider.generateDataKey(context);
      expect(kms.server.inputsOf('GenerateDataKey')).toEqual([
        {
          KeyId: kms.key.arn,
          KeySpec: 'AES_256',
          EncryptionContext: {
            tenant: context.tenantId,
            session: context.sessionId,
            dek: context.dekId,
          },
        },
      ]);
    });

    it('names the key ARN in the kekId of every wrapped key', async () => {
      const provider = await providerWith();
      const { wrapped } = await provider.generateDataKey(contextFor());
      expect(wrapped.kekId).toBe(`aws-kms:${kms.key.arn}`);
    });

    it('pins Decrypt to the key that wrapped the data key, with the same context', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      await provider.setActiveKey(kms.server.createKey().arn);
      await provider.unwrapDataKey(wrapped, context);
      expect(kms.server.inputsOf('Decrypt')).toEqual([
        {
          CiphertextBlob: wrapped.wrappedKey.toString('base64'),
          KeyId: kms.key.arn,
          EncryptionContext: {
            tenant: context.tenantId,
            session: context.sessionId,
            dek: context.dekId,
          },
        },
      ]);
    });

    it('refuses a wrapped key relabelled with another KMS key with IntegrityError (KMS: IncorrectKeyException)', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      const otherKey = kms.server.createKey();
      const failure = await rejectionOf(() =>
        provider.unwrapDataKey({ ...wrapped, kekId: `aws-kms:${otherKey.arn}` }, context),
      );
      expect(failure).toBeInstanceOf(IntegrityError);
      expect(failure.message).toMatch(
        /IncorrectKeyException.*altered or moved; nothing was deleted/,
      );
    });

    it('refuses a kekId that holds no key ARN with IntegrityError, without calling KMS', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      await expect(
        provider.unwrapDataKey({ ...wrapped, kekId: 'aws-kms:alias/sessions' }, context),
      ).rejects.toBeInstanceOf(IntegrityError);
      expect(kms.server.calls.Decrypt).toBeUndefined();
    });

    it('refuses a data key wrapped by another provider with a ConfigurationError naming its kekId', async () => {
      const provider = await providerWith();
      const failure = await rejectionOf(() =>
        provider.unwrapDataKey({ kekId: 'env:k1', wrappedKey: randomBytes(60) }, contextFor()),
      );
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect(failure.message).toMatch(/root key 'env:k1', which is not an AWS KMS key/);
    });

    it("zeroes the SDK's copy of each plaintext data key and hands out its own", async () => {
      const client = new KMSClient({
        region: kms.server.region,
        endpoint: kms.endpoint,
        credentials: kms.credentials,
      });
      const sdkPlaintexts: Uint8Array[] = [];
      client.middlewareStack.add(
        (next) => async (args) => {
          const result = await next(args);
          const plaintext = (result.output as { Plaintext?: Uint8Array }).Plaintext;
          if (plaintext) sdkPlaintexts.push(plaintext);
          return result;
        },
        { step: 'initialize', name: 'capturePlaintext' },
      );
      try {
        const provider = await providerWith({ ...noClientSettings, client });
        const context = contextFor();
        const generated = await provider.generateDataKey(context);
        const unwrapped = await provider.unwrapDataKey(generated.wrapped, context);
        expect(sdkPlaintexts).toHaveLength(2);
        expect(sdkPlaintexts.every((bytes) => bytes.every((byte) => byte === 0))).toBe(true);
        expect(unwrapped.equals(generated.plaintext)).toBe(true);
        expect(generated.plaintext.some((byte) => byte !== 0)).toBe(true);
      } finally {
        client.destroy();
      }
    });
  });

  describe('rotation', () => {
    it('moves a data key to another KMS key with ReEncrypt alone: the data key never reaches the client', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      const newKey = kms.server.createKey();
      await provider.setActiveKey(newKey.arn);
      const before = kms.server.requests.length;

      const rewrapped = await provider.rewrapDataKey(wrapped, context);

      const boundContext = {
        tenant: context.tenantId,
        session: context.sessionId,
        dek: context.dekId,
      };
      expect(kms.server.requests.slice(before)).toEqual([
        {
          operation: 'ReEncrypt',
          input: {
            CiphertextBlob: wrapped.wrappedKey.toString('base64'),
            SourceKeyId: kms.key.arn,
            SourceEncryptionContext: boundContext,
            DestinationKeyId: newKey.arn,
            DestinationEncryptionContext: boundContext,
          },
        },
      ]);
      expect(rewrapped.kekId).toBe(`aws-kms:${newKey.arn}`);
    });

    it('resolves an alias to its key ARN at init', async () => {
      await kms.operator.send(
        new CreateAliasCommand({ AliasName: 'alias/sessions', TargetKeyId: kms.key.keyId }),
      );
      const provider = await providerWith({ keyId: 'alias/sessions' });
      expect(provider.activeKekId()).toBe(`aws-kms:${kms.key.arn}`);
    });

    it('keeps the resolved ARN when the alias moves, until setActiveKey follows it', async () => {
      await kms.operator.send(
        new CreateAliasCommand({ AliasName: 'alias/sessions', TargetKeyId: kms.key.keyId }),
      );
      const provider = await providerWith({ keyId: 'alias/sessions' });
      const newKey = kms.server.createKey();
      await kms.operator.send(
        new UpdateAliasCommand({ AliasName: 'alias/sessions', TargetKeyId: newKey.keyId }),
      );
      const beforeFollowing = provider.activeKekId();
      await provider.setActiveKey('alias/sessions');
      expect([beforeFollowing, provider.activeKekId()]).toEqual([
        `aws-kms:${kms.key.arn}`,
        `aws-kms:${newKey.arn}`,
      ]);
    });

    it('refuses to make a disabled key active, keeping the previous one', async () => {
      const provider = await providerWith();
      const disabled = kms.server.createKey();
      await kms.operator.send(new DisableKeyCommand({ KeyId: disabled.keyId }));
      await expect(provider.setActiveKey(disabled.arn)).rejects.toThrow(/is Disabled, not Enabled/);
      expect(provider.activeKekId()).toBe(`aws-kms:${kms.key.arn}`);
    });
  });

  describe('key state', () => {
    it('refuses a disabled key with a non-retryable KeyUnusableError saying to enable it, and works again once enabled', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { plaintext, wrapped } = await provider.generateDataKey(context);
      await kms.operator.send(new DisableKeyCommand({ KeyId: kms.key.keyId }));
      const failure = await rejectionOf(() => provider.unwrapDataKey(wrapped, context));
      await kms.operator.send(new EnableKeyCommand({ KeyId: kms.key.keyId }));

      expect(failure).toBeInstanceOf(KeyUnusableError);
      expect(failure).toMatchObject({ retryable: false, code: 'KEY_UNUSABLE' });
      expect(failure.message).toContain(`KMS key ${kms.key.arn} is disabled (DisabledException`);
      expect(failure.message).toContain("enable it ('aws kms enable-key')");
      expect((await provider.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
    });

    it('refuses a key pending deletion with a message saying to cancel the deletion', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      await kms.operator.send(
        new ScheduleKeyDeletionCommand({ KeyId: kms.key.keyId, PendingWindowInDays: 7 }),
      );
      const failure = await rejectionOf(() => provider.unwrapDataKey(wrapped, context));
      expect(failure).toBeInstanceOf(KeyUnusableError);
      expect(failure.message).toMatch(/KMSInvalidStateException.*aws kms cancel-key-deletion/);
    });

    it('names the missing permission when KMS denies access', async () => {
      const provider = await providerWith();
      kms.server.deny('GenerateDataKey');
      const failure = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(failure).toBeInstanceOf(KeyUnusableError);
      expect(failure.message).toMatch(
        /^Not allowed to call kms:GenerateDataKey on KMS key arn:aws:kms:[^ ]+ \(AccessDeniedException, HTTP 400/,
      );
    });
  });

  describe('init', () => {
    it('refuses a disabled key with a ConfigurationError naming its state', async () => {
      kms.server.setKeyState(kms.key.keyId, 'Disabled');
      const failure = await rejectionOf(() => providerWith());
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect(failure.message).toBe(
        `KMS key ${kms.key.arn} is Disabled, not Enabled; enable it (or cancel its deletion) or set keyId to an enabled key`,
      );
    });

    it('refuses a key pending deletion with a ConfigurationError naming its state', async () => {
      kms.server.setKeyState(kms.key.keyId, 'PendingDeletion');
      await expect(providerWith()).rejects.toThrow(/is PendingDeletion, not Enabled/);
    });

    it('refuses an unknown key with a ConfigurationError saying to check keyId and region', async () => {
      const failure = await rejectionOf(() => providerWith({ keyId: 'alias/missing' }));
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect(failure.message).toMatch(
        /^KMS key alias\/missing was not found \(NotFoundException, HTTP 400.*check keyId and region$/,
      );
    });

    it('refuses a key that is not a symmetric encryption key', async () => {
      const signingKey = kms.server.createKey({ keySpec: 'RSA_2048', keyUsage: 'SIGN_VERIFY' });
      await expect(providerWith({ keyId: signingKey.arn })).rejects.toThrow(
        /RSA_2048 key for SIGN_VERIFY; data keys need a symmetric encryption key/,
      );
    });

    it('reports KMS being down as a retryable KeyProviderUnavailableError, not a configuration fault', async () => {
      await kms.server.down();
      const failure = await rejectionOf(() => providerWith());
      expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
      expect(failure.retryable).toBe(true);
    });

    it('takes region, endpoint and credentials from the standard AWS environment', async () => {
      vi.stubEnv('AWS_REGION', kms.server.region);
      vi.stubEnv('AWS_ENDPOINT_URL_KMS', kms.endpoint);
      vi.stubEnv('AWS_ACCESS_KEY_ID', kms.credentials.accessKeyId);
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', kms.credentials.secretAccessKey);
      try {
        const provider = await providerWith(noClientSettings);
        expect(provider.activeKekId()).toBe(`aws-kms:${kms.key.arn}`);
      } finally {
        vi.unstubAllEnvs();
      }
    });

    it('says to set region or AWS_REGION when no region is configured anywhere', async () => {
      vi.stubEnv('AWS_REGION', undefined);
      vi.stubEnv('AWS_DEFAULT_REGION', undefined);
      vi.stubEnv('AWS_PROFILE', undefined);
      vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/aws-config');
      try {
        const failure = await rejectionOf(() => providerWith({ region: undefined }));
        expect(failure).toBeInstanceOf(ConfigurationError);
        expect(failure.message).toBe(
          'aws-kms has no AWS region; set the region option or AWS_REGION',
        );
      } finally {
        vi.unstubAllEnvs();
      }
    });
  });

  describe('faults', () => {
    it('gets through two throttled answers: the SDK retries', async () => {
      const provider = await providerWith();
      kms.server.throttleNext(2);
      const generated = await provider.generateDataKey(contextFor());
      expect(generated.plaintext).toHaveLength(32);
      expect(kms.server.calls.GenerateDataKey).toBe(3);
    });

    it('gives up after maxAttempts throttled answers with a retryable KeyProviderUnavailableError', async () => {
      const provider = await providerWith({ maxAttempts: 2 });
      kms.server.throttleNext(10);
      const failure = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
      expect(failure.message).toMatch(
        /^AWS KMS is unreachable or busy \(ThrottlingException, HTTP 400/,
      );
      expect(kms.server.calls.GenerateDataKey).toBe(2);
    });

    it('reports persistent 500s as a retryable KeyProviderUnavailableError', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      kms.server.failNext(100, 500);
      const failure = await rejectionOf(() => provider.unwrapDataKey(wrapped, context));
      expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
      expect(failure.message).toMatch(/\(KMSInternalException, HTTP 500/);
    });

    it('times out an answer slower than requestTimeoutMs with KeyProviderUnavailableError', async () => {
      const provider = await providerWith({ requestTimeoutMs: 100, maxAttempts: 1 });
      kms.server.setLatency(5000);
      const started = performance.now();
      const failure = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
      expect(failure.message).toMatch(/\(TimeoutError/);
      expect(performance.now() - started).toBeLessThan(2000);
    });

    it('reports dropped connections as a retryable KeyProviderUnavailableError', async () => {
      const provider = await providerWith();
      kms.server.dropConnections(true);
      const failure = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
      expect(failure.retryable).toBe(true);
    });

    it('keeps credentials and request data out of errors and their causes', async () => {
      const provider = await providerWith();
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      kms.server.deny('Decrypt');
      const failure = await rejectionOf(() => provider.unwrapDataKey(wrapped, context));
      const text = JSON.stringify(failure, Object.getOwnPropertyNames(failure)) + String(failure);
      expect(failure.cause).toBeUndefined();
      expect(
        [
          kms.credentials.accessKeyId,
          kms.credentials.secretAccessKey,
          kms.credentials.sessionToken,
          wrapped.wrappedKey.toString('base64'),
        ].filter((secret) => text.includes(secret)),
      ).toEqual([]);
    });
  });

  describe('client ownership', () => {
    it('leaves an injected client open on close()', async () => {
      const client = new KMSClient({
        region: kms.server.region,
        endpoint: kms.endpoint,
        credentials: kms.credentials,
      });
      const destroy = vi.spyOn(client, 'destroy');
      try {
        const provider = await providerWith({ ...noClientSettings, client });
        await provider.close();
        expect(destroy).not.toHaveBeenCalled();
      } finally {
        client.destroy();
      }
    });

    it('destroys the client it built on close(), once however often close() is called', async () => {
      const destroy = vi.spyOn(KMSClient.prototype, 'destroy');
      try {
        const provider = await providerWith();
        await provider.close();
        await provider.close();
        expect(destroy).toHaveBeenCalledTimes(1);
      } finally {
        destroy.mockRestore();
      }
    });
  });

  describe('options', () => {
    const secret = `fake-secret-${randomUUID()}`;

    it.each<[string, Partial<AwsKmsKeyProviderOptions>, RegExp]>([
      ['an empty keyId', { keyId: '' }, /^aws-kms keyId is not a KMS key id, key ARN or alias/],
      [
        'a keyId with spaces',
        { keyId: 'my key' },
        /keyId 'my key' is not a KMS key id.*alias\/<name>/,
      ],
      ['a region that is not one', { region: 'Europe' }, /region 'Europe' is not an AWS region/],
      [
        'an endpoint that is not a URL',
        { endpoint: 'kms.local' },
        /endpoint is not an http\(s\) URL/,
      ],
      [
        'credentials without a secret',
        { credentials: { accessKeyId: 'AKIATEST', secretAccessKey: '' } },
        /credentials need a non-empty accessKeyId and secretAccessKey/,
      ],
      [
        'a zero requestTimeoutMs',
        { requestTimeoutMs: 0 },
        /requestTimeoutMs must be a whole number from 1/,
      ],
      [
        '11 maxAttempts',
        { maxAttempts: 11 },
        /maxAttempts must be a whole number from 1 to 10; got 11/,
      ],
    ])('refuses %s with a ConfigurationError saying what to set', (_, overrides, message) => {
      const build = () => new AwsKmsKeyProvider(kms.options(overrides));
      expect(build).toThrow(ConfigurationError);
      expect(build).toThrow(message);
    });

    it('refuses client settings next to an injected client, naming them', () => {
      const client = new KMSClient({ region: kms.server.region });
      try {
        expect(() => new AwsKmsKeyProvider(kms.options({ client }))).toThrow(
          'aws-kms options region, endpoint, credentials configure the client the provider builds, but a client was passed; set them on that KMSClient instead',
        );
      } finally {
        client.destroy();
      }
    });

    it('never echoes a secret access key or an endpoint with user info', () => {
      const messages = [
        { credentials: { accessKeyId: '', secretAccessKey: secret } },
        { endpoint: `http://user:${secret}@` },
      ].map((overrides) => String(thrownBy(() => new AwsKmsKeyProvider(kms.options(overrides)))));
      expect(messages.filter((message) => message.includes(secret))).toEqual([]);
    });
  });
});

/** Clears the client settings of the harness options, for tests that bring their own client. */
const noClientSettings: Partial<AwsKmsKeyProviderOptions> = {
  region: undefined,
  endpoint: undefined,
  credentials: undefined,
};
