import crypto, { randomUUID } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  type DataKeyContext,
} from '../../src/index.js';
import {
  VaultTransitKeyProvider,
  type VaultTransitKeyProviderOptions,
} from '../../src/keys/providers/vault/transit-key-provider.js';
import { rejectionOf } from '../support/thrown-by.js';

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

/**
 * The Buffers `crypto.randomBytes` returned while `action` ran. The provider imports
 * `randomBytes` by name, so the spy is pushed into node:crypto's ESM exports as well.
 */
async function randomBuffersMadeBy(action: () => Promise<unknown>): Promise<Buffer[]> {
  const made: Buffer[] = [];
  const original = crypto.randomBytes;
  crypto.randomBytes = (size: number) => {
    const bytes = original(size);
    made.push(bytes);
    return bytes;
  };
  syncBuiltinESMExports();
  try {
    await action();
  } finally {
    crypto.randomBytes = original;
    syncBuiltinESMExports();
  }
  return made;
}

/** How often the provider re-reads its key over rewraps at these times after the start. */
async function rewrapsAt(offsetsMs: number[]): Promise<number> {
  let reads = 0;
  // The clock stands still through init, so offsets count from its read of the key exactly,
  // however busy the machine.
  const start = Date.now();
  const clock = vi.spyOn(Date, 'now').mockReturnValue(start);
  const { provider } = await providerOn({
    [KEY_PATH]: () => {
      reads++;
      return keyAnswer();
    },
    [`transit/rewrap/${KEY}`]: () => ({ data: { ciphertext: CIPHERTEXT } }),
  });
  for (const offset of offsetsMs) {
    clock.mockReturnValue(start + offset);
    await provider.rewrapDataKey(wrappedV1, contextFor());
  }
  return reads - 1;
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

  it('refuses refreshActiveKey() before init() with the shared error', async () => {
    const provider = new VaultTransitKeyProvider({
      endpoint: 'http://127.0.0.1:8200',
      auth: { method: 'token', token: 't' },
      keyName: KEY,
    });
    const error = await rejectionOf(() => provider.refreshActiveKey());
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(
      'vault-transit key provider: refreshActiveKey() was called before init(); ',
    );
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

  it('zeroes the data key it made when Vault refuses to encrypt it', async () => {
    const { provider } = await providerOn({
      [`transit/encrypt/${KEY}`]: () => {
        throw refusal(500, ['internal error']);
      },
    });
    const made = await randomBuffersMadeBy(async () => {
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    });
    const keys = made.filter((bytes) => bytes.length === 32);
    expect(keys).toHaveLength(1);
    expect(zeroed(keys[0])).toBe(true);
  });

  it.each([
    ['no key name', {}],
    ['a key name that is not a string', { keyName: 5 }],
    ['a key name with a slash', { keyName: 'other/key' }],
    ['a key name over 128 characters', { keyName: 'k'.repeat(129) }],
  ])('refuses options with %s', (_, keyName) => {
    const options = {
      endpoint: 'http://127.0.0.1:8200',
      auth: { method: 'token', token: 't' },
      ...keyName,
    } as unknown as VaultTransitKeyProviderOptions;
    expect(() => new VaultTransitKeyProvider(options)).toThrow(ConfigurationError);
  });

  it.each([
    ['leading text', `junk ${CIPHERTEXT}`],
    ['trailing text', `${CIPHERTEXT} junk`],
    ['an array', [CIPHERTEXT]],
  ])(
    'refuses an encrypt answer whose ciphertext has %s, storing nothing',
    async (_, ciphertext) => {
      const { provider } = await providerOn({
        [`transit/encrypt/${KEY}`]: () => ({ data: { ciphertext } }),
      });
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    },
  );

  it('reads key versions of more than one digit', async () => {
    const { provider } = await providerOn({
      [KEY_PATH]: () => keyAnswer({ latest_version: 12 }),
      [`transit/encrypt/${KEY}`]: () => ({ data: { ciphertext: 'vault:v12:AAAA' } }),
    });
    const { wrapped } = await provider.generateDataKey(contextFor());
    expect(wrapped.kekId).toBe(`vault-transit:transit/${KEY}:v12`);
  });

  it.each([
    ['version 0', `vault-transit:transit/${KEY}:v0`, 'vault:v0:AAAA'],
    ['another transit key', `vault-transit:transit/other:v1`, CIPHERTEXT],
  ])('refuses a wrapped key of %s without calling Vault', async (_, kekId, ciphertext) => {
    const { provider, calls } = await providerOn({});
    const before = calls.length;
    const error = await rejectionOf(() =>
      provider.unwrapDataKey({ kekId, wrappedKey: Buffer.from(ciphertext) }, contextFor()),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(calls.slice(before)).toEqual([]);
  });

  it('refuses a ciphertext of another version than its key id names, without calling Vault', async () => {
    const { provider, calls } = await providerOn({});
    const before = calls.length;
    const error = await rejectionOf(() =>
      provider.unwrapDataKey(
        { kekId: `vault-transit:transit/${KEY}:v1`, wrappedKey: Buffer.from('vault:v2:AAAA') },
        contextFor(),
      ),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(calls.slice(before)).toEqual([]);
  });

  it('reports a 400 to an encrypt as a configuration problem, not tampering', async () => {
    const { provider } = await providerOn({
      [`transit/encrypt/${KEY}`]: () => {
        throw refusal(400, ['invalid request']);
      },
    });
    const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(error).toBeInstanceOf(ConfigurationError);
  });

  it('reports a 404 to a decrypt as a configuration problem, not tampering', async () => {
    const { provider } = await providerOn({
      [`transit/decrypt/${KEY}`]: () => {
        throw refusal(404, []);
      },
    });
    const error = await rejectionOf(() => provider.unwrapDataKey(wrappedV1, contextFor()));
    expect(error).toBeInstanceOf(ConfigurationError);
  });

  describe('rewrap re-reads the key at most once a second', () => {
    it('not at all within a second of the last read', async () => {
      expect(await rewrapsAt([0, 500, 999])).toBe(0);
    });

    it('again once a second has passed, each time', async () => {
      expect(await rewrapsAt([1_000, 1_500, 2_000, 3_100])).toBe(3);
    });
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
