/**
 * `nest-encrypted-sessions/aws-kms`: root keys in AWS KMS, for
 * `keys: { provider: new AwsKmsKeyProvider({ keyId, client }) }` with a KMS client of the host's.
 * `@aws-sdk/client-kms` is an optional peer dependency: `npm install @aws-sdk/client-kms`.
 *
 * @packageDocumentation
 */
export {
  AwsKmsKeyProvider,
  type AwsKmsKeyProviderOptions,
} from './keys/providers/aws-kms-key-provider.js';
