import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EnvKeyProvider,
  IntegrityError,
  type EnvKeyProviderOptions,
} from '../../src/index.js';
import { newRootKeyEntry } from '../support/test-keys.js';
import { thrownBy } from '../support/thrown-by.js';

const context = { tenantId: 't', sessionId: 's', dekId: '3f1c2a4e-8b7d-4c6e-9f0a-1b2c3d4e5f60' };
const named = { keys: 'SESSION_KEYS', activeKeyId: 'SESSION_ACTIVE_KEY' };

function refusal(keys: string | string[], activeKeyId = 'k1'): ConfigurationError {
  try {
    new EnvKeyProvider({ keys, activeKeyId, sourceNames: named });
  } catch (error) {
    if (error instanceof ConfigurationError) return error;
    throw error;
  }
  throw new Error('expected the provider to refuse the configuration');
}

describe('EnvKeyProvider configuration', () => {
  it('accepts several id:base64 keys and wraps under the active one', async () => {
    const provider = new EnvKeyProvider({
      keys: `${newRootKeyEntry('k1')},${newRootKeyEntry('k2')}`,
      activeKeyId: 'k2',
    });
    const generated = await provider.generateDataKey(context);
    expect(generated.wrapped.kekId).toBe('env:k2');
    expect(generated.plaintext).toHaveLength(32);
  });

  it('accepts keys given as an array', () => {
    expect(
      () =>
        new EnvKeyProvider({
          keys: [newRootKeyEntry('a'), newRootKeyEntry('b')],
          activeKeyId: 'a',
        }),
    ).not.toThrow();
  });

  it('refuses an unknown active id and lists the ids it has', () => {
    const error = refusal(newRootKeyEntry('k1'), 'k2');
    expect(error.message).toBe(
      "No active key 'k2' in SESSION_KEYS; add it or set SESSION_ACTIVE_KEY to one of: k1",
    );
  });

  it('refuses a password', () => {
    expect(refusal('k1:correct horse battery staple').message).toMatch(
      /not 32 bytes of base64.*openssl rand -base64 32/,
    );
  });

  it('refuses a short key', () => {
    expect(refusal(`k1:${randomBytes(16).toString('base64')}`).message).toMatch(/not 32 bytes/);
  });

  it('refuses a base64-encoded passphrase of 32 characters', () => {
    const typed = Buffer.from('my-super-secret-password-1234567').toString('base64');
    expect(refusal(`k1:${typed}`).message).toMatch(/does not look random/);
  });

  it('refuses a key of repeated bytes', () => {
    expect(refusal(`k1:${Buffer.alloc(32, 7).toString('base64')}`).message).toMatch(
      /does not look random/,
    );
  });

  it('refuses an empty key list, a missing id and a duplicate id', () => {
    expect(refusal('').message).toMatch(/No root keys in SESSION_KEYS/);
    expect(refusal(`:${randomBytes(32).toString('base64')}`).message).toMatch(/no valid id/);
    expect(refusal(`${newRootKeyEntry('k1')},${newRootKeyEntry('k1')}`).message).toMatch(
      /appears twice/,
    );
  });

  it('never puts key material in its messages', () => {
    const secret = randomBytes(16).toString('base64');
    expect(refusal(`k1:${secret}`).message).not.toContain(secret);
  });
});

/** What the provider throws for keys or an active id of the wrong type. */
const refusalOf = (options: { keys?: unknown; activeKeyId?: unknown }) =>
  thrownBy(() => new EnvKeyProvider({ sourceNames: named, ...options } as EnvKeyProviderOptions));

describe('EnvKeyProvider options of the wrong type (an unset variable read with `!`)', () => {
  it('names the keys source when keys are undefined, instead of a TypeError', () => {
    const error = refusalOf({ keys: undefined, activeKeyId: 'k1' });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      "SESSION_KEYS is missing (undefined): set it to 'id:base64key,...' (comma-separated; each key 32 random bytes, e.g. k1:$(openssl rand -base64 32))",
    );
  });

  it('names the active key source when the active id is undefined', () => {
    const error = refusalOf({ keys: newRootKeyEntry('k1'), activeKeyId: undefined });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      'SESSION_ACTIVE_KEY is missing (undefined): set it to the id of the key in SESSION_KEYS that wraps new data keys',
    );
  });

  it('describes other wrong types by their type only', () => {
    expect((refusalOf({ keys: 42, activeKeyId: 'k1' }) as Error).message).toMatch(
      /^SESSION_KEYS is a number: /,
    );
    expect(
      (refusalOf({ keys: [newRootKeyEntry('k1'), 7], activeKeyId: 'k1' }) as Error).message,
    ).toMatch(/^SESSION_KEYS is an array with a non-string entry: /);
    expect((refusalOf({ keys: newRootKeyEntry('k1'), activeKeyId: '' }) as Error).message).toMatch(
      /^SESSION_ACTIVE_KEY is empty: /,
    );
  });
});

describe('EnvKeyProvider wrapping', () => {
  it('unwraps what it wrapped, with the same context', async () => {
    const provider = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    const { plaintext, wrapped } = await provider.generateDataKey(context);
    expect(await provider.unwrapDataKey(wrapped, context)).toEqual(plaintext);
  });

  it('refuses to unwrap under another session context', async () => {
    const provider = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    const { wrapped } = await provider.generateDataKey(context);
    await expect(
      provider.unwrapDataKey(wrapped, { ...context, sessionId: 'other' }),
    ).rejects.toBeInstanceOf(IntegrityError);
  });

  it('keeps unwrapping with a retired key after the active key changes', async () => {
    const k1 = newRootKeyEntry('k1');
    const before = new EnvKeyProvider({ keys: k1, activeKeyId: 'k1' });
    const { plaintext, wrapped } = await before.generateDataKey(context);
    const after = new EnvKeyProvider({ keys: `${k1},${newRootKeyEntry('k2')}`, activeKeyId: 'k2' });
    expect(await after.unwrapDataKey(wrapped, context)).toEqual(plaintext);
  });

  it('says which root key is missing when a wrapped key names one no longer configured', async () => {
    const { wrapped } = await new EnvKeyProvider({
      keys: newRootKeyEntry('old'),
      activeKeyId: 'old',
    }).generateDataKey(context);
    const current = new EnvKeyProvider({ keys: newRootKeyEntry('new'), activeKeyId: 'new' });
    await expect(current.unwrapDataKey(wrapped, context)).rejects.toThrow(
      /root key 'env:old', which is not configured/,
    );
  });
});
