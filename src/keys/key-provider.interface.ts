/** Which session and data key a wrapped key belongs to; bound into every wrap as context. */
export interface DataKeyContext {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly dekId: string;
}

/** A data key as the provider wrapped it, with the id of the root key (and version) it used. */
export interface WrappedDataKey {
  readonly kekId: string;
  readonly wrappedKey: Buffer;
}

/** A freshly generated data key: the caller must zero `plaintext` when done with it. */
export interface GeneratedDataKey {
  readonly plaintext: Buffer;
  readonly wrapped: WrappedDataKey;
}

/** Injection token for {@link KeyProvider}. */
export const KEY_PROVIDER = Symbol('KEY_PROVIDER');

/**
 * The port to a root key (KEK) holder: env keys now, AWS KMS and Vault next. Root key material
 * never leaves the provider; only 32-byte data keys pass through, wrapped for storage.
 *
 * Errors: a provider that cannot be reached throws `KeyProviderUnavailableError`; a wrapped key
 * that does not authenticate throws `IntegrityError`.
 */
export interface KeyProvider {
  /** Short provider name for logs and status (`env`, `aws-kms`, ...). */
  readonly name: string;
  /** The root key id new data keys are wrapped under. */
  activeKekId(): string;
  /** Creates a random 32-byte data key and wraps it under the active root key. */
  generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey>;
  /** Unwraps a data key with the root key named by `wrapped.kekId`. */
  unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer>;
}
