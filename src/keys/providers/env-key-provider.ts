import { randomBytes } from 'node:crypto';
import { ConfigurationError } from '../../errors/index.js';
import type {
  DataKeyContext,
  GeneratedDataKey,
  KeyProvider,
  WrappedDataKey,
} from '../key-provider.interface.js';
import { LocalRootKeys, parseRootKey } from './local-root-keys.js';

/**
 * Options of {@link EnvKeyProvider}.
 *
 * @publicApi
 */
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
    parsed.set(id, parseRootKey(id, encoded, keysSourceName));
  }
  return parsed;
}

/** How a value of the wrong type is described: its type only, never the value (a key). */
function describeType(value: unknown): string {
  if (value === undefined || value === null) return `missing (${String(value)})`;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Refuses keys or an active id that are not strings (an unset environment variable read with
 * `process.env.X!`) with a message naming what to set, instead of a TypeError.
 */
function checkEnvKeyOptionTypes(
  options: EnvKeyProviderOptions,
  names: { keys: string; activeKeyId: string },
): void {
  const keys: unknown = options.keys;
  const validKeys =
    typeof keys === 'string' ||
    (Array.isArray(keys) && keys.every((entry) => typeof entry === 'string'));
  if (!validKeys) {
    const found = Array.isArray(keys) ? 'an array with a non-string entry' : describeType(keys);
    throw new ConfigurationError(
      `${names.keys} is ${found}: set it to 'id:base64key,...' (comma-separated; each key 32 random bytes, e.g. k1:$(openssl rand -base64 32))`,
    );
  }
  const activeKeyId: unknown = options.activeKeyId;
  if (typeof activeKeyId !== 'string' || activeKeyId === '') {
    throw new ConfigurationError(
      `${names.activeKeyId} is ${activeKeyId === '' ? 'empty' : describeType(activeKeyId)}: set it to the id of the key in ${names.keys} that wraps new data keys`,
    );
  }
}

/**
 * Root keys held in process memory, read from configuration (`SESSION_KEYS`,
 * `SESSION_ACTIVE_KEY` in the demo). Data keys are wrapped with AES-256-GCM under an HKDF
 * subkey of the root key, bound to tenant, session and data-key id. For production, keep root
 * keys in AWS KMS or Vault instead.
 *
 * @publicApi
 */
export class EnvKeyProvider implements KeyProvider {
  readonly name = 'env';
  private readonly rootKeys = new LocalRootKeys();
  private readonly activeId: string;

  constructor(options: EnvKeyProviderOptions) {
    const names = options.sourceNames ?? { keys: 'keys', activeKeyId: 'activeKeyId' };
    checkEnvKeyOptionTypes(options, names);
    const rootKeys = parseEnvRootKeys(options.keys, names.keys);
    if (!rootKeys.has(options.activeKeyId)) {
      throw new ConfigurationError(
        `No active key '${options.activeKeyId}' in ${names.keys}; add it or set ${names.activeKeyId} to one of: ${[...rootKeys.keys()].join(', ')}`,
      );
    }
    for (const [id, key] of rootKeys) this.rootKeys.add(id, key);
    this.activeId = options.activeKeyId;
  }

  activeKekId(): string {
    return KEK_ID_PREFIX + this.activeId;
  }

  async generateDataKey(context: DataKeyContext): Promise<GeneratedDataKey> {
    const plaintext = randomBytes(32);
    const wrappedKey = this.rootKeys.wrap(this.activeId, plaintext, context);
    return { plaintext, wrapped: { kekId: this.activeKekId(), wrappedKey } };
  }

  async unwrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<Buffer> {
    const id = wrapped.kekId.startsWith(KEK_ID_PREFIX)
      ? wrapped.kekId.slice(KEK_ID_PREFIX.length)
      : '';
    if (!this.rootKeys.has(id)) {
      throw new ConfigurationError(
        `Data key ${context.dekId} was wrapped by root key '${wrapped.kekId}', which is not configured; add that key back to the key list (it may be inactive) to read this session`,
      );
    }
    return this.rootKeys.unwrap(id, wrapped.wrappedKey, context);
  }

  async rewrapDataKey(wrapped: WrappedDataKey, context: DataKeyContext): Promise<WrappedDataKey> {
    const plaintext = await this.unwrapDataKey(wrapped, context);
    try {
      const wrappedKey = this.rootKeys.wrap(this.activeId, plaintext, context);
      return { kekId: this.activeKekId(), wrappedKey };
    } finally {
      plaintext.fill(0);
    }
  }
}
