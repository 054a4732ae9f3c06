import { randomUUID } from 'node:crypto';
import type { KMSClient } from '@aws-sdk/client-kms';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  type DataKeyContext,
} from '../../src/index.js';
import {
  AwsKmsKeyProvider,
  type AwsKmsKeyProviderOptions,
} from '../../src/keys/providers/aws-kms-key-provider.js';
import { loadKmsSdk } from '../../src/keys/providers/aws-kms-key-provider.js';
import { rejectionOf } from '../support/thrown-by.js';

/*
 * AwsKmsKeyProvider against a scripted KMS client: answers a real KMS never gives (no ARN, a
 * short data key, an odd error shape), which the wire-protocol test server cannot produce. Each
 * test pins one check whose removal StrykerJS showed no other test noticing.
 */

const ARN = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const OTHER_ARN = 'arn:aws:kms:us-east-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab';
const ENABLED = {
  KeyMetadata: {
    Arn: ARN,
    KeyState: 'Enabled',
    KeySpec: 'SYMMETRIC_DEFAULT',
    KeyUsage: 'ENCRYPT_DECRYPT',
  },
};

type Answer = (input: Record<string, unknown>) => unknown;

/** A KMSClient stand-in: `send` answers each command by its operation name from `answers`. */
function scriptedClient(answers: Record<string, Answer>): { client: KMSClient; calls: string[] } {
  const calls: string[] = [];
  const client = {
    send(command: { constructor: { name: string }; input: Record<string, unknown> }) {
      const operation = command.constructor.name.replace(/Command$/, '');
      calls.push(operation);
      const answer = answers[operation];
      if (!answer) return Promise.reject(new Error(`unscripted ${operation}`));
      try {
        return Promise.resolve(answer(command.input));
      } catch (error) {
        return Promise.reject(error);
      }
    },
    destroy() {},
  };
  return { client: client as unknown as KMSClient, calls };
}

/** What the SDK throws: an Error with a name, maybe a socket code and response metadata. */
function sdkError(fields: {
  name?: unknown;
  code?: unknown;
  message?: string;
  status?: number;
  requestId?: unknown;
}): Error {
  const error = new Error(fields.message ?? 'failed');
  Object.assign(error, {
    name: fields.name,
    ...(fields.code !== undefined && { code: fields.code }),
    $metadata: { httpStatusCode: fields.status, requestId: fields.requestId },
  });
  return error;
}

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

async function providerOn(answers: Record<string, Answer>) {
  const scripted = scriptedClient({ DescribeKey: () => ENABLED, ...answers });
  const provider = new AwsKmsKeyProvider({ keyId: ARN, client: scripted.client });
  await provider.init();
  return { provider, calls: scripted.calls };
}

/** The Buffers `Buffer.from` made from `source`: the provider's own copies of a data key. */
function copiesOf(
  spy: { mock: { calls: unknown[][]; results: { value: unknown }[] } },
  source: Uint8Array,
) {
  return spy.mock.calls.flatMap((args, index) =>
    args[0] === source ? [spy.mock.results[index].value as Buffer] : [],
  );
}

const plaintextOf = () => Uint8Array.from({ length: 32 }, (_, index) => index + 1);
const wrappedUnder = (arn: string) => ({ kekId: `aws-kms:${arn}`, wrappedKey: Buffer.from([1]) });
/** Builds a provider on `keyId` over an idle scripted client. */
const withKeyId = (keyId: string) => () =>
  new AwsKmsKeyProvider({ keyId, client: scriptedClient({}).client });
const zeroed = (bytes: Uint8Array) => bytes.every((byte) => byte === 0);

/** A require() that finds no package, as on a host that did not install the SDK. */
function missingPackage(): never {
  throw Object.assign(new Error("Cannot find module '@aws-sdk/client-kms'"), {
    code: 'MODULE_NOT_FOUND',
  });
}

describe('AwsKmsKeyProvider against a scripted KMS client', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("is named 'aws-kms'", async () => {
    const { provider } = await providerOn({});
    expect(provider.name).toBe('aws-kms');
  });

  it.each([
    [
      'an ARN in the aws-us-gov partition',
      'arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    ],
    [
      'an alias ARN in the aws-cn partition',
      'arn:aws-cn:kms:cn-north-1:111122223333:alias/sessions',
    ],
  ])('takes %s as the key id', (_, keyId) => {
    const { client } = scriptedClient({});
    expect(new AwsKmsKeyProvider({ keyId, client }).name).toBe('aws-kms');
  });

  it('refuses credentials whose access key id is not a string', () => {
    const credentials = { accessKeyId: ['AKIA'], secretAccessKey: 'secret' };
    expect(
      () =>
        new AwsKmsKeyProvider({
          keyId: ARN,
          region: 'us-east-1',
          credentials: credentials as unknown as AwsKmsKeyProviderOptions['credentials'],
        }),
    ).toThrow(ConfigurationError);
  });

  it('names the package to install when @aws-sdk/client-kms is missing', () => {
    expect(() => loadKmsSdk(missingPackage)).toThrow(ConfigurationError);
    expect(() => loadKmsSdk(missingPackage)).toThrow(/npm install @aws-sdk\/client-kms/);
  });

  it('refuses a malformed key id in setActiveKey without asking KMS', async () => {
    const { provider, calls } = await providerOn({});
    calls.length = 0;
    const error = await rejectionOf(() => provider.setActiveKey('not a key'));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(calls).toEqual([]);
    expect(provider.activeKekId()).toBe(`aws-kms:${ARN}`);
  });

  it.each<[string, unknown]>([
    ['no metadata', {}],
    ['metadata without an ARN', { KeyMetadata: { ...ENABLED.KeyMetadata, Arn: undefined } }],
    [
      'an alias in place of the key ARN',
      { KeyMetadata: { ...ENABLED.KeyMetadata, Arn: 'alias/x' } },
    ],
  ])('refuses at init a DescribeKey answer with %s', async (_, answer) => {
    const { client } = scriptedClient({ DescribeKey: () => answer });
    const provider = new AwsKmsKeyProvider({ keyId: ARN, client });
    const error = await rejectionOf(() => provider.init());
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/without a key ARN/);
  });

  it.each([
    ['an asymmetric encryption key', 'RSA_2048', 'ENCRYPT_DECRYPT'],
    ['a symmetric MAC key', 'SYMMETRIC_DEFAULT', 'GENERATE_VERIFY_MAC'],
  ])('refuses at init %s', async (_, KeySpec, KeyUsage) => {
    const { client } = scriptedClient({
      DescribeKey: () => ({ KeyMetadata: { ...ENABLED.KeyMetadata, KeySpec, KeyUsage } }),
    });
    const provider = new AwsKmsKeyProvider({ keyId: ARN, client });
    const error = await rejectionOf(() => provider.init());
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/needs? a symmetric encryption key/);
  });

  describe('answers without what was asked for', () => {
    it.each<[string, Record<string, unknown>]>([
      ['no wrapped key', { KeyId: ARN }],
      ['no key ARN', { CiphertextBlob: new Uint8Array([1, 2, 3]) }],
      ['an alias for the key ARN', { CiphertextBlob: new Uint8Array([1, 2, 3]), KeyId: 'alias/x' }],
    ])(
      'refuses a GenerateDataKey answer with %s as IntegrityError, zeroing the data key',
      async (_, output) => {
        const plaintext = plaintextOf();
        const { provider } = await providerOn({
          GenerateDataKey: () => ({ ...output, Plaintext: plaintext }),
        });
        const from = vi.spyOn(Buffer, 'from');
        const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
        expect(error).toBeInstanceOf(IntegrityError);
        expect(error.message).toMatch(/answered GenerateDataKey .* without a wrapped key/);
        const copies = copiesOf(from, plaintext);
        expect(copies).toHaveLength(1);
        expect(zeroed(copies[0])).toBe(true);
        expect(zeroed(plaintext)).toBe(true);
      },
    );

    it.each<[string, Record<string, unknown>]>([
      ['no wrapped key', { KeyId: ARN }],
      ['no key ARN', { CiphertextBlob: new Uint8Array([1, 2, 3]) }],
      ['an alias for the key ARN', { CiphertextBlob: new Uint8Array([1, 2, 3]), KeyId: 'alias/x' }],
    ])('refuses a ReEncrypt answer with %s as IntegrityError', async (_, output) => {
      const { provider } = await providerOn({ ReEncrypt: () => output });
      const error = await rejectionOf(() =>
        provider.rewrapDataKey(
          { kekId: `aws-kms:${ARN}`, wrappedKey: Buffer.from([9, 9]) },
          contextFor(),
        ),
      );
      expect(error).toBeInstanceOf(IntegrityError);
      expect(error.message).toMatch(/answered ReEncrypt .* the stored key is unchanged/);
    });

    it.each([
      ['GenerateDataKey', 16],
      ['GenerateDataKey', 0],
      ['Decrypt', 16],
      ['Decrypt', 0],
    ] as const)(
      'refuses a %s answer with a %i-byte data key as IntegrityError, zeroing both copies',
      async (operation, length) => {
        const plaintext = length === 0 ? undefined : new Uint8Array(length).fill(7);
        const { provider } = await providerOn({
          GenerateDataKey: () => ({
            Plaintext: plaintext,
            CiphertextBlob: new Uint8Array(3),
            KeyId: ARN,
          }),
          Decrypt: () => ({ Plaintext: plaintext, KeyId: ARN }),
        });
        const from = vi.spyOn(Buffer, 'from');
        const error = await rejectionOf(() =>
          operation === 'Decrypt'
            ? provider.unwrapDataKey(
                { kekId: `aws-kms:${ARN}`, wrappedKey: Buffer.from([1]) },
                contextFor(),
              )
            : provider.generateDataKey(contextFor()),
        );
        expect(error).toBeInstanceOf(IntegrityError);
        expect(error.message).toContain(`answered ${operation} with a ${length}-byte data key`);
        const sdkCopy = plaintext ?? new Uint8Array(0);
        expect(zeroed(sdkCopy)).toBe(true);
        const copies = copiesOf(from, sdkCopy);
        expect(copies).toHaveLength(length === 0 ? 0 : 1);
        expect(copies.every(zeroed)).toBe(true);
      },
    );
  });

  describe('failures', () => {
    const secret = `secret-${randomUUID()}`;

    it.each<[string, Error | object, Function, RegExp]>([
      [
        'InvalidKeyUsageException',
        sdkError({ name: 'InvalidKeyUsageException', status: 400 }),
        KeyUnusableError,
        /cannot wrap data keys \(InvalidKeyUsageException, HTTP 400\)/,
      ],
      [
        'an expired token',
        sdkError({ name: 'ExpiredTokenException', status: 400 }),
        KeyUnusableError,
        /credentials for kms:GenerateDataKey \(ExpiredTokenException, HTTP 400\)/,
      ],
      [
        'a socket code that is not a network failure',
        sdkError({ name: 'Error', code: 'EPROTO' }),
        KeyUnusableError,
        /^AWS KMS refused GenerateDataKey on KMS key .* \(EPROTO\);/,
      ],
      [
        'a nameless connection reset',
        { code: 'ECONNRESET' },
        KeyProviderUnavailableError,
        /\(ECONNRESET\) for GenerateDataKey/,
      ],
      [
        'a named time-out with a socket code',
        sdkError({ name: 'TimeoutError', code: 'ETIMEDOUT' }),
        KeyProviderUnavailableError,
        /\(TimeoutError ETIMEDOUT\)/,
      ],
      [
        'a code that is not a string',
        sdkError({ name: 'OddError', code: 42 }),
        KeyUnusableError,
        /\(OddError\);/,
      ],
      [
        'HTTP 429',
        sdkError({ name: 'SlowDown', status: 429 }),
        KeyProviderUnavailableError,
        /\(SlowDown, HTTP 429\)/,
      ],
      [
        'HTTP 500',
        sdkError({ name: 'Oops', status: 500 }),
        KeyProviderUnavailableError,
        /\(Oops, HTTP 500\)/,
      ],
      [
        'HTTP 503',
        sdkError({ name: 'Oops', status: 503 }),
        KeyProviderUnavailableError,
        /\(Oops, HTTP 503\)/,
      ],
      [
        'HTTP 499',
        sdkError({ name: 'Oops', status: 499 }),
        KeyUnusableError,
        /\(Oops, HTTP 499\);/,
      ],
      [
        'an unknown error without a status',
        sdkError({ name: 'ValidationException', message: 'boom' }),
        KeyUnusableError,
        /\(ValidationException\);/,
      ],
      [
        'a missing region',
        sdkError({ name: 'Error', message: 'Region is missing' }),
        ConfigurationError,
        /^aws-kms has no AWS region; set the region option or AWS_REGION$/,
      ],
      [
        'a safe request id',
        sdkError({ name: 'Oops', status: 400, requestId: 'req-123' }),
        KeyUnusableError,
        /\(Oops, HTTP 400, request id req-123\);/,
      ],
      [
        'a request id that is not a string',
        sdkError({ name: 'Oops', status: 400, requestId: 42 }),
        KeyUnusableError,
        /\(Oops, HTTP 400\);/,
      ],
      [
        'a request id carrying request data',
        sdkError({ name: 'Oops', status: 400, requestId: `id\n${secret}` }),
        KeyUnusableError,
        /\(Oops, HTTP 400\);/,
      ],
      [
        'an error name carrying request data',
        sdkError({ name: `Bad name\n${secret}`, status: 400 }),
        KeyUnusableError,
        /\(unrecognised error, HTTP 400\);/,
      ],
    ])('reports %s on GenerateDataKey', async (_, thrown, errorClass, message) => {
      const { provider } = await providerOn({
        GenerateDataKey: () => {
          throw thrown;
        },
      });
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(errorClass);
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain(secret);
    });

    it('names the operation that failed: Decrypt on unwrap, ReEncrypt on rewrap', async () => {
      const { provider } = await providerOn({
        Decrypt: () => {
          throw sdkError({ name: 'AccessDeniedException', status: 400 });
        },
        ReEncrypt: () => {
          throw sdkError({ name: 'AccessDeniedException', status: 400 });
        },
      });
      const unwrap = await rejectionOf(() =>
        provider.unwrapDataKey(wrappedUnder(ARN), contextFor()),
      );
      expect(unwrap.message).toContain('allow kms:Decrypt');
      const rewrap = await rejectionOf(() =>
        provider.rewrapDataKey(wrappedUnder(ARN), contextFor()),
      );
      expect(rewrap.message).toContain('allow kms:ReEncrypt');
    });

    it('names both keys when a ReEncrypt to another key fails, and one key when it is the same', async () => {
      const { provider } = await providerOn({
        ReEncrypt: () => {
          throw sdkError({ name: 'NotFoundException', status: 400 });
        },
      });
      const moved = await rejectionOf(() =>
        provider.rewrapDataKey(wrappedUnder(OTHER_ARN), contextFor()),
      );
      expect(moved.message).toContain(`KMS key ${OTHER_ARN} or ${ARN} was not found`);
      const same = await rejectionOf(() => provider.rewrapDataKey(wrappedUnder(ARN), contextFor()));
      expect(same.message).toContain(`KMS key ${ARN} was not found`);
      expect(same.message).not.toContain(`${ARN} or `);
    });
  });

  describe('error names', () => {
    it.each([
      'ThrottlingException',
      'LimitExceededException',
      'KMSInternalException',
      'DependencyTimeoutException',
      'KeyUnavailableException',
      'TimeoutError',
      'RequestTimeout',
      'RequestTimeoutException',
    ])('treats %s as retryable', async (name) => {
      const { provider } = await providerOn({
        GenerateDataKey: () => {
          throw sdkError({ name, status: 400 });
        },
      });
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    });

    it.each([
      'CredentialsProviderError',
      'UnrecognizedClientException',
      'InvalidClientTokenId',
      'InvalidSignatureException',
      'IncompleteSignatureException',
      'MissingAuthenticationTokenException',
      'SignatureDoesNotMatch',
      'ExpiredTokenException',
    ])('reports %s as a credentials problem', async (name) => {
      const { provider } = await providerOn({
        GenerateDataKey: () => {
          throw sdkError({ name, status: 400 });
        },
      });
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(KeyUnusableError);
      expect(error.message).toMatch(/^AWS rejected or could not load the credentials/);
    });

    it.each<[string, Function, RegExp]>([
      ['InvalidCiphertextException', IntegrityError, /does not match its KMS key/],
      ['IncorrectKeyException', IntegrityError, /does not match its KMS key/],
      ['DisabledException', KeyUnusableError, /is disabled/],
      ['KMSInvalidStateException', KeyUnusableError, /cannot be used in its current state/],
      ['NotFoundException', KeyUnusableError, /was not found/],
      ['AccessDeniedException', KeyUnusableError, /^Not allowed to call kms:Decrypt/],
    ])('reports %s on Decrypt', async (name, errorClass, message) => {
      const { provider } = await providerOn({
        Decrypt: () => {
          throw sdkError({ name, status: 400 });
        },
      });
      const error = await rejectionOf(() =>
        provider.unwrapDataKey(wrappedUnder(ARN), contextFor()),
      );
      expect(error).toBeInstanceOf(errorClass);
      expect(error.message).toMatch(message);
    });

    it('keeps an 80-character error name and drops an 81-character one', async () => {
      const names = ['N'.repeat(80), 'N'.repeat(81)];
      const { provider } = await providerOn({
        GenerateDataKey: () => {
          throw sdkError({ name: names.shift(), status: 400 });
        },
      });
      const kept = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(kept.message).toContain(`(${'N'.repeat(80)}, HTTP 400)`);
      const dropped = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(dropped.message).toContain('(unrecognised error, HTTP 400)');
    });
  });

  describe('key ids and ARNs', () => {
    const arnWith = (arn: string) => async () => {
      const { client } = scriptedClient({
        DescribeKey: () => ({ KeyMetadata: { ...ENABLED.KeyMetadata, Arn: arn } }),
      });
      const provider = new AwsKmsKeyProvider({ keyId: ARN, client });
      await provider.init();
      return provider.activeKekId();
    };

    it.each([
      ['a prefix', `x${ARN}`],
      ['a suffix', `${ARN}/x`],
      ['an 11-digit account', ARN.replace('111122223333', '11112222333')],
      ['no region', ARN.replace('us-east-1', '')],
      ['another service', ARN.replace(':kms:', ':s3:')],
    ])('refuses a DescribeKey ARN with %s', async (_, arn) => {
      expect(await rejectionOf(arnWith(arn))).toBeInstanceOf(ConfigurationError);
    });

    it('takes the ARN of another partition', async () => {
      const arn = ARN.replace('arn:aws:', 'arn:aws-cn:');
      expect(await arnWith(arn)()).toBe(`aws-kms:${arn}`);
    });

    it.each([
      '1234abcd-12ab-34cd-56ef-1234567890ab',
      `mrk-${'a'.repeat(32)}`,
      'alias/sessions_root-key/v2',
      `alias/${'a'.repeat(250)}`,
      ARN,
      'arn:aws:kms:eu-west-1:111122223333:alias/sessions',
    ])('takes the key id %s', (keyId) => {
      expect(withKeyId(keyId)).not.toThrow();
    });

    it.each([
      '1234ABCD-12AB-34CD-56EF-1234567890AB',
      `mrk-${'a'.repeat(31)}`,
      'alias/',
      `alias/${'a'.repeat(251)}`,
      ' alias/x',
      'alias/x ',
      'alias/x y',
      `${ARN} `,
    ])('refuses the key id %j', (keyId) => {
      expect(withKeyId(keyId)).toThrow(ConfigurationError);
    });

    it.each(['us-gov-west-1', 'eu-west-1', 'ap-southeast-12'])('takes the region %s', (region) => {
      expect(() => new AwsKmsKeyProvider({ keyId: ARN, region }).close()).not.toThrow();
    });

    it.each(['EU-west-1', 'eu-west-1x', 'euwest-1', 'eu-west-123', 'x eu-west-1'])(
      'refuses the region %j',
      (region) => {
        expect(() => new AwsKmsKeyProvider({ keyId: ARN, region })).toThrow(ConfigurationError);
      },
    );
  });

  describe('options', () => {
    const base: AwsKmsKeyProviderOptions = { keyId: ARN, region: 'us-east-1' };
    const built: AwsKmsKeyProvider[] = [];
    afterEach(async () => {
      for (const provider of built.splice(0)) await provider.close();
    });
    const build = (overrides: Partial<AwsKmsKeyProviderOptions>) => () => {
      built.push(new AwsKmsKeyProvider({ ...base, ...overrides }));
    };

    it.each<[string, Partial<AwsKmsKeyProviderOptions>]>([
      ['a keyId that is not a string', { keyId: 42 as unknown as string }],
      ['an ftp endpoint', { endpoint: 'ftp://kms.example.com' }],
      [
        'a secret access key that is not a string',
        { credentials: { accessKeyId: 'AKIATEST', secretAccessKey: 42 as unknown as string } },
      ],
      ['a requestTimeoutMs over 300000', { requestTimeoutMs: 300_001 }],
      ['a client without send()', { region: undefined, client: {} as KMSClient }],
    ])('refuses %s', (_, overrides) => {
      expect(build(overrides)).toThrow(ConfigurationError);
    });

    it.each<[string, Partial<AwsKmsKeyProviderOptions>]>([
      ['an https endpoint', { endpoint: 'https://kms.us-east-1.amazonaws.com' }],
      ['an http endpoint', { endpoint: 'http://127.0.0.1:4566' }],
      [
        'a credentials provider',
        { credentials: async () => ({ accessKeyId: 'a', secretAccessKey: 'b' }) },
      ],
      ['no credentials', { credentials: undefined }],
      [
        'the largest requestTimeoutMs and maxAttempts',
        { requestTimeoutMs: 300_000, maxAttempts: 10 },
      ],
    ])('accepts %s', (_, overrides) => {
      expect(build(overrides)).not.toThrow();
    });
  });
});
