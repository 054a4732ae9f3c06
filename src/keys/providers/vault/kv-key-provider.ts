import { randomBytes } from 'node:crypto';
import { ConfigurationError, KeyProviderUnavailableError } from '../../../errors/index.js';
import type {
  DataKeyContext,
  GeneratedDataKey,
  KeyProvider,
  WrappedDataKey,
} from '../../key-provider.interface.js';
import { LocalRootKeys, parseRootKey } from '../local-root-keys.js';
import { providerUsedBeforeInit } from '../used-before-init.js';
import { VaultConnection, type VaultConnectionStats } from './connection.js';
import { isVaultPath, type VaultConnectionOptions } from './connection-options.js';
import { field } from './response-fields.js';

/**
 * Options of {@link VaultKvKeyProvider}.
 *
 * @publicApi
 */
export interface VaultKvKeyProviderOptions extends VaultConnectionOptions {
  /** Mount path of the KV version 2 secrets engine. @default 'secret' */
  mountPath?: string;
  /** Path of the secret inside the mount, e.g. `nest-sessions/root-key`. */
  secretPath: string;
  /** Field of the secret holding the base64 root key. @default 'key' */
  field?: string;
  /**
   * How long root keys read from Vault are used before the next call re-reads the secret's
   * metadata, in ms. The re-read picks up a new version (it becomes active) and drops deleted
   * or destroyed versions; while Vault cannot be reached after that, calls fail with
   * KeyProviderUnavailableError, as with the transit and KMS providers (cached data keys keep
   * serving). 0 re-reads on every call. @default 300000 (5 minutes)
   */
  keyCacheTtlMs?: number;
}

const FIELD_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const DATA_KEY_LENGTH = 32;
const DEFAULT_KEY_CACHE_TTL_MS = 5 * 60_000;

/** A version as the secret's metadata lists it. */
interface VersionState {
  readonly live: boolean;
}

/**
 * Root keys kept in a Vault KV version 2 secret: every version of the secret holds one
 * base64 32-byte root key in `field`, the version number is the key version
 * (`vault-kv:<mount>/<path>:v<N>`), and the latest live version is active. Rotate by writing
 * a new version (`vault kv put -mount=secret <path> key=$(openssl rand -base64 32)`) and, to
 * switch at once, calling {@link refreshActiveKey}; otherwise it switches within
 * `keyCacheTtlMs`.
 *
 * Keys are used like the env provider's: an HKDF subkey per root key wraps data keys with
 * AES-256-GCM, bound to tenant, session and data-key id. Unlike transit, root keys are held
 * in this process's memory (as subkeys); prefer transit when they must never leave Vault.
 *
 * @publicApi
 */
export class VaultKvKeyProvider implements KeyProvider {
  readonly name = 'vault-kv';
  private readonly vault: VaultConnection;
  private readonly mount: string;
  private readonly secretPath: string;
  private readonly field: string;
  private readonly keyCacheTtlMs: number;
  private readonly keys = new LocalRootKeys();
  private activeVersion = 0;
  private loadedAt = 0;
  private refreshing?: Promise<string>;
  private readonly loadingVersions = new Map<number, Promise<boolean>>();

  /** @throws ConfigurationError when an option is missing or malformed. */
  constructor(options: VaultKvKeyProviderOptions) {
    this.mount = options.mountPath ?? 'secret';
    if (!isVaultPath(this.mount)) {
      throw new ConfigurationError(
        `vault-kv: mountPath must be a Vault path such as 'secret' (no leading or trailing slash)`,
      );
    }
    if (!isVaultPath(options.secretPath)) {
      throw new ConfigurationError(
        `vault-kv: secretPath must be the secret's path inside the mount, e.g. 'nest-sessions/root-key' (no leading or trailing slash, no 'data/' prefix)`,
      );
    }
    this.secretPath = options.secretPath;
    this.field = options.field ?? 'key';
    if (!FIELD_NAME.test(this.field)) {
      throw new ConfigurationError(
        `vault-kv: field must name the secret's field holding the key (letters, digits, '.', '_', '-')`,
      );
    }
    this.keyCacheTtlMs = options.keyCacheTtlMs ?? DEFAULT_KEY_CACHE_TTL_MS;
    if (!Number.isFinite(this.keyCacheTtlMs) || this.keyCacheTtlMs < 0) {
      throw new ConfigurationError('vault-kv: keyCacheTtlMs must be 0 or a positive number of ms');
    }
    this.vault = new VaultConnection(options, 'vault-kv');
  }

  /**
   * Logs in and loads every live version of the secret.
   * @throws ConfigurationError when the secret is missing, has no live version, or a version
   *   does not hold 32 random bytes.
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
    return this.kekIdFor(this.activeVersion);
  }

  /**
   * Re-reads the secret's metadata: loads versions written since, forgets deleted or destroyed
   * ones, and makes the latest live version active. Call it after writing a new version.
   * @returns The active key id afterwards.
   */
  refreshActiveKey(): Promise<string> {
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    this.requireInit('generateDataKey');
    await this.ensureFresh();
    const version = this.activeVersion;
    const plaintext = randomBytes(DATA_KEY_LENGTH);
    const wrappedKey = this.keys.wrap(String(version), plaintext, context);
    return { plaintext, wrapped: { kekId: this.kekIdFor(version), wrappedKey } };
  }

  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer> {
    this.requireInit('unwrapDataKey');
    const version = this.versionOf(wrapped, context);
    await this.ensureFresh();
    await this.ensureVersion(version, wrapped, context);
    return this.keys.unwrap(String(version), wrapped.wrappedKey, context);
  }

  /** Unwraps in memory with the old version and wraps under the active one. */
  async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<WrappedDataKey> {
    this.requireInit('rewrapDataKey');
    const plaintext = await this.unwrapDataKey(wrapped, context);
    try {
      const version = this.activeVersion;
      const wrappedKey = this.keys.wrap(String(version), plaintext, context);
      return { kekId: this.kekIdFor(version), wrappedKey };
    } finally {
      plaintext.fill(0);
    }
  }

  private kekIdPrefix(): string {
    return `vault-kv:${this.mount}/${this.secretPath}:v`;
  }

  private kekIdFor(version: number): string {
    return `${this.kekIdPrefix()}${version}`;
  }

  private secretName(): string {
    return `${this.mount}/data/${this.secretPath}`;
  }

  /** Refuses `method` until init() has loaded a key (the active version is 0 until then). */
  private requireInit(method: string): void {
    if (this.activeVersion === 0) throw providerUsedBeforeInit(this.name, method);
  }

  private async ensureFresh(): Promise<void> {
    if (Date.now() - this.loadedAt >= this.keyCacheTtlMs) await this.refreshActiveKey();
  }

  private async refresh(): Promise<string> {
    // init() opens the connection before its first refresh; a host's call must come after.
    this.vault.requireOpen('refreshActiveKey');
    const metadataPath = `${this.mount}/metadata/${this.secretPath}`;
    const body = await this.vault.read(metadataPath, (refusal) =>
      refusal.status === 404
        ? new ConfigurationError(
            `vault-kv: there is no KV v2 secret '${this.secretPath}' at mount '${this.mount}'; write the first root key with 'vault kv put -mount=${this.mount} ${this.secretPath} ${this.field}=$(openssl rand -base64 32)'`,
          )
        : undefined,
    );
    const data = field(body, 'data');
    const versions = parseVersions(field(data, 'versions'));
    if (!versions) {
      throw new KeyProviderUnavailableError(
        `vault-kv: Vault's metadata for '${metadataPath}' lists no versions; is '${this.mount}' a KV version 2 mount?`,
      );
    }
    for (const id of this.keys.ids()) {
      if (!versions.get(Number(id))?.live) this.keys.delete(id);
    }
    const missing = [...versions]
      .filter(([version, state]) => state.live && !this.keys.has(String(version)))
      .map(([version]) => version);
    await Promise.all(missing.map((version) => this.loadVersion(version)));
    // KV v2's current_version is always its newest version: the newest one loaded is active,
    // which also covers a newest version deleted or destroyed since.
    const active = Math.max(
      0,
      ...[...versions.keys()].filter((version) => this.keys.has(String(version))),
    );
    if (active === 0) {
      throw new ConfigurationError(
        `vault-kv: every version of Vault secret '${this.secretName()}' is deleted or destroyed; write a new root key with 'vault kv put -mount=${this.mount} ${this.secretPath} ${this.field}=$(openssl rand -base64 32)' (or undelete a version)`,
      );
    }
    this.activeVersion = active;
    this.loadedAt = Date.now();
    return this.activeKekId();
  }

  /** Makes sure `version` is loaded, reading it once on demand (written after the last refresh). */
  private async ensureVersion(
    version: number,
    wrapped: WrappedDataKey,
    context: DataKeyContext,
  ): Promise<void> {
    if (this.keys.has(String(version))) return;
    let loading = this.loadingVersions.get(version);
    if (!loading) {
      loading = this.loadVersion(version).finally(() => this.loadingVersions.delete(version));
      this.loadingVersions.set(version, loading);
    }
    if (!(await loading)) {
      throw new ConfigurationError(
        `Data key ${context.dekId} was wrapped by root key '${wrapped.kekId}', but version ${version} of Vault secret '${this.secretName()}' is deleted, destroyed or gone; undelete it with 'vault kv undelete -mount=${this.mount} -versions=${version} ${this.secretPath}' to read this session (a destroyed version cannot come back)`,
      );
    }
  }

  /** Reads one version; false when Vault has no live data for it (404). */
  private async loadVersion(version: number): Promise<boolean> {
    const body = await this.vault.readIfPresent(`${this.secretName()}?version=${version}`);
    if (body === undefined) return false;
    const secret = field(field(body, 'data'), 'data');
    const encoded = field(secret, this.field);
    const source = `field '${this.field}' of Vault secret '${this.secretName()}' (version ${version})`;
    if (typeof encoded !== 'string') {
      throw new ConfigurationError(
        `vault-kv: version ${version} of Vault secret '${this.secretName()}' has no string field '${this.field}'; write the root key there with 'vault kv put -mount=${this.mount} ${this.secretPath} ${this.field}=$(openssl rand -base64 32)'`,
      );
    }
    this.keys.add(String(version), parseRootKey(`v${version}`, encoded.trim(), source));
    return true;
  }

  private versionOf(wrapped: WrappedDataKey, context: DataKeyContext): number {
    const prefix = this.kekIdPrefix();
    const version = wrapped.kekId.startsWith(prefix)
      ? Number(wrapped.kekId.slice(prefix.length))
      : Number.NaN;
    if (!Number.isSafeInteger(version) || version < 1) {
      throw new ConfigurationError(
        `Data key ${context.dekId} was wrapped by root key '${wrapped.kekId}', which is not a version of Vault secret '${this.secretName()}'; configure the vault-kv provider with the secret that wrapped it to read this session`,
      );
    }
    return version;
  }
}

/** Metadata `versions` as version -> live; undefined when the shape is not KV v2's. */
function parseVersions(raw: unknown): Map<number, VersionState> | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const versions = new Map<number, VersionState>();
  const now = Date.now();
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const version = Number(key);
    if (!Number.isSafeInteger(version) || version < 1) continue;
    const deletion = field(value, 'deletion_time');
    // delete_version_after sets a deletion time in the future: deleted only once it passed.
    const deleted =
      typeof deletion === 'string' && deletion !== '' && !(Date.parse(deletion) > now);
    versions.set(version, { live: field(value, 'destroyed') !== true && !deleted });
  }
  return versions;
}
