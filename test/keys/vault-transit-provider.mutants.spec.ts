import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  VaultTransitKeyProvider,
  type DataKeyContext,
  type VaultTransitKeyProviderOptions,
} from '../../src/index.js';

/*
 * VaultTransitKeyProvider against a scripted node-vault client: answers a real Vault never
 * gives (a short data key, no version, a ciphertext of the wrong shape) and refusals the test
 * server does not produce. Each test pins one check whose removal StrykerJS showed no other
 * test noticing.
 */

const KEY = 'sessions';
const KEY_PATH = `transit/keys/${KEY}`;
const CIPHERTEXT = 'vault:v1:AAAAbbbbCCCC';

type Answer = (body: unknown) => unknown;

/** node-vault's error for an HTTP refusal. */
function refusal(status: number, errors: string[]): Error {
  return Object.assign(new Error(`Status ${status}`), {
    response: { statusCode: status, body: { errors } },
  });
}

/** A node-vault client stand-in answering each path from `answers` (a throw is a refusal). */
function scriptedClient(answers: Record<string, Answer>) {
  const calls: string[] = [];
  const answer = (method: string, path: string, body: unknown) => {
    calls.push(`${method} ${path}`);
    const script = answers[path];
    if (!script) return Promise.reject(new Error(`unscripted ${method} ${path}`));
    try {
      return Promise.resolve(script(body));
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return {
    calls,
    client: {
      token: '',
      read: (path: string) => answer('GET', path, undefined),
      write: (path: string, body: unknown) => answer('POST', path, body),
    },
  };
}

const keyAnswer = (data: Record<string, unknown> = {}) => ({
  data: { derived: true, supports_encryption: true, latest_version: 1, ...data },
});

async function providerOn(
  answers: Record<string, Answer>,
  options: Partial<VaultTransitKeyProviderOptions> = {},
) {
  const scripted = scriptedClient({
    'auth/token/lookup-self': () => ({ data: { ttl: 0, renewable: false } }),
    [KEY_PATH]: () => keyAnswer(),
    ...answers,
  });
  const provider = new VaultTransitKeyProvider({
    client: scripted.client as unknown as VaultTransitKeyProviderOptions['client'],
    auth: { method: 'token', token: 'test-token' },
    keyName: KEY,
    ...options,
  });
  await provider.init();
  return { provider, calls: scripted.calls };
}

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});
const wrappedV1 = { kekId: `vault-transit:transit/${KEY}:v1`, wrappedKey: Buffer.from(CIPHERTEXT) };
const zeroed = (bytes: Uint8Array) => bytes.every((byte) => byte === 0);

async function rejectionOf(action: () => Promise<unknown>): Promise<Error> {
  try {
    await action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** The 32-byte Buffers `Buffer.from` returned while `action` ran. */
async function keyBuffersMadeBy(action: () => Promise<unknown>): Promise<Buffer[]> {
  const from = vi.spyOn(Buffer, 'from');
  try {
    await action();
  } catch {
    // The caller asserts the failure separately.
  }
  const made = from.mock.results
    .map((result) => result.value as unknown)
    .filter((value): value is Buffer => Buffer.isBuffer(value) && value.length === 32);
  from.mockRestore();
  return made;
}

describe('VaultTransitKeyProvider against a scripted Vault client', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('refuses activeKekId() before init()', () => {
    const provider = new VaultTransitKeyProvider({
      endpoint: 'http://127.0.0.1:8200',
      auth: { method: 'token', token: 't' },
      keyName: KEY,
    });
    expect(() => provider.activeKekId()).toThrow(ConfigurationError);
  });

  it('refuses at init a transit key that cannot encrypt', async () => {
    const error = await rejectionOf(() =>
      providerOn({ [KEY_PATH]: () => keyAnswer({ supports_encryption: false, type: 'ed25519' }) }),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/cannot encrypt \(type ed25519\)/);
  });

  it.each([
    ['no latest_version', undefined],
    ['latest_version 0', 0],
  ])('reports a key answer with %s as KeyProviderUnavailableError', async (_, latest) => {
    const error = await rejectionOf(() =>
      providerOn({ [KEY_PATH]: () => keyAnswer({ latest_version: latest }) }),
    );
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect(error.message).toMatch(/has no latest_version/);
  });

  describe('datakey endpoint', () => {
    const datakey = `transit/datakey/plaintext/${KEY}`;

    it.each([
      ['a 16-byte key', Buffer.alloc(16, 7).toString('base64')],
      ['no key', undefined],
    ])('refuses an answer with %s, zeroing it', async (_, plaintext) => {
      const { provider } = await providerOn(
        { [datakey]: () => ({ data: { plaintext, ciphertext: CIPHERTEXT } }) },
        { useDatakeyEndpoint: true },
      );
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(KeyProviderUnavailableError);
      expect(error.message).toMatch(/holds no 256-bit key/);
    });

    it('zeroes a short key it refuses', async () => {
      const { provider } = await providerOn(
        {
          [datakey]: () => ({
            data: { plaintext: Buffer.alloc(16, 7).toString('base64'), ciphertext: CIPHERTEXT },
          }),
        },
        { useDatakeyEndpoint: true },
      );
      const from = vi.spyOn(Buffer, 'from');
      await expect(provider.generateDataKey(contextFor())).rejects.toThrow(/256-bit/);
      const decoded = from.mock.results
        .map((result) => result.value as unknown)
        .filter((value): value is Buffer => Buffer.isBuffer(value) && value.length === 16);
      expect(decoded).toHaveLength(1);
      expect(zeroed(decoded[0])).toBe(true);
    });

    it('zeroes the data key when the answer holds no valid ciphertext', async () => {
      const { provider } = await providerOn(
        {
          [datakey]: () => ({
            data: { plaintext: Buffer.alloc(32, 7).toString('base64'), ciphertext: 'not vault' },
          }),
        },
        { useDatakeyEndpoint: true },
      );
      const made = await keyBuffersMadeBy(async () => {
        const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
        expect(error).toBeInstanceOf(KeyProviderUnavailableError);
        expect(error.message).toMatch(/datakey answer .* holds no vault:v<N>: ciphertext/);
      });
      expect(made).toHaveLength(1);
      expect(zeroed(made[0])).toBe(true);
    });
  });

  it.each([
    ['a 16-byte key', Buffer.alloc(16, 7).toString('base64')],
    ['no key', undefined],
  ])('refuses a decrypt answer with %s as IntegrityError, zeroing it', async (_, plaintext) => {
    const { provider } = await providerOn({
      [`transit/decrypt/${KEY}`]: () => ({ data: { plaintext } }),
    });
    const from = vi.spyOn(Buffer, 'from');
    const error = await rejectionOf(() => provider.unwrapDataKey(wrappedV1, contextFor()));
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.message).toMatch(/decrypted to something other than a 32-byte key/);
    const decoded = from.mock.results
      .map((result) => result.value as unknown)
      .filter((value): value is Buffer => Buffer.isBuffer(value) && value.length === 16);
    expect(decoded.every(zeroed)).toBe(true);
    expect(decoded).toHaveLength(plaintext === undefined ? 0 : 1);
  });

  it('refuses a rewrap answer without a vault ciphertext', async () => {
    const { provider } = await providerOn({
      [`transit/rewrap/${KEY}`]: () => ({ data: { ciphertext: 'plain text' } }),
    });
    const error = await rejectionOf(() => provider.rewrapDataKey(wrappedV1, contextFor()));
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect(error.message).toMatch(/rewrap answer .* holds no vault:v<N>: ciphertext/);
  });

  it.each([
    [
      'a version newer than Vault knows',
      ['ciphertext version is too new'],
      KeyProviderUnavailableError,
    ],
    ['a missing transit key', ['encryption key not found'], ConfigurationError],
  ])('maps a decrypt refusal for %s', async (_, errors, errorClass) => {
    const { provider } = await providerOn({
      [`transit/decrypt/${KEY}`]: () => {
        throw refusal(400, errors);
      },
    });
    const error = await rejectionOf(() => provider.unwrapDataKey(wrappedV1, contextFor()));
    expect(error).toBeInstanceOf(errorClass);
  });

  it('re-reads a stale key once for concurrent rewraps', async () => {
    let reads = 0;
    const { provider } = await providerOn({
      [KEY_PATH]: () => {
        reads++;
        return keyAnswer({ latest_version: reads });
      },
      [`transit/rewrap/${KEY}`]: () => ({ data: { ciphertext: 'vault:v2:AAAA' } }),
    });
    expect(reads).toBe(1);
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now + 5_000);
    await Promise.all([
      provider.rewrapDataKey(wrappedV1, contextFor()),
      provider.rewrapDataKey(wrappedV1, contextFor()),
    ]);
    expect(reads).toBe(2);
    expect(provider.activeKekId()).toBe(`vault-transit:transit/${KEY}:v2`);
  });
});
