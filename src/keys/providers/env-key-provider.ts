import { randomBytes } from 'node:crypto';
import { deriveSubkey, unwrapDataKey, wrapDataKey } from '../../crypto/index.js';
import { ConfigurationError } from '../../errors/index.js';
import type {
  DataKeyContext,
  GeneratedDataKey,
  KeyProvider,
  WrappedDataKey,
} from '../key-provider.interface.js';
import type { KeyObject } from 'node:crypto';

/** Options of {@link EnvKeyProvider}. */
export interface EnvKeyProviderOptions {
  /**
   * Root keys as `id:base64` pairs separated by commas (or an array of pairs). Each key must be
   * exactly 32 random bytes, e.g. from `openssl rand -base64 32`.
   */
  keys: string | readonly string[];
  /** Id of the key that wraps new data keys; must be one of `keys`. */
  activeKeyId: string;
  /** Names shown in error messages, so they point at what the operator actually sets. */
  sourceNames?: { keys: string; activeKeyId: string };
}

const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/]{43}=$/;
const KEK_ID_PREFIX = 'env:';

/**
 * Parses and checks root keys. Anything that is not exactly 32 random bytes (a password, a
 * short key, text) is refused: a password is not a key.
 */
export function parseEnvRootKeys(
  keys: string | readonly string[],
  keysSourceName = 'keys',
): Map<string, Buffer> {
  const entries = (typeof keys === 'string' ? keys.split(',') : [...keys])
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (entries.length === 0) {
    throw new ConfigurationError(
      `No root keys in ${keysSourceName}; set it to 'id:base64' pairs of 32 random bytes, e.g. k1:$(openssl rand -base64 32)`,
    );
  }
  const parsed = new Map<string, Buffer>();
  for (const entry of entries) {
    const separator = entry.indexOf(':');
    const id = separator > 0 ? entry.slice(0, separator) : '';
    const encoded = separator > 0 ? entry.slice(separator + 1) : '';
    if (!KEY_ID_PATTERN.test(id)) {
      throw new ConfigurationError(
        `A root key in ${keysSourceName} has no valid id; write each key as 'id:base64' with an id of 1-64 letters, digits, '.', '_' or '-'`,
      );
    }
    if (parsed.has(id)) {
      throw new ConfigurationError(
        `Root key id '${id}' appears twice in ${keysSourceName}; give each key its own id`,
      );
    }
    const key = BASE64_PATTERN.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
    if (!key || key.length !== 32) {
      throw new ConfigurationError(
        `Root key '${id}' in ${keysSourceName} is not 32 bytes of base64; generate one with 'openssl rand -base64 32' (passwords are not accepted as keys)`,
      );
    }
    if (!looksRandom(key)) {
      throw new ConfigurationError(
        `Root key '${id}' in ${keysSourceName} does not look random (it decodes to text or repeated bytes); generate one with 'openssl rand -base64 32'`,
      );
    }
    parsed.set(id, key);
  }
  return parsed;
}

/**
 * Catches keys typed by people: 32 random bytes are all printable ASCII with probability
 * ~1e-14 and have fewer than 16 distinct values with far less.
 */
function looksRandom(key: Buffer): boolean {
  const printable = key.every((byte) => byte >= 0x20 && byte < 0x7f);
  return !printable && new Set(key).size >= 16;
}

/**
 * Root keys held in process memory, read from configuration (`SESSION_KEYS`,
 * `SESSION_ACTIVE_KEY` in the demo). Data keys are wrapped with AES-256-GCM under an HKDF
 * subkey of the root key, bound to tenant, session and data-key id. For production, keep root
 * keys in AWS KMS or Vault instead.
 */
export class EnvKeyProvider implements KeyProvider {
  readonly name = 'env';
  private readonly wrappingKeys = new Map<string, KeyObject>();
  private readonly activeId: string;

  constructor(options: EnvKeyProviderOptions) {
    const names = options.sourceNames ?? { keys: 'keys', activeKeyId: 'activeKeyId' };
    const rootKeys = parseEnvRootKeys(options.keys, names.keys);
    if (!rootKeys.has(options.activeKeyId)) {
      throw new ConfigurationError(
        `No active key '${options.activeKeyId}' in ${names.keys}; add it or set ${names.activeKeyId} to one of: ${[...rootKeys.keys()].join(', ')}`,
      );
    }
    for (const [id, key] of rootKeys) {
      this.wrappingKeys.set(id, deriveSubkey(key, 'dek-wrap'));
      key.fill(0);
    }
    this.activeId = options.activeKeyId;
  }

  activeKekId(): string {
    return KEK_ID_PREFIX + this.activeId;
  }

  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    const plaintext = randomBytes(32);
    const wrappedKey = wrapDataKey(
      this.wrappingKeys.get(this.activeId)!,
      plaintext,
      toContext(context),
    );
    return { plaintext, wrapped: { kekId: this.activeKekId(), wrappedKey } };
  }

  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer> {
    const id = wrapped.kekId.startsWith(KEK_ID_PREFIX)
      ? wrapped.kekId.slice(KEK_ID_PREFIX.length)
      : '';
    const wrappingKey = this.wrappingKeys.get(id);
    if (!wrappingKey) {
      throw new ConfigurationError(
        `Data key ${context.dekId} was wrapped by root key '${wrapped.kekId}', which is not configured; add that key back to the key list (it may be inactive) to read this session`,
      );
    }
    return unwrapDataKey(wrappingKey, wrapped.wrappedKey, toContext(context));
  }

  async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<WrappedDataKey> {
    const plaintext = await this.unwrapDataKey(wrapped, context);
    try {
      const wrappedKey = wrapDataKey(
        this.wrappingKeys.get(this.activeId)!,
        plaintext,
        toContext(context),
      );
      return { kekId: this.activeKekId(), wrappedKey };
    } finally {
      plaintext.fill(0);
    }
  }
}

function toContext(context: DataKeyContext): Record<string, string> {
  return { tenant: context.tenantId, session: context.sessionId, dek: context.dekId };
}
