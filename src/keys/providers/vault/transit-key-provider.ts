import { randomBytes } from 'node:crypto';
import { encodeEncryptionContext } from '../../../crypto/index.js';
import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  type EncryptedSessionError,
} from '../../../errors/index.js';
import type {
  DataKeyContext,
  GeneratedDataKey,
  KeyProvider,
  WrappedDataKey,
} from '../../key-provider.interface.js';
import { providerUsedBeforeInit } from '../used-before-init.js';
import { VaultConnection, type VaultConnectionStats } from './connection.js';
import { isVaultPath, type VaultConnectionOptions } from './connection-options.js';
import type { VaultRefusal } from './errors.js';
import { field, numberField } from './response-fields.js';

/**
 * Options of {@link VaultTransitKeyProvider}.
 *
 * @publicApi
 */
export interface VaultTransitKeyProviderOptions extends VaultConnectionOptions {
  /** Mount path of the transit secrets engine. @default 'transit' */
  mountPath?: string;
  /**
   * Name of the transit key. The operator creates it with derivation on:
   * `vault write transit/keys/<name> derived=true`.
   */
  keyName: string;
  /**
   * Let Vault generate data keys (`transit/datakey/plaintext/<name>`, 256 bits) instead of
   * generating them here and encrypting them with `transit/encrypt/<name>`. Use it when data
   * keys must come from Vault's random source (an HSM-backed or FIPS Vault). @default false
   */
  useDatakeyEndpoint?: boolean;
}

const KEY_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const CIPHERTEXT = /^vault:v(\d{1,9}):[A-Za-z0-9+/=]+$/;
const DATA_KEY_LENGTH = 32;
/** rewrap re-reads the key at most this often, so a rotation run costs one read, not one each. */
const KEY_REFRESH_MIN_INTERVAL_MS = 1000;
const CONTEXT_PURPOSE = 'nest-encrypted-sessions/dek-wrap/v1';
const TOO_OLD = 'disallowed by policy (too old)';
const TOO_NEW = 'version is too new';
const KEY_NOT_FOUND = 'encryption key not found';

/**
 * Root key in Vault's transit engine: data keys are encrypted, decrypted and rewrapped by
 * Vault under a derived transit key, so the root key never leaves Vault and `rewrapDataKey`
 * moves a data key to the latest key version without it reaching this process.
 *
 * Every call passes a derivation `context` binding tenant, session and data-key id (the
 * session too, like the env provider's AAD: a wrapped key copied to another session of the
 * same tenant must not unwrap). The key must therefore be created with `derived=true`; `init`
 * refuses any other.
 *
 * Key ids are `vault-transit:<mount>/<key>:v<version>`; the wrapped key is Vault's
 * `vault:v<N>:...` ciphertext as UTF-8 bytes.
 *
 * @publicApi
 */
export class VaultTransitKeyProvider implements KeyProvider {
  readonly name = 'vault-transit';
  private readonly vault: VaultConnection;
  private readonly mount: string;
  private readonly keyName: string;
  private readonly useDatakeyEndpoint: boolean;
  private latestVersion = 0;
  private minDecryptionVersion = 1;
  private keyReadAt = 0;
  private keyRead?: Promise<void>;

  /** @throws ConfigurationError when an option is missing or malformed. */
  constructor(options: VaultTransitKeyProviderOptions) {
    this.mount = options.mountPath ?? 'transit';
    if (!isVaultPath(this.mount)) {
      throw new ConfigurationError(
        `vault-transit: mountPath must be a Vault path such as 'transit' (no leading or trailing slash)`,
      );
    }
    if (typeof options.keyName !== 'string' || !KEY_NAME.test(options.keyName)) {
      throw new ConfigurationError(
        `vault-transit: keyName must name the transit key (letters, digits, '.', '_', '-')`,
      );
    }
    this.keyName = options.keyName;
    this.useDatakeyEndpoint = options.useDatakeyEndpoint ?? false;
    this.vault = new VaultConnection(options, 'vault-transit');
  }

  /**
   * Logs in, then reads the transit key: it must exist and be derived.
   * @throws ConfigurationError when the key is missing or not derived, or login is refused.
   * @throws KeyProviderUnavailableError when Vault cannot be reached.
   */
  async init(): Promise<void> {
    await this.vault.openAndLoad(() => this.refreshActiveKey());
  }

  /** Stops token renewal. */
  async close(): Promise<void> {
    this.vault.close();
  }

  /** Token life-cycle counters of the underlying Vault connection. */
  connectionStats(): VaultConnectionStats {
    return this.vault.stats();
  }

  activeKekId(): string {
    this.requireInit('activeKekId');
    return this.kekIdFor(this.latestVersion);
  }

  /**
   * Re-reads the transit key's `latest_version` and `min_decryption_version`, so
   * {@link activeKekId} names the version an operator's `transit/keys/<name>/rotate` made.
   * @returns The active key id afterwards.
   */
  async refreshActiveKey(): Promise<string> {
    // init() opens the connection before its first call here; a host's call must come after.
    this.vault.requireOpen('refreshActiveKey');
    const body = await this.vault.read(`${this.mount}/keys/${this.keyName}`, (refusal) =>
      refusal.status === 404
        ? new ConfigurationError(
            `vault-transit: there is no transit key '${this.keyName}' at mount '${this.mount}'; create it with 'vault write ${this.mount}/keys/${this.keyName} derived=true'`,
          )
        : undefined,
    );
    const data = field(body, 'data');
    if (field(data, 'derived') !== true) {
      throw new ConfigurationError(
        `vault-transit: transit key '${this.mount}/keys/${this.keyName}' is not derived; data keys are bound to tenant, session and data key id through a derivation context, which needs a key created with 'vault write ${this.mount}/keys/<name> derived=true' (derivation cannot be turned on for an existing key): create one and set keyName to it`,
      );
    }
    if (field(data, 'supports_encryption') === false) {
      throw new ConfigurationError(
        `vault-transit: transit key '${this.mount}/keys/${this.keyName}' cannot encrypt (type ${String(field(data, 'type'))}); create an aes256-gcm96 key with derived=true`,
      );
    }
    const latest = numberField(data, 'latest_version');
    if (latest === undefined || latest < 1) {
      throw new KeyProviderUnavailableError(
        `vault-transit: Vault's answer for ${this.mount}/keys/${this.keyName} has no latest_version`,
      );
    }
    // Versions only grow; a read that started before a newer answer must not lower it.
    this.latestVersion = Math.max(this.latestVersion, latest);
    this.minDecryptionVersion = numberField(data, 'min_decryption_version') ?? 1;
    this.keyReadAt = Date.now();
    return this.activeKekId();
  }

  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    this.requireInit('generateDataKey');
    const transitContext = toTransitContext(context);
    if (this.useDatakeyEndpoint) {
      const body = await this.vault.write(
        `${this.mount}/datakey/plaintext/${this.keyName}`,
        { context: transitContext, bits: DATA_KEY_LENGTH * 8 },
        (refusal) => this.mapRefusal(refusal, context, undefined),
      );
      const data = field(body, 'data');
      const encoded = field(data, 'plaintext');
      const plaintext = typeof encoded === 'string' ? Buffer.from(encoded, 'base64') : undefined;
      if (!plaintext || plaintext.length !== DATA_KEY_LENGTH) {
        plaintext?.fill(0);
        throw new KeyProviderUnavailableError(
          `vault-transit: Vault's datakey answer for ${this.mount}/${this.keyName} holds no 256-bit key`,
        );
      }
      try {
        return { plaintext, wrapped: this.wrappedFrom(field(data, 'ciphertext'), 'datakey') };
      } catch (error) {
        plaintext.fill(0);
        throw error;
      }
    }
    const plaintext = randomBytes(DATA_KEY_LENGTH);
    try {
      // The base64 copy of the key lives in an immutable JS string until collected; Vault's
      // JSON API offers no other way.
      const body = await this.vault.write(
        `${this.mount}/encrypt/${this.keyName}`,
        { plaintext: plaintext.toString('base64'), context: transitContext },
        (refusal) => this.mapRefusal(refusal, context, undefined),
      );
      return {
        plaintext,
        wrapped: this.wrappedFrom(field(field(body, 'data'), 'ciphertext'), 'encrypt'),
      };
    } catch (error) {
      plaintext.fill(0);
      throw error;
    }
  }

  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer> {
    this.requireInit('unwrapDataKey');
    const { ciphertext, version } = this.parseWrapped(wrapped, context);
    const body = await this.vault.write(
      `${this.mount}/decrypt/${this.keyName}`,
      { ciphertext, context: toTransitContext(context) },
      (refusal) => this.mapRefusal(refusal, context, version),
    );
    const encoded = field(field(body, 'data'), 'plaintext');
    const plaintext = typeof encoded === 'string' ? Buffer.from(encoded, 'base64') : undefined;
    if (!plaintext || plaintext.length !== DATA_KEY_LENGTH) {
      plaintext?.fill(0);
      throw new IntegrityError(
        `vault-transit: data key ${context.dekId} decrypted to something other than a 32-byte key; it is not a key this module wrapped`,
      );
    }
    return plaintext;
  }

  /**
   * Rewraps inside Vault (`transit/rewrap/<name>`) to the key's latest version: the data key
   * never reaches this process. The key is re-read first (at most once a second) so
   * {@link activeKekId} follows an operator's rotation.
   */
  async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<WrappedDataKey> {
    this.requireInit('rewrapDataKey');
    const { ciphertext, version } = this.parseWrapped(wrapped, context);
    await this.refreshIfStale();
    const body = await this.vault.write(
      `${this.mount}/rewrap/${this.keyName}`,
      { ciphertext, context: toTransitContext(context) },
      (refusal) => this.mapRefusal(refusal, context, version),
    );
    return this.wrappedFrom(field(field(body, 'data'), 'ciphertext'), 'rewrap');
  }

  /** Refuses `method` until init() has read the key (the latest version is 0 until then). */
  private requireInit(method: string): void {
    if (this.latestVersion === 0) throw providerUsedBeforeInit(this.name, method);
  }

  private refreshIfStale(): Promise<void> {
    if (Date.now() - this.keyReadAt < KEY_REFRESH_MIN_INTERVAL_MS) return Promise.resolve();
    this.keyRead ??= this.refreshActiveKey()
      .then(() => undefined)
      .finally(() => {
        this.keyRead = undefined;
      });
    return this.keyRead;
  }

  private kekIdFor(version: number): string {
    return `${this.kekIdPrefix()}${version}`;
  }

  private kekIdPrefix(): string {
    return `vault-transit:${this.mount}/${this.keyName}:v`;
  }

  /** Checks a Vault answer's ciphertext and learns the key version it names. */
  private wrappedFrom(ciphertext: unknown, operation: string): WrappedDataKey {
    const match = typeof ciphertext === 'string' ? CIPHERTEXT.exec(ciphertext) : null;
    if (!match) {
      throw new KeyProviderUnavailableError(
        `vault-transit: Vault's ${operation} answer for ${this.mount}/${this.keyName} holds no vault:v<N>: ciphertext`,
      );
    }
    const version = Number(match[1]);
    // Vault always encrypts with the latest version: an answer naming a newer one means the
    // operator rotated since the last read.
    this.latestVersion = Math.max(this.latestVersion, version);
    return { kekId: this.kekIdFor(version), wrappedKey: Buffer.from(match[0], 'utf8') };
  }

  /** The ciphertext and version of a stored wrapped key, after checking it is ours. */
  private parseWrapped(
    wrapped: WrappedDataKey,
    context: DataKeyContext,
  ): { ciphertext: string; version: number } {
    const prefix = this.kekIdPrefix();
    const kekVersion = wrapped.kekId.startsWith(prefix)
      ? Number(wrapped.kekId.slice(prefix.length))
      : Number.NaN;
    if (!Number.isSafeInteger(kekVersion) || kekVersion < 1) {
      throw new ConfigurationError(
        `Data key ${context.dekId} was wrapped by root key '${wrapped.kekId}', which is not this provider's transit key '${this.mount}/${this.keyName}'; configure the vault-transit provider with the key that wrapped it to read this session`,
      );
    }
    const ciphertext = Buffer.from(wrapped.wrappedKey).toString('utf8');
    const match = CIPHERTEXT.exec(ciphertext);
    if (!match || Number(match[1]) !== kekVersion) {
      throw new IntegrityError(
        `vault-transit: the wrapped data key ${context.dekId} is not a Vault transit ciphertext of key version v${kekVersion}; it is not a key this module wrapped, or it was altered`,
      );
    }
    return { ciphertext, version: kekVersion };
  }

  /**
   * Transit's refusals. Retired, unknown and missing key versions are told apart by Vault's error
   * text (sent with HTTP 400 today); any other 400 to a decrypt or rewrap means the ciphertext
   * or context does not decrypt: an integrity failure.
   */
  private mapRefusal(
    refusal: VaultRefusal,
    context: DataKeyContext,
    version: number | undefined,
  ): EncryptedSessionError | undefined {
    const text = refusal.errors.join('; ');
    const key = `${this.mount}/keys/${this.keyName}`;
    if (text.includes(TOO_OLD)) {
      // Retired by policy: retrying cannot help until an operator lowers the version.
      return new KeyUnusableError(
        `vault-transit: data key ${context.dekId} is wrapped under key version v${version ?? '?'} of '${key}', which was retired (below min_decryption_version ${this.minDecryptionVersion}); lower it with 'vault write ${key}/config min_decryption_version=${version ?? '<N>'}' to read this session, and rewrap data keys before raising it again`,
      );
    }
    if (text.includes(TOO_NEW)) {
      return new KeyProviderUnavailableError(
        `vault-transit: data key ${context.dekId} is wrapped under key version v${version ?? '?'} of '${key}', newer than this Vault knows (a lagging replica or a restored snapshot?); retry later`,
      );
    }
    if (text.includes(KEY_NOT_FOUND)) {
      return new ConfigurationError(
        `vault-transit: transit key '${key}' does not exist; create it with 'vault write ${key} derived=true', or set keyName to the key that wrapped the data keys`,
      );
    }
    if (refusal.status === 400 && version !== undefined) {
      return new IntegrityError(
        `vault-transit: Vault could not decrypt data key ${context.dekId} (${text || 'HTTP 400'}): wrong tenant, session or data key id, altered bytes, or another key`,
      );
    }
    return undefined;
  }
}

/**
 * Base64 of the canonical, length-prefixed encoding of tenant, session and data-key id (plus a
 * purpose label): the derivation context Vault derives the per-data-key transit key from.
 */
function toTransitContext(context: DataKeyContext): string {
  return encodeEncryptionContext({
    purpose: CONTEXT_PURPOSE,
    tenant: context.tenantId,
    session: context.sessionId,
    dek: context.dekId,
  }).toString('base64');
}
