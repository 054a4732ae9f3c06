import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  KeyProviderUnavailableError,
  type DataKeyContext,
} from '../../src/index.js';
import {
  VaultKvKeyProvider,
  type VaultKvKeyProviderOptions,
} from '../../src/keys/providers/vault/kv-key-provider.js';
import { rejectionOf } from '../support/thrown-by.js';

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
    requests.push(path);
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

/** Every path the scripted clients were asked for. */
const requests: string[] = [];
const requestsTo = (path: string) => requests.filter((request) => request === path).length;

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

const versionPath = (n: number) => `secret/data/${SECRET}?version=${n}`;
/** A metadata answer listing `versions`. */
const metadataOf = (versions: unknown) => () => ({ data: { current_version: 1, versions } });

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

describe('VaultKvKeyProvider against a scripted Vault client', () => {
  afterEach(() => {
    requests.length = 0;
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

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

  it('refuses refreshActiveKey() before init() with the shared error', async () => {
    const error = await rejectionOf(() => providerOn({}).refreshActiveKey());
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(
      'vault-kv key provider: refreshActiveKey() was called before init(); ',
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

  it('stops renewing its token once closed', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const renewable = {
      'auth/token/lookup-self': () => ({ data: { ttl: 60, creation_ttl: 60, renewable: true } }),
      'auth/token/renew-self': () => ({ auth: { lease_duration: 60, renewable: true } }),
      [METADATA]: metadataOf({ 1: {} }),
      ...version(1),
    };
    const open = providerOn(renewable);
    const closed = providerOn(renewable);
    await open.init();
    await closed.init();
    await closed.close();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(open.connectionStats().renewals).toBeGreaterThan(0);
    expect(closed.connectionStats().renewals).toBe(0);
    await open.close();
  });

  it('forgets a loaded version that the metadata no longer lists', async () => {
    const key = rootKey();
    const writer = providerOn({ [METADATA]: metadataOf({ 1: {} }), ...version(1, key) });
    await writer.init();
    const context = contextFor();
    const { wrapped, plaintext } = await writer.generateDataKey(context);
    let versions: Record<string, unknown> = { 1: {}, 2: {} };
    const reader = providerOn({
      [METADATA]: () => ({ data: { current_version: 2, versions } }),
      ...version(1, key),
      ...version(2),
    });
    await reader.init();
    const readsBefore = requestsTo(versionPath(1));
    versions = { 2: {} };
    await reader.refreshActiveKey();
    expect((await reader.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
    // Version 1 was no longer held, so it was read again on demand.
    expect(requestsTo(versionPath(1)) - readsBefore).toBe(1);
  });

  it('reads each live version once, not again on every refresh', async () => {
    const provider = providerOn({ [METADATA]: metadataOf({ 1: {} }), ...version(1) });
    await provider.init();
    await provider.refreshActiveKey();
    await provider.refreshActiveKey();
    expect(requestsTo(versionPath(1))).toBe(1);
  });

  it('reads a version it lacks once for concurrent unwraps', async () => {
    const key = rootKey();
    const writer = providerOn({ [METADATA]: metadataOf({ 1: {} }), ...version(1, key) });
    await writer.init();
    const contexts = [contextFor(), contextFor()];
    const wrapped = await Promise.all(contexts.map((context) => writer.generateDataKey(context)));
    // A reader that has not loaded version 1 (written after its last refresh).
    const reader = providerOn({
      [METADATA]: metadataOf({ 2: {} }),
      ...version(1, key),
      ...version(2),
    });
    await reader.init();
    const readsBefore = requestsTo(versionPath(1));
    await Promise.all(
      wrapped.map((generated, index) => reader.unwrapDataKey(generated.wrapped, contexts[index])),
    );
    expect(requestsTo(versionPath(1)) - readsBefore).toBe(1);
  });

  it('reads an undeleted version once it is back', async () => {
    const key = rootKey();
    const writer = providerOn({ [METADATA]: metadataOf({ 1: {} }), ...version(1, key) });
    await writer.init();
    const context = contextFor();
    const { wrapped, plaintext } = await writer.generateDataKey(context);
    let deleted = true;
    const reader = providerOn({
      [METADATA]: metadataOf({ 2: {} }),
      [versionPath(1)]: () => (deleted ? notFound() : { data: { data: { key } } }),
      ...version(2),
    });
    await reader.init();
    expect(await rejectionOf(() => reader.unwrapDataKey(wrapped, context))).toBeInstanceOf(
      ConfigurationError,
    );
    deleted = false;
    expect((await reader.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
  });

  it('takes a root key written with a trailing newline', async () => {
    const provider = providerOn({
      [METADATA]: metadataOf({ 1: {} }),
      ...version(1, `${rootKey()}\n`),
    });
    await provider.init();
    const context = contextFor();
    const { wrapped, plaintext } = await provider.generateDataKey(context);
    expect((await provider.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
  });

  it('refuses a wrapped key naming version 0, without asking Vault', async () => {
    const provider = providerOn({ [METADATA]: metadataOf({ 1: {} }), ...version(1) });
    await provider.init();
    const before = requests.length;
    const error = await rejectionOf(() =>
      provider.unwrapDataKey(
        { kekId: `vault-kv:secret/${SECRET}:v0`, wrappedKey: Buffer.alloc(60) },
        contextFor(),
      ),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(requests.slice(before)).toEqual([]);
  });

  it('reports metadata whose versions are null as KeyProviderUnavailableError', async () => {
    const provider = providerOn({ [METADATA]: metadataOf(null) });
    expect(await rejectionOf(() => provider.init())).toBeInstanceOf(KeyProviderUnavailableError);
  });

  it('ignores metadata versions that are not positive integers', async () => {
    const provider = providerOn({
      [METADATA]: metadataOf({ 0: {}, '-1': {}, x: {}, 1.5: {}, 1: {} }),
      ...version(1),
    });
    await provider.init();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v1`);
    expect(requests.filter((path) => path.startsWith(`secret/data/`))).toEqual([versionPath(1)]);
  });

  it('counts a version as deleted from the very millisecond of its deletion time', async () => {
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now);
    const provider = providerOn({
      [METADATA]: metadataOf({ 1: {}, 2: { deletion_time: new Date(now).toISOString() } }),
      ...version(1),
      ...version(2),
    });
    await provider.init();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v1`);
  });
});
