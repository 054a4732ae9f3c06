/**
 * Which session and data key a wrapped key belongs to; bound into every wrap as context.
 *
 * @publicApi
 */
export interface DataKeyContext {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly dekId: string;
}

/**
 * A data key as the provider wrapped it, with the id of the root key (and version) it used.
 *
 * @publicApi
 */
export interface WrappedDataKey {
  readonly kekId: string;
  readonly wrappedKey: Buffer;
}

/**
 * A freshly generated data key: the caller must zero `plaintext` when done with it.
 *
 * @publicApi
 */
export interface GeneratedDataKey {
  readonly plaintext: Buffer;
  readonly wrapped: WrappedDataKey;
}

/** Injection token for {@link KeyProvider}. */
export const KEY_PROVIDER = Symbol('KEY_PROVIDER');

/**
 * The port to a root key (KEK) holder: env keys, AWS KMS, Vault transit, Vault KV. Root key material
 * never leaves the provider; only 32-byte data keys pass through, wrapped for storage.
 *
 * Errors: a provider that cannot be reached throws `KeyProviderUnavailableError`; a wrapped key
 * that does not authenticate throws `IntegrityError`.
 *
 * @publicApi
 */
export interface KeyProvider {
  /** Short provider name for logs and status (`env`, `aws-kms`, ...). */
  readonly name: string;
  /**
   * Connects, logs in and looks up the active root key. The module awaits it once at startup,
   * before any other call; a provider that needs nothing of the sort leaves it out. A provider
   * that has it refuses every other call made before it with a `ConfigurationError` ("... was
   * called before init()"), the same in every provider.
   */
  init?(): Promise<void>;
  /** Stops timers (token renewal) and releases connections. Idempotent. */
  close?(): Promise<void>;
  /** The root key id new data keys are wrapped under (including its version, if any). */
  activeKekId(): string;
  /**
   * Reads again which root key is active, for a provider whose active key can change outside
   * the process (Vault: an operator's `rotate` makes a new key version), and returns its id.
   * KEK rotation calls it before it looks for data keys to move. Absent where the active key
   * changes only with the options (env, AWS KMS: a new active id or key id, then a restart).
   */
  refreshActiveKey?(): Promise<string>;
  /** Creates a random 32-byte data key and wraps it under the active root key. */
  generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey>;
  /** Unwraps a data key with the root key named by `wrapped.kekId`. */
  unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer>;
  /**
   * Wraps an already wrapped data key under the active root key (KEK rotation), inside the
   * provider where it can (KMS `ReEncrypt`, Vault transit `rewrap`), so the data key never
   * reaches this process; otherwise by unwrapping and wrapping again in memory.
   */
  rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<WrappedDataKey>;
}
