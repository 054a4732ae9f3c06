import { randomBytes, randomUUID } from 'node:crypto';
import createVault from 'node-vault';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigurationError, type DataKeyContext } from '../../src/index.js';
import {
  VaultKvKeyProvider,
  type VaultKvKeyProviderOptions,
} from '../../src/keys/providers/vault/kv-key-provider.js';
import { VaultTestServer } from '../support/vault-test-server.js';
import {
  describeKeyProviderContract,
  describeRemoteProviderContract,
  type ProviderFixture,
} from './provider-contract.js';

const SECRET = 'sessions/root-key';
const DATA_PATH = `secret/data/${SECRET}`;
const METADATA_PATH = `secret/metadata/${SECRET}`;

type VaultAdmin = ReturnType<typeof createVault>;

interface KvSetup {
  readonly server: VaultTestServer;
  readonly admin: VaultAdmin;
  readonly token: string;
  /** Every base64 root key written, oldest first. */
  readonly rootKeys: string[];
  provider(options?: Partial<VaultKvKeyProviderOptions>): VaultKvKeyProvider;
  /** Writes a fresh random root key as a new version, with check-and-set on the current one. */
  writeRootKey(): Promise<number>;
}

async function setUp(): Promise<KvSetup> {
  const server = await VaultTestServer.start();
  const admin = createVault({ endpoint: server.endpoint, token: server.rootToken });
  const token = server.createToken();
  const rootKeys: string[] = [];
  const currentVersion = async (): Promise<number> => {
    const metadata = (await admin.read(METADATA_PATH).catch(() => undefined)) as
      { data: { current_version: number } } | undefined;
    return metadata?.data.current_version ?? 0;
  };
  return {
    server,
    admin,
    token,
    rootKeys,
    provider: (options = {}) =>
      new VaultKvKeyProvider({
        endpoint: server.endpoint,
        auth: { method: 'token', token },
        secretPath: SECRET,
        ...options,
      }),
    async writeRootKey() {
      const key = randomBytes(32).toString('base64');
      rootKeys.push(key);
      const written = (await admin.write(DATA_PATH, {
        data: { key },
        options: { cas: await currentVersion() },
      })) as { data: { version: number } };
      return written.data.version;
    },
  };
}

async function contractFixture(breakBy: 'down' | 'seal'): Promise<ProviderFixture> {
  const setup = await setUp();
  await setup.writeRootKey();
  // Re-read the metadata on every call: with root keys cached, a Vault outage would not show.
  const provider = setup.provider({ keyCacheTtlMs: 0 });
  const { server } = setup;
  return {
    provider,
    get secrets() {
      return [...server.issuedTokens(), ...setup.rootKeys];
    },
    async rotateRootKey() {
      await setup.writeRootKey();
      await provider.refreshActiveKey();
    },
    breakService: () => (breakBy === 'down' ? server.down() : Promise.resolve(server.seal())),
    restoreService: () => (breakBy === 'down' ? server.up() : Promise.resolve(server.unseal())),
    close: () => server.close(),
  };
}

describeKeyProviderContract('vault-kv', () => contractFixture('seal'));
describeRemoteProviderContract('vault-kv', () => contractFixture('seal'));
describeRemoteProviderContract('vault-kv (down)', () => contractFixture('down'));

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

describe('VaultKvKeyProvider', () => {
  let setup: KvSetup;
  const providers: VaultKvKeyProvider[] = [];

  async function started(
    options: Partial<VaultKvKeyProviderOptions> = {},
  ): Promise<VaultKvKeyProvider> {
    const provider = setup.provider(options);
    providers.push(provider);
    await provider.init();
    return provider;
  }

  async function freshSetup(): Promise<KvSetup> {
    setup = await setUp();
    return setup;
  }

  afterEach(async () => {
    for (const provider of providers.splice(0)) await provider.close();
    await setup.server.close();
  });

  it('makes every live version a key id, the latest one active', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const early = await started();
    const context = contextFor();
    const { plaintext, wrapped } = await early.generateDataKey(context);
    await setup.writeRootKey();

    const late = await started();

    expect(wrapped.kekId).toBe(`vault-kv:secret/${SECRET}:v1`);
    expect(late.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v2`);
    expect((await late.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
  });

  it('makes a new version active after refreshActiveKey', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const provider = await started();
    await setup.writeRootKey();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v1`);

    expect(await provider.refreshActiveKey()).toBe(`vault-kv:secret/${SECRET}:v2`);
    const { wrapped } = await provider.generateDataKey(contextFor());
    expect(wrapped.kekId).toBe(`vault-kv:secret/${SECRET}:v2`);
  });

  it('picks up a new version by itself once keyCacheTtlMs has passed', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const provider = await started({ keyCacheTtlMs: 150 });
    await setup.writeRootKey();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { wrapped } = await provider.generateDataKey(contextFor());
    expect(wrapped.kekId).toBe(`vault-kv:secret/${SECRET}:v2`);
  });

  it('reads a version written after its last refresh on demand, once', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const stale = await started();
    await setup.writeRootKey();
    const current = await started();
    const context = contextFor();
    const { plaintext, wrapped } = await current.generateDataKey(context);
    const readsBefore = setup.server.callCount(DATA_PATH, 'GET');

    expect((await stale.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
    expect((await stale.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);

    expect(setup.server.callCount(DATA_PATH, 'GET') - readsBefore).toBe(1);
    expect(stale.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v1`);
  });

  it('rewraps in memory under the active version', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const provider = await started();
    const context = contextFor();
    const { plaintext, wrapped } = await provider.generateDataKey(context);
    await setup.writeRootKey();
    await provider.refreshActiveKey();
    const readsBefore = setup.server.calls.length;

    const rewrapped = await provider.rewrapDataKey(wrapped, context);

    expect(rewrapped.kekId).toBe(`vault-kv:secret/${SECRET}:v2`);
    expect(setup.server.calls.length).toBe(readsBefore);
    expect((await provider.unwrapDataKey(rewrapped, context)).equals(plaintext)).toBe(true);
  });

  it('drops a version deleted in Vault and says how to undelete it', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const provider = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    await setup.writeRootKey();
    await setup.admin.write(`secret/delete/${SECRET}`, { versions: [1] });

    await provider.refreshActiveKey();

    await expect(provider.unwrapDataKey(wrapped, context)).rejects.toThrow(
      /version 1 .*deleted.*vault kv undelete -mount=secret -versions=1 sessions\/root-key/,
    );
  });

  it('skips destroyed versions at init', async () => {
    await freshSetup();
    await setup.writeRootKey();
    await setup.writeRootKey();
    await setup.admin.write(`secret/destroy/${SECRET}`, { versions: [1] });
    const provider = await started();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v2`);
    expect(setup.server.callCount(DATA_PATH, 'GET')).toBe(1);
  });

  it('falls back to the newest live version when the current one is deleted', async () => {
    await freshSetup();
    await setup.writeRootKey();
    await setup.writeRootKey();
    await setup.admin.delete(DATA_PATH);
    const provider = await started();
    expect(provider.activeKekId()).toBe(`vault-kv:secret/${SECRET}:v1`);
  });

  it.each([
    ['a password', Buffer.from('correct horse battery staple').toString('base64'), /not 32 bytes/],
    ['a short key', randomBytes(16).toString('base64'), /not 32 bytes/],
    [
      'text',
      Buffer.from('my-super-secret-password-1234567').toString('base64'),
      /does not look random/,
    ],
    ['repeated bytes', Buffer.alloc(32, 7).toString('base64'), /does not look random/],
  ])('refuses at init a root key that is %s', async (_, key, message) => {
    await freshSetup();
    await setup.admin.write(DATA_PATH, { data: { key } });
    const provider = setup.provider();
    providers.push(provider);

    const failure = await provider.init().catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(ConfigurationError);
    expect((failure as Error).message).toMatch(message);
    expect((failure as Error).message).toMatch(/'v1' in field 'key' of Vault secret/);
    expect((failure as Error).message).not.toContain(key);
  });

  it('refuses at init a secret version without the key field', async () => {
    await freshSetup();
    await setup.admin.write(DATA_PATH, { data: { other: randomBytes(32).toString('base64') } });
    const provider = setup.provider();
    providers.push(provider);
    await expect(provider.init()).rejects.toThrow(/has no string field 'key'/);
  });

  it('reads the key from a configured mount and field', async () => {
    setup = await setUp();
    const server = await VaultTestServer.start({ kvMounts: ['kv'] });
    const admin = createVault({ endpoint: server.endpoint, token: server.rootToken });
    await admin.write('kv/data/app', { data: { root: randomBytes(32).toString('base64') } });
    const provider = new VaultKvKeyProvider({
      endpoint: server.endpoint,
      auth: { method: 'token', token: server.createToken() },
      mountPath: 'kv',
      secretPath: 'app',
      field: 'root',
    });
    try {
      await provider.init();
      expect(provider.activeKekId()).toBe('vault-kv:kv/app:v1');
    } finally {
      await provider.close();
      await server.close();
    }
  });

  it('refuses at init a secret that does not exist, saying how to write it', async () => {
    await freshSetup();
    const provider = setup.provider();
    providers.push(provider);
    await expect(provider.init()).rejects.toThrow(
      /no KV v2 secret 'sessions\/root-key' at mount 'secret'.*vault kv put -mount=secret sessions\/root-key key=\$\(openssl rand -base64 32\)/,
    );
  });

  it('refuses a rotation written with a stale check-and-set version and keeps the active key', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const provider = await started();
    await setup.writeRootKey();

    await expect(
      setup.admin.write(DATA_PATH, {
        data: { key: randomBytes(32).toString('base64') },
        options: { cas: 1 },
      }),
    ).rejects.toThrow('check-and-set parameter did not match the current version');
    expect(await provider.refreshActiveKey()).toBe(`vault-kv:secret/${SECRET}:v2`);
  });

  it('refuses a wrapped key of another secret with a ConfigurationError', async () => {
    await freshSetup();
    await setup.writeRootKey();
    const provider = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    await expect(
      provider.unwrapDataKey({ ...wrapped, kekId: 'vault-kv:secret/other:v1' }, context),
    ).rejects.toThrow(/not a version of Vault secret 'secret\/data\/sessions\/root-key'/);
  });
});
