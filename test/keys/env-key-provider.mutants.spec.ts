import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigurationError, EnvKeyProvider, type DataKeyContext } from '../../src/index.js';
import { parseEnvRootKeys } from '../../src/keys/providers/env-key-provider.js';
import { LocalRootKeys, parseRootKey } from '../../src/keys/providers/local-root-keys.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/*
 * The env provider and the local root keys it shares with the Vault KV provider: checks whose
 * removal StrykerJS showed no other test noticing (key parsing bounds, zeroing, default names).
 */

const context: DataKeyContext = {
  tenantId: 't',
  sessionId: 's',
  dekId: '3f1c2a4e-8b7d-4c6e-9f0a-1b2c3d4e5f60',
};

/** base64 of 32 bytes, as a root key is written. */
const encode = (bytes: number[]) => Buffer.from(bytes).toString('base64');
const zeroed = (bytes: Uint8Array) => bytes.every((byte) => byte === 0);

describe('EnvKeyProvider and local root keys, beyond the configuration tests', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("is named 'env'", () => {
    expect(new EnvKeyProvider({ keys: newRootKeyEntry('k1'), activeKeyId: 'k1' }).name).toBe('env');
  });

  it('takes keys with spaces around them', () => {
    const keys = ` ${newRootKeyEntry('k1')} , ${newRootKeyEntry('k2')} `;
    expect(new EnvKeyProvider({ keys, activeKeyId: 'k2' }).activeKekId()).toBe('env:k2');
  });

  it('refuses a key written without an id as having no valid id', () => {
    // Base64 without '+' or '/' whose text minus its last character would pass as an id.
    const bare = encode(Array.from({ length: 32 }, (_, index) => 0x80 + index));
    expect(bare).toMatch(/^[A-Za-z0-9]{43}=$/);
    expect(() => new EnvKeyProvider({ keys: bare, activeKeyId: 'k1' })).toThrow(/has no valid id/);
  });

  it.each([
    ['a slash', 'bad/id'],
    ['a space', 'bad id'],
    ['more than 64 characters', 'k'.repeat(65)],
  ])('refuses a key id with %s', (_, id) => {
    const keys = newRootKeyEntry(id);
    expect(() => new EnvKeyProvider({ keys, activeKeyId: id })).toThrow(/has no valid id/);
  });

  it.each([
    ['keys', { keys: undefined, activeKeyId: 'k1' }, /^keys is missing \(undefined\)/],
    [
      'activeKeyId',
      { keys: newRootKeyEntry('k1'), activeKeyId: undefined },
      /^activeKeyId is missing/,
    ],
  ])('names the %s option by default when it is missing', (_, options, message) => {
    expect(
      () =>
        new EnvKeyProvider(options as unknown as ConstructorParameters<typeof EnvKeyProvider>[0]),
    ).toThrow(message);
  });

  it.each([
    ['an object', {}, /^SESSION_KEYS is an object:/],
    ['a number', 5, /^SESSION_KEYS is a number:/],
    ['null', null, /^SESSION_KEYS is missing \(null\):/],
  ])('describes keys given as %s by their type only', (_, keys, message) => {
    expect(
      () =>
        new EnvKeyProvider({
          keys: keys as unknown as string,
          activeKeyId: 'k1',
          sourceNames: { keys: 'SESSION_KEYS', activeKeyId: 'SESSION_ACTIVE_KEY' },
        }),
    ).toThrow(message);
  });

  it("names 'keys' when parseEnvRootKeys is given no source name", () => {
    expect(() => parseEnvRootKeys(' , ')).toThrow(/^No root keys in keys;/);
  });

  it('zeroes the data key it unwrapped to rewrap it', async () => {
    const provider = new EnvKeyProvider({
      keys: `${newRootKeyEntry('k1')},${newRootKeyEntry('k2')}`,
      activeKeyId: 'k1',
    });
    const generated = await provider.generateDataKey(context);
    const unwrapped: Buffer[] = [];
    const unwrap = provider.unwrapDataKey.bind(provider);
    vi.spyOn(provider, 'unwrapDataKey').mockImplementation(async (...args) => {
      const key = await unwrap(...args);
      unwrapped.push(key);
      return key;
    });
    await provider.rewrapDataKey(generated.wrapped, context);
    expect(unwrapped).toHaveLength(1);
    expect(zeroed(unwrapped[0])).toBe(true);
  });

  describe('parseRootKey', () => {
    it('refuses a password with a ConfigurationError', () => {
      expect(() => parseRootKey('k1', 'hunter2', 'SESSION_KEYS')).toThrow(ConfigurationError);
    });

    it('zeroes a key it refuses as not random', () => {
      const encoded = encode(Array.from({ length: 32 }, () => 0xaa));
      const from = vi.spyOn(Buffer, 'from');
      expect(() => parseRootKey('k1', encoded, 'SESSION_KEYS')).toThrow(/does not look random/);
      const decoded = from.mock.results
        .map((result) => result.value as unknown)
        .filter((value): value is Buffer => Buffer.isBuffer(value) && value.length === 32);
      expect(decoded).toHaveLength(1);
      expect(zeroed(decoded[0])).toBe(true);
    });

    it('refuses 32 distinct printable bytes that include the space', () => {
      const printable = Array.from({ length: 32 }, (_, index) => 0x20 + index);
      expect(() => parseRootKey('k1', encode(printable), 'X')).toThrow(/does not look random/);
    });

    it('takes 32 distinct bytes ending with DEL (0x7f), which is not printable', () => {
      const bytes = Array.from({ length: 32 }, (_, index) => 0x60 + index);
      expect(parseRootKey('k1', encode(bytes), 'X')).toHaveLength(32);
    });

    it('takes a key with exactly 16 distinct byte values', () => {
      const bytes = Array.from({ length: 32 }, (_, index) => 0x80 + (index % 16));
      expect(parseRootKey('k1', encode(bytes), 'X')).toHaveLength(32);
    });
  });

  describe('LocalRootKeys', () => {
    it('zeroes the root key once its wrapping subkey is derived', () => {
      const rootKey = randomBytes(32);
      new LocalRootKeys().add('k1', rootKey);
      expect(zeroed(rootKey)).toBe(true);
    });

    it('refuses to wrap or unwrap under a key it does not hold', () => {
      const keys = new LocalRootKeys();
      keys.add('k1', randomBytes(32));
      expect(() => keys.wrap('k2', randomBytes(32), context)).toThrow(/No local root key 'k2'/);
      expect(() => keys.unwrap('k2', randomBytes(60), context)).toThrow(/No local root key 'k2'/);
    });
  });
});
