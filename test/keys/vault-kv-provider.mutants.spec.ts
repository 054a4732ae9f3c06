import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  KeyProviderUnavailableError,
  VaultKvKeyProvider,
  type DataKeyContext,
  type VaultKvKeyProviderOptions,
} from '../../src/index.js';

/*
 * VaultKvKeyProvider against a scripted node-vault client: metadata shapes and version states
 * the test server does not produce, and the option checks. Each test pins one check whose
 * removal StrykerJS showed no other test noticing.
 */

const SECRET = 'nest-sessions/root-key';
const METADATA = `secret/metadata/${SECRET}`;
const rootKey = () => randomBytes(32).toString('base64');

type Answer = () => unknown;

/** A node-vault client stand-in answering each path from `answers`. */
function scriptedClient(answers: Record<string, Answer>) {
  const answer = (path: string) => {
    const script = answers[path];
    if (!script) return Promise.reject(new Error(`unscripted ${path}`));
    try {
      return Promise.resolve(script());
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return { token: '', read: answer, write: answer };
}

const notFound = () => {
  throw Object.assign(new Error('Status 404'), {
    response: { statusCode: 404, body: { errors: [] } },
  });
};

function providerOn(
  answers: Record<string, Answer>,
  options: Partial<VaultKvKeyProviderOptions> = {},
) {
  return new VaultKvKeyProvider({
    client: scriptedClient({
      'auth/token/lookup-self': () => ({ data: { ttl: 0, renewable: false } }),
      ...answers,
    }) as unknown as VaultKvKeyProviderOptions['client'],
    auth: { method: 'token', token: 'test-token' },
    secretPath: SECRET,
    ...options,
  });
}

const version = (n: number, key = rootKey()) => ({
  [`secret/data/${SECRET}?version=${n}`]: () => ({ data: { data: { key } } }),
});

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

async function rejectionOf(action: () => Promise<unknown>): Promise<Error> {
  try {
    await action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

describe('VaultKvKeyProvider against a scripted Vault client', () => {
  describe('options', () => {
    it.each<[string, Partial<VaultKvKeyProviderOptions>]>([
      ['a mountPath with a leading slash', { mountPath: '/secret' }],
      ['a secretPath with a trailing slash', { secretPath: 'nest-sessions/' }],
      ['a field with a space', { field: 'root key' }],
      ['a negative keyCacheTtlMs', { keyCacheTtlMs: -1 }],
      ['a keyCacheTtlMs that is not a number', { keyCacheTtlMs: Number.NaN }],
    ])('refuses %s', (_, overrides) => {
      expect(() => providerOn({}, overrides)).toThrow(ConfigurationError);
    });

    it('takes a keyCacheTtlMs of 0', () => {
      expect(() => providerOn({}, { keyCacheTtlMs: 0 })).not.toThrow();
    });
  });

  it('counts no logins before init()', () => {
    expect(providerOn({}).connectionStats()).toEqual({ logins: 0, renewals: 0, failedRenewals: 0 });
  });

  it('refuses to be used before init()', async () => {
    const provider = providerOn({});
    expect(() => provider.activeKekId()).toThrow(ConfigurationError);
    expect(await rejectionOf(() => provider.generateDataKey(contextFor()))).toBeInstanceOf(
      ConfigurationError,
    );
  });

  it('reports metadata without versions as KeyProviderUnavailableError', async () => {
    const provider = providerOn({ [METADATA]: () => ({ data: { current_version: 1 } }) });
    const error = await rejectionOf(() => provider.init());
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect(error.message).toMatch(/lists no versions/);
  });

  it('refuses at init a secret whose every version is deleted or destroyed', async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    const provider = providerOn({
      [METADATA]: () => ({
        data: {
          current_version: 2,
          versions: { 1: { deletion_time: past, destroyed: false }, 2: { destroyed: true } },
        },
      }),
      ...version(1),
      ...version(2),
    });
    const error = await rejectionOf(() => provider.init());
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/every version of Vault secret .* is deleted or destroyed/);
  });

  it.each([
    ['a deletion scheduled in the future', new Date(Date.now() + 3_600_000).toISOString()],
    ['an empty deletion time', ''],
  ])('keeps the current version with %s', async (_, deletionTime) => {
    const provider = providerOn({
      [METADATA]: () => ({
        data: { current_version: 2, versions: { 1: {}, 2: { deletion_time: deletionTime } } },
      }),
      ...version(1),
      ...version(2),
    });
    await provider.init();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v2`);
  });

  it('makes the newest live version active when the current one is gone', async () => {
    const provider = providerOn({
      [METADATA]: () => ({
        data: { current_version: 3, versions: { 1: {}, 2: {}, 3: {} } },
      }),
      ...version(1),
      ...version(2),
      [`secret/data/${SECRET}?version=3`]: notFound,
    });
    await provider.init();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v2`);
  });

  it('zeroes the unwrapped data key once it is rewrapped under the active version', async () => {
    const provider = providerOn({
      [METADATA]: () => ({ data: { current_version: 1, versions: { 1: {} } } }),
      ...version(1),
    });
    await provider.init();
    const context = contextFor();
    const generated = await provider.generateDataKey(context);
    // Keep the buffer the rewrap unwraps into, to look at it afterwards.
    const unwrap = provider.unwrapDataKey.bind(provider);
    let unwrapped: Buffer | undefined;
    provider.unwrapDataKey = async (wrapped, unwrapContext) =>
      (unwrapped = await unwrap(wrapped, unwrapContext));

    const rewrapped = await provider.rewrapDataKey(generated.wrapped, context);

    expect(unwrapped?.equals(Buffer.alloc(32))).toBe(true);
    expect((await unwrap(rewrapped, context)).equals(generated.plaintext)).toBe(true);
  });
});
