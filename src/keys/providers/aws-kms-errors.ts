import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  type EncryptedSessionError,
} from '../../errors/index.js';
import { NETWORK_ERROR_CODES } from '../../errors/network-errors.js';
import type { DataKeyContext } from '../key-provider.interface.js';

/*
 * How the AWS KMS provider reads a failed SDK call: by error name, socket code and HTTP status
 * only (never the SDK message, which can echo request data), and which typed error and message
 * each failure becomes. Internal to the provider.
 */

/** The KMS operations the provider calls, named in messages. */
export type KmsOperation = 'DescribeKey' | 'GenerateDataKey' | 'Decrypt' | 'ReEncrypt';

/** SDK error names are safe to show; anything else from the wire is reduced to this shape. */
const SAFE_REASON_PATTERN = /^[A-Za-z0-9_.:# -]{1,80}$/;

/** Errors meaning KMS is busy or briefly unable to serve: a retry may succeed. */
const TRANSIENT_ERRORS: ReadonlySet<string> = new Set([
  'ThrottlingException',
  'LimitExceededException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);
/** Errors about who is calling rather than about the key. */
const CREDENTIALS_ERRORS: ReadonlySet<string> = new Set([
  'CredentialsProviderError',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'IncompleteSignatureException',
  'MissingAuthenticationTokenException',
  'SignatureDoesNotMatch',
  'ExpiredTokenException',
]);

/** What a failed KMS call amounts to, in a form safe to put in a message. */
export interface KmsFailure {
  readonly kind:
    | 'integrity'
    | 'transient'
    | 'disabled'
    | 'invalid-state'
    | 'not-found'
    | 'access-denied'
    | 'key-usage'
    | 'credentials'
    | 'no-region'
    | 'other';
  /** The error name or socket code, HTTP status and request id; never the SDK message. */
  readonly reason: string;
}

/**
 * Reads an SDK failure by its name, socket code and HTTP status only. The SDK error object is
 * never kept or chained: it may carry request data.
 */
export function classifyKmsError(error: unknown): KmsFailure {
  const fields = (error ?? {}) as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
  };
  const name = typeof fields.name === 'string' ? fields.name : 'Error';
  const code = typeof fields.code === 'string' ? fields.code : undefined;
  const status =
    typeof fields.$metadata?.httpStatusCode === 'number'
      ? fields.$metadata.httpStatusCode
      : undefined;
  const requestId = fields.$metadata?.requestId;
  // Socket errors are plain Errors with a code (ECONNREFUSED); the SDK renames some (TimeoutError).
  const label = code === undefined ? name : name === 'Error' ? code : `${name} ${code}`;
  const parts = [safeReason(label)];
  if (status !== undefined) parts.push(`HTTP ${status}`);
  if (typeof requestId === 'string' && SAFE_REASON_PATTERN.test(requestId)) {
    parts.push(`request id ${requestId}`);
  }
  const reason = parts.join(', ');

  const kind = ((): KmsFailure['kind'] => {
    if (name === 'InvalidCiphertextException' || name === 'IncorrectKeyException') {
      return 'integrity';
    }
    if (name === 'DisabledException') return 'disabled';
    if (name === 'KMSInvalidStateException') return 'invalid-state';
    if (name === 'NotFoundException') return 'not-found';
    if (name === 'AccessDeniedException') return 'access-denied';
    if (name === 'InvalidKeyUsageException') return 'key-usage';
    if (CREDENTIALS_ERRORS.has(name)) return 'credentials';
    if (
      TRANSIENT_ERRORS.has(name) ||
      (code !== undefined && NETWORK_ERROR_CODES.has(code)) ||
      (status !== undefined && (status === 429 || status >= 500))
    ) {
      return 'transient';
    }
    if (typeof fields.message === 'string' && /region is missing/i.test(fields.message)) {
      return 'no-region';
    }
    return 'other';
  })();
  return { kind, reason };
}

function safeReason(text: string): string {
  return SAFE_REASON_PATTERN.test(text) ? text : 'unrecognised error';
}

/** The error for a failed GenerateDataKey, Decrypt or ReEncrypt. */
export function operationFailure(
  failure: KmsFailure,
  operation: KmsOperation,
  keyLabel: string,
  context: DataKeyContext,
): EncryptedSessionError {
  const { kind, reason } = failure;
  switch (kind) {
    case 'integrity':
      return new IntegrityError(
        `Data key ${context.dekId}: the wrapped data key does not match its KMS key or encryption context (${reason}); it was altered or moved; nothing was deleted`,
      );
    case 'no-region':
      return new ConfigurationError(noRegionMessage());
    case 'transient':
      return new KeyProviderUnavailableError(
        `AWS KMS is unreachable or busy (${reason}) for ${operation}; retry later`,
      );
    default:
      // The key is disabled, gone or denied: an operator must act, so the key ring does not retry.
      return new KeyUnusableError(keyProblemMessage(kind, reason, operation, keyLabel));
  }
}

/** The error for a failed DescribeKey: a key that cannot be used is a configuration fault. */
export function describeFailure(failure: KmsFailure, keyId: string): EncryptedSessionError {
  const { kind, reason } = failure;
  if (kind === 'transient') {
    return new KeyProviderUnavailableError(
      `AWS KMS is unreachable or busy (${reason}) for DescribeKey of '${keyId}'; retry later`,
    );
  }
  if (kind === 'no-region') return new ConfigurationError(noRegionMessage());
  return new ConfigurationError(keyProblemMessage(kind, reason, 'DescribeKey', keyId));
}

/** What went wrong with the key or the caller, and what the operator does about it. */
function keyProblemMessage(
  kind: KmsFailure['kind'],
  reason: string,
  operation: KmsOperation,
  keyLabel: string,
): string {
  switch (kind) {
    case 'disabled':
      return `KMS key ${keyLabel} is disabled (${reason}); enable it ('aws kms enable-key') to use it, or set keyId to an enabled key for new data keys; data keys wrapped under it stay unreadable while it is disabled`;
    case 'invalid-state':
      return `KMS key ${keyLabel} cannot be used in its current state, e.g. pending deletion or pending import (${reason}); cancel the deletion ('aws kms cancel-key-deletion', then enable it) or import its key material`;
    case 'not-found':
      return `KMS key ${keyLabel} was not found (${reason}): it was deleted or lives in another region or account; check keyId and region`;
    case 'access-denied':
      return `Not allowed to call kms:${operation} on KMS key ${keyLabel} (${reason}); allow kms:${operation} for this identity in the key policy or an IAM policy`;
    case 'key-usage':
      return `KMS key ${keyLabel} cannot wrap data keys (${reason}); use a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT)`;
    case 'credentials':
      return `AWS rejected or could not load the credentials for kms:${operation} (${reason}); check the credentials option or the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, an IAM role)`;
    default:
      return `AWS KMS refused ${operation} on KMS key ${keyLabel} (${reason}); check the key and the aws-kms options`;
  }
}

function noRegionMessage(): string {
  return 'aws-kms has no AWS region; set the region option or AWS_REGION';
}
