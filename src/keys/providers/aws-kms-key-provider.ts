import { createRequire } from 'node:module';
import type { KMSClient, KMSClientConfig } from '@aws-sdk/client-kms';
import { ConfigurationError, IntegrityError } from '../../errors/index.js';
import type {
  DataKeyContext,
  GeneratedDataKey,
  KeyProvider,
  WrappedDataKey,
} from '../key-provider.interface.js';
import {
  classifyKmsError,
  describeFailure,
  operationFailure,
  type KmsOperation,
} from './aws-kms-errors.js';
import { providerUsedBeforeInit } from './used-before-init.js';

/**
 * Options of {@link AwsKmsKeyProvider}.
 *
 * @publicApi
 */
export interface AwsKmsKeyProviderOptions {
  /**
   * The KMS key new data keys are wrapped under: a key id, a key ARN, an alias (`alias/...`) or
   * an alias ARN. It must be a symmetric encryption key (`SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT`).
   * An alias is resolved once, by `init()` (or `setActiveKey`): data keys name the key's ARN.
   */
  keyId: string;
  /**
   * AWS region of the key. Unset: the standard AWS environment (`AWS_REGION`, the profile).
   * Not allowed together with `client`.
   */
  region?: string;
  /**
   * KMS endpoint URL, e.g. a VPC endpoint or LocalStack. Unset: the SDK's (which also honours
   * `AWS_ENDPOINT_URL_KMS`). Not allowed together with `client`.
   */
  endpoint?: string;
  /**
   * Static credentials or a credentials provider. Unset: the SDK's default chain (environment,
   * profile, SSO, web identity, container or instance role). Not allowed together with `client`.
   */
  credentials?: KMSClientConfig['credentials'];
  /**
   * A KMS client to use instead of building one; configure region, endpoint, credentials,
   * timeouts and retries on it. `close()` leaves it open: its owner destroys it.
   */
  client?: KMSClient;
  /**
   * Time limit of one HTTP attempt (connecting included). Not allowed together with `client`.
   * @default 5000
   */
  requestTimeoutMs?: number;
  /**
   * Attempts per KMS call, first one included (the SDK retries throttling, 5xx and network
   * errors with backoff). Kept small: the key ring retries on top. Not allowed with `client`.
   * @default 3
   */
  maxAttempts?: number;
}

/** Defaults of {@link AwsKmsKeyProviderOptions}. */
export const AWS_KMS_KEY_PROVIDER_DEFAULTS = {
  requestTimeoutMs: 5000,
  maxAttempts: 3,
} as const;

type KmsSdk = typeof import('@aws-sdk/client-kms');

const KEK_ID_PREFIX = 'aws-kms:';
const DATA_KEY_BYTES = 32;
const KEY_ARN_PATTERN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;
const KEY_ID_PATTERN =
  /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias\/[A-Za-z0-9/_-]{1,250}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key\/[A-Za-z0-9-]+|alias\/[A-Za-z0-9/_-]{1,250}))$/;
const REGION_PATTERN = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
/**
 * Root key in AWS KMS: data keys come from KMS `GenerateDataKey` (AES_256) and are unwrapped with
 * `Decrypt` with `KeyId` pinned; rotation moves them with `ReEncrypt`, inside KMS. Every call
 * binds tenant, session and data-key id as `EncryptionContext`, so a wrapped key moved to
 * another session does not unwrap (and shows in CloudTrail under its session).
 *
 * `@aws-sdk/client-kms` is an optional peer dependency, loaded when the provider is built.
 * Errors carry the SDK error name, HTTP status and request id only: SDK errors can hold request
 * data (a signature mismatch echoes the canonical request, security token included).
 *
 * @publicApi
 */
export class AwsKmsKeyProvider implements KeyProvider {
  readonly name = 'aws-kms';
  private readonly sdk: KmsSdk;
  private readonly client: KMSClient;
  private readonly ownsClient: boolean;
  private readonly configuredKeyId: string;
  private activeArn: string | undefined;
  private closed = false;

  constructor(options: AwsKmsKeyProviderOptions) {
    validateOptions(options);
    this.sdk = loadKmsSdk();
    this.configuredKeyId = options.keyId;
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? this.createClient(options);
  }

  /** Looks the configured key up (`DescribeKey`) and makes its ARN the active root key. */
  async init(): Promise<void> {
    await this.setActiveKey(this.configuredKeyId);
  }

  /**
   * Switches the key new data keys are wrapped under (KEK rotation): looks `keyId` up with
   * `DescribeKey` and, once it is an enabled symmetric encryption key, makes its ARN active.
   * Data keys wrapped under earlier keys still unwrap (their ARN is in their `kekId`) for as
   * long as those keys stay enabled; `rewrapDataKey` moves them to the new one.
   */
  async setActiveKey(keyId: string): Promise<void> {
    assertKeyId(keyId);
    const { DescribeKeyCommand } = this.sdk;
    let metadata;
    try {
      ({ KeyMetadata: metadata } = await this.client.send(
        new DescribeKeyCommand({ KeyId: keyId }),
      ));
    } catch (error) {
      throw describeFailure(classifyKmsError(error), keyId);
    }
    if (!metadata?.Arn || !KEY_ARN_PATTERN.test(metadata.Arn)) {
      throw new ConfigurationError(
        `AWS KMS answered DescribeKey for '${keyId}' without a key ARN; check the endpoint option`,
      );
    }
    if (metadata.KeyState !== 'Enabled') {
      throw new ConfigurationError(
        `KMS key ${metadata.Arn} is ${metadata.KeyState ?? 'in an unknown state'}, not Enabled; enable it (or cancel its deletion) or set keyId to an enabled key`,
      );
    }
    if (metadata.KeySpec !== 'SYMMETRIC_DEFAULT' || metadata.KeyUsage !== 'ENCRYPT_DECRYPT') {
      throw new ConfigurationError(
        `KMS key ${metadata.Arn} is a ${metadata.KeySpec ?? '?'} key for ${metadata.KeyUsage ?? '?'}; data keys need a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT)`,
      );
    }
    this.activeArn = metadata.Arn;
  }

  /** `aws-kms:<key ARN>` of the active key. */
  activeKekId(): string {
    return KEK_ID_PREFIX + this.requireActiveArn('activeKekId');
  }

  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    const arn = this.requireActiveArn('generateDataKey');
    const { GenerateDataKeyCommand } = this.sdk;
    const output = await this.call('GenerateDataKey', arn, context, () =>
      this.client.send(
        new GenerateDataKeyCommand({
          KeyId: arn,
          KeySpec: 'AES_256',
          EncryptionContext: encryptionContext(context),
        }),
      ),
    );
    const plaintext = takeDataKey(output.Plaintext, 'GenerateDataKey');
    if (!output.CiphertextBlob || !output.KeyId || !KEY_ARN_PATTERN.test(output.KeyId)) {
      plaintext.fill(0);
      throw new IntegrityError(
        `AWS KMS answered GenerateDataKey for data key ${context.dekId} without a wrapped key or key ARN; nothing was stored`,
      );
    }
    return {
      plaintext,
      wrapped: {
        kekId: KEK_ID_PREFIX + output.KeyId,
        wrappedKey: Buffer.from(output.CiphertextBlob),
      },
    };
  }

  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer> {
    // Decrypt names its key itself, but refusing here too keeps one rule for every provider:
    // nothing works before init().
    this.requireActiveArn('unwrapDataKey');
    const arn = wrappingKeyArn(wrapped, context);
    const { DecryptCommand } = this.sdk;
    const output = await this.call('Decrypt', arn, context, () =>
      this.client.send(
        new DecryptCommand({
          CiphertextBlob: wrapped.wrappedKey,
          // Pinned: KMS refuses a blob of any other key instead of using whichever it names.
          KeyId: arn,
          EncryptionContext: encryptionContext(context),
        }),
      ),
    );
    return takeDataKey(output.Plaintext, 'Decrypt');
  }

  /** Moves the data key to the active KMS key with `ReEncrypt`: it never leaves KMS. */
  async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<WrappedDataKey> {
    const destinationArn = this.requireActiveArn('rewrapDataKey');
    const sourceArn = wrappingKeyArn(wrapped, context);
    const { ReEncryptCommand } = this.sdk;
    const boundContext = encryptionContext(context);
    const output = await this.call(
      'ReEncrypt',
      sourceArn === destinationArn ? sourceArn : `${sourceArn} or ${destinationArn}`,
      context,
      () =>
        this.client.send(
          new ReEncryptCommand({
            CiphertextBlob: wrapped.wrappedKey,
            SourceKeyId: sourceArn,
            SourceEncryptionContext: boundContext,
            DestinationKeyId: destinationArn,
            DestinationEncryptionContext: boundContext,
          }),
        ),
    );
    if (!output.CiphertextBlob || !output.KeyId || !KEY_ARN_PATTERN.test(output.KeyId)) {
      throw new IntegrityError(
        `AWS KMS answered ReEncrypt for data key ${context.dekId} without a wrapped key or key ARN; the stored key is unchanged`,
      );
    }
    return {
      kekId: KEK_ID_PREFIX + output.KeyId,
      wrappedKey: Buffer.from(output.CiphertextBlob),
    };
  }

  /** Destroys the client this provider built (an injected one stays open). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsClient) this.client.destroy();
  }

  private createClient(options: AwsKmsKeyProviderOptions): KMSClient {
    const requestTimeoutMs =
      options.requestTimeoutMs ?? AWS_KMS_KEY_PROVIDER_DEFAULTS.requestTimeoutMs;
    return new this.sdk.KMSClient({
      ...(options.region !== undefined && { region: options.region }),
      ...(options.endpoint !== undefined && { endpoint: options.endpoint }),
      ...(options.credentials !== undefined && { credentials: options.credentials }),
      maxAttempts: options.maxAttempts ?? AWS_KMS_KEY_PROVIDER_DEFAULTS.maxAttempts,
      requestHandler: {
        connectionTimeout: requestTimeoutMs,
        requestTimeout: requestTimeoutMs,
        // Without it the SDK only logs a warning when the time limit passes and keeps waiting.
        throwOnRequestTimeout: true,
      },
    });
  }

  /** The active key's ARN; `method` names the caller in the error thrown before `init()`. */
  private requireActiveArn(method: string): string {
    if (this.activeArn === undefined) throw providerUsedBeforeInit(this.name, method);
    return this.activeArn;
  }

  /** Runs one KMS call, turning its failure into one of our typed errors. */
  private async call<T>(
    operation: KmsOperation,
    keyLabel: string,
    context: DataKeyContext,
    send: () => Promise<T>,
  ): Promise<T> {
    try {
      return await send();
    } catch (error) {
      throw operationFailure(classifyKmsError(error), operation, keyLabel, context);
    }
  }
}

/**
 * `@aws-sdk/client-kms` is an optional peer dependency: loaded only when a provider is built.
 * Exported for its test only (not from any barrel); `load` stands in for a missing package.
 */
export function loadKmsSdk(
  load: (name: string) => unknown = createRequire(import.meta.url),
): KmsSdk {
  try {
    return load('@aws-sdk/client-kms') as KmsSdk;
  } catch {
    throw new ConfigurationError(
      "The aws-kms key provider needs the '@aws-sdk/client-kms' package (3.x); install it: npm install @aws-sdk/client-kms",
    );
  }
}

function validateOptions(options: AwsKmsKeyProviderOptions): void {
  assertKeyId(options.keyId);
  if (options.client !== undefined) {
    const clientSettings = (
      ['region', 'endpoint', 'credentials', 'requestTimeoutMs', 'maxAttempts'] as const
    ).filter((name) => options[name] !== undefined);
    if (clientSettings.length > 0) {
      throw new ConfigurationError(
        `aws-kms options ${clientSettings.join(', ')} configure the client the provider builds, but a client was passed; set them on that KMSClient instead`,
      );
    }
    if (typeof (options.client as { send?: unknown }).send !== 'function') {
      throw new ConfigurationError('aws-kms client must be a KMSClient from @aws-sdk/client-kms');
    }
  }
  if (options.region !== undefined && !REGION_PATTERN.test(options.region)) {
    throw new ConfigurationError(
      `aws-kms region '${options.region}' is not an AWS region; set it like 'eu-west-1', or leave it unset to use AWS_REGION`,
    );
  }
  if (options.endpoint !== undefined && !isHttpUrl(options.endpoint)) {
    // The URL may carry user info: never echo it.
    throw new ConfigurationError(
      'aws-kms endpoint is not an http(s) URL; set it like https://kms.eu-west-1.amazonaws.com, or leave it unset',
    );
  }
  assertCredentials(options.credentials);
  assertInteger(options.requestTimeoutMs, 'requestTimeoutMs', 1, 300_000);
  assertInteger(options.maxAttempts, 'maxAttempts', 1, 10);
}

function assertKeyId(keyId: unknown): asserts keyId is string {
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId)) {
    throw new ConfigurationError(
      `aws-kms keyId ${typeof keyId === 'string' && keyId.length > 0 ? `'${keyId.slice(0, 300)}' ` : ''}is not a KMS key id, key ARN or alias; set it to e.g. 1234abcd-12ab-34cd-56ef-1234567890ab, arn:aws:kms:<region>:<account>:key/<id> or alias/<name>`,
    );
  }
}

function assertCredentials(credentials: AwsKmsKeyProviderOptions['credentials']): void {
  if (credentials === undefined || typeof credentials === 'function') return;
  const { accessKeyId, secretAccessKey } = (credentials ?? {}) as unknown as {
    accessKeyId?: unknown;
    secretAccessKey?: unknown;
  };
  if (!isFilledString(accessKeyId) || !isFilledString(secretAccessKey)) {
    throw new ConfigurationError(
      'aws-kms credentials need a non-empty accessKeyId and secretAccessKey (or pass a credentials provider, or leave them unset to use the standard AWS environment)',
    );
  }
}

function isFilledString(value: unknown): boolean {
  return typeof value === 'string' && value.length > 0;
}

function assertInteger(value: number | undefined, name: string, min: number, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigurationError(
      `aws-kms ${name} must be a whole number from ${min} to ${max}; got ${String(value)}`,
    );
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === 'https:' || protocol === 'http:';
  } catch {
    return false;
  }
}

function encryptionContext(context: DataKeyContext): Record<string, string> {
  return { tenant: context.tenantId, session: context.sessionId, dek: context.dekId };
}

/** The key ARN a wrapped key names. A kekId of another provider cannot be read here. */
function wrappingKeyArn(wrapped: WrappedDataKey, context: DataKeyContext): string {
  if (!wrapped.kekId.startsWith(KEK_ID_PREFIX)) {
    throw new ConfigurationError(
      `Data key ${context.dekId} was wrapped by root key '${wrapped.kekId}', which is not an AWS KMS key; configure the provider that wrapped it to read this session`,
    );
  }
  const arn = wrapped.kekId.slice(KEK_ID_PREFIX.length);
  if (!KEY_ARN_PATTERN.test(arn)) {
    throw new IntegrityError(
      `Data key ${context.dekId} names no valid KMS key ARN in its root key id; the stored key was altered; nothing was deleted`,
    );
  }
  return arn;
}

/** Copies the SDK's plaintext data key into a Buffer we own and zeroes the SDK's copy. */
function takeDataKey(plaintext: Uint8Array | undefined, operation: KmsOperation): Buffer {
  const length = plaintext?.length ?? 0;
  const copy = plaintext ? Buffer.from(plaintext) : Buffer.alloc(0);
  plaintext?.fill(0);
  if (length !== DATA_KEY_BYTES) {
    copy.fill(0);
    throw new IntegrityError(
      `AWS KMS answered ${operation} with a ${length}-byte data key, not ${DATA_KEY_BYTES}; refusing it (nothing was stored or deleted)`,
    );
  }
  return copy;
}
