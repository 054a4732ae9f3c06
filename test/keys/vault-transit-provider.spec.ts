import { randomUUID } from 'node:crypto';
import createVault from 'node-vault';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  IntegrityError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  type DataKeyContext,
} from '../../src/index.js';
import {
  VaultTransitKeyProvider,
  type VaultTransitKeyProviderOptions,
} from '../../src/keys/providers/vault/transit-key-provider.js';
import { VaultTestServer, type VaultTokenSpec } from '../support/vault-test-server.js';
import {
  describeKeyProviderContract,
  describeRemoteProviderContract,
  type ProviderFixture,
} from './provider-contract.js';

const KEY = 'sessions';

interface TransitSetup {
  readonly server: VaultTestServer;
  readonly admin: ReturnType<typeof createVault>;
  readonly provider: VaultTransitKeyProvider;
  readonly secretId: string;
}

async function setUp(
  options: Partial<VaultTransitKeyProviderOptions> = {},
  role: VaultTokenSpec = {},
): Promise<TransitSetup> {
  const server = await VaultTestServer.start();
  server.createTransitKey(KEY);
  const { roleId, secretId } = server.addAppRole(role);
  const admin = createVault({ endpoint: server.endpoint, token: server.rootToken });
  const provider = new VaultTransitKeyProvider({
    endpoint: server.endpoint,
    auth: { method: 'approle', roleId, secretId },
    keyName: KEY,
    ...options,
  });
  return { server, admin, provider, secretId };
}

function fixtureFor(setup: TransitSetup, breakBy: 'down' | 'seal'): ProviderFixture {
  const { server, admin, provider, secretId } = setup;
  return {
    provider,
    get secrets() {
      return [secretId, ...server.issuedTokens()];
    },
    async rotateRootKey() {
      await admin.write(`transit/keys/${KEY}/rotate`, {});
      await provider.refreshActiveKey();
    },
    breakService: () => (breakBy === 'down' ? server.down() : Promise.resolve(server.seal())),
    restoreService: () => (breakBy === 'down' ? server.up() : Promise.resolve(server.unseal())),
    close: () => server.close(),
  };
}

describeKeyProviderContract('vault-transit', async () => fixtureFor(await setUp(), 'down'));
describeRemoteProviderContract('vault-transit', async () => fixtureFor(await setUp(), 'down'));
describeRemoteProviderContract('vault-transit (sealed)', async () =>
  fixtureFor(await setUp(), 'seal'),
);

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

describe('VaultTransitKeyProvider', () => {
  let setup: TransitSetup | undefined;

  async function started(
    options: Partial<VaultTransitKeyProviderOptions> = {},
    role: VaultTokenSpec = {},
  ): Promise<TransitSetup> {
    setup = await setUp(options, role);
    await setup.provider.init();
    return setup;
  }

  afterEach(async () => {
    await setup?.provider.close();
    await setup?.server.close();
    setup = undefined;
  });

  it('names the active key by mount, key and latest version', async () => {
    const { provider } = await started();
    expect(provider.activeKekId()).toBe('vault-transit:transit/sessions:v1');
  });

  it('stores the vault:v<N>: ciphertext as the wrapped key', async () => {
    const { provider } = await started();
    const { wrapped } = await provider.generateDataKey(contextFor());
    expect(wrapped.wrappedKey.toString('utf8')).toMatch(/^vault:v1:[A-Za-z0-9+/=]+$/);
  });

  it('wraps under a derivation context that Vault requires to decrypt', async () => {
    const { provider, admin } = await started();
    const { wrapped } = await provider.generateDataKey(contextFor());
    await expect(
      admin.write(`transit/decrypt/${KEY}`, { ciphertext: wrapped.wrappedKey.toString('utf8') }),
    ).rejects.toThrow(/missing 'context' for key derivation/);
  });

  it('rewraps to the latest key version inside Vault, without a decrypt call', async () => {
    const { provider, admin, server } = await started();
    const context = contextFor();
    const { plaintext, wrapped } = await provider.generateDataKey(context);
    await admin.write(`transit/keys/${KEY}/rotate`, {});

    const rewrapped = await provider.rewrapDataKey(wrapped, context);

    expect(rewrapped.kekId).toBe('vault-transit:transit/sessions:v2');
    expect(provider.activeKekId()).toBe(rewrapped.kekId);
    expect(server.callCount(`transit/rewrap/${KEY}`)).toBe(1);
    expect(server.callCount(`transit/decrypt/${KEY}`)).toBe(0);
    expect((await provider.unwrapDataKey(rewrapped, context)).equals(plaintext)).toBe(true);
  });

  it('follows an operator rotation after refreshActiveKey', async () => {
    const { provider, admin } = await started();
    await admin.write(`transit/keys/${KEY}/rotate`, {});
    await admin.write(`transit/keys/${KEY}/rotate`, {});
    expect(await provider.refreshActiveKey()).toBe('vault-transit:transit/sessions:v3');
  });

  it('refuses a key version below min_decryption_version with a non-retryable error naming the fix', async () => {
    const { provider, admin } = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    await admin.write(`transit/keys/${KEY}/rotate`, {});
    await admin.write(`transit/keys/${KEY}/config`, { min_decryption_version: 2 });
    await provider.refreshActiveKey();

    const failure = await provider.unwrapDataKey(wrapped, context).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(KeyUnusableError);
    expect((failure as Error).message).toMatch(
      /retired \(below min_decryption_version 2\).*vault write transit\/keys\/sessions\/config min_decryption_version=1/,
    );
  });

  it('lets Vault generate the data key with useDatakeyEndpoint', async () => {
    const { provider, server } = await started({ useDatakeyEndpoint: true });
    const context = contextFor();
    const { plaintext, wrapped } = await provider.generateDataKey(context);
    expect(server.callCount(`transit/datakey/plaintext/${KEY}`)).toBe(1);
    expect(server.callCount(`transit/encrypt/${KEY}`)).toBe(0);
    expect(plaintext).toHaveLength(32);
    expect((await provider.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
  });

  it('refuses at init a key that is not derived, saying how to create one', async () => {
    setup = await setUp({ keyName: 'plain' });
    setup.server.createTransitKey('plain', { derived: false });
    const failure = await setup.provider.init().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConfigurationError);
    expect((failure as Error).message).toMatch(
      /not derived.*vault write transit\/keys\/<name> derived=true/,
    );
  });

  it('refuses at init a key that does not exist, saying how to create it', async () => {
    setup = await setUp({ keyName: 'missing' });
    await expect(setup.provider.init()).rejects.toThrow(
      /no transit key 'missing'.*vault write transit\/keys\/missing derived=true/,
    );
  });

  it('reports Vault down at init as retryable and starts once it is back', async () => {
    setup = await setUp();
    await setup.server.down();
    await expect(setup.provider.init()).rejects.toBeInstanceOf(KeyProviderUnavailableError);
    await setup.server.up();
    await setup.provider.init();
    expect(setup.provider.activeKekId()).toBe('vault-transit:transit/sessions:v1');
  });

  it('uses a configured mount path', async () => {
    const server = await VaultTestServer.start({ transitMounts: ['kek'] });
    server.createTransitKey('k', { mount: 'kek' });
    const provider = new VaultTransitKeyProvider({
      endpoint: server.endpoint,
      auth: { method: 'token', token: server.createToken() },
      mountPath: 'kek',
      keyName: 'k',
    });
    try {
      await provider.init();
      const { wrapped } = await provider.generateDataKey(contextFor());
      expect(wrapped.kekId).toBe('vault-transit:kek/k:v1');
      expect(server.callCount('kek/encrypt/k')).toBe(1);
    } finally {
      await provider.close();
      await server.close();
    }
  });

  it('refuses a wrapped key of another transit key with a ConfigurationError', async () => {
    const { provider } = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    await expect(
      provider.unwrapDataKey({ ...wrapped, kekId: 'vault-transit:transit/other:v1' }, context),
    ).rejects.toThrow(/not this provider's transit key 'transit\/sessions'/);
  });

  it('refuses bytes that are not a transit ciphertext with IntegrityError, without calling Vault', async () => {
    const { provider, server } = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    await expect(
      provider.unwrapDataKey({ ...wrapped, wrappedKey: Buffer.alloc(61, 1) }, context),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(server.callCount(`transit/decrypt/${KEY}`)).toBe(0);
  });

  it('turns a 403 that outlives a fresh login into a policy error without secrets', async () => {
    const server = await VaultTestServer.start();
    server.createTransitKey(KEY);
    server.definePolicy('no-decrypt', [`transit/keys/${KEY}`, `transit/encrypt/${KEY}`]);
    const { roleId, secretId } = server.addAppRole({ policies: ['no-decrypt'] });
    const provider = new VaultTransitKeyProvider({
      endpoint: server.endpoint,
      auth: { method: 'approle', roleId, secretId },
      keyName: KEY,
    });
    setup = { server, provider, secretId, admin: createVault({ endpoint: server.endpoint }) };
    await provider.init();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);

    const failure = await provider.unwrapDataKey(wrapped, context).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(KeyUnusableError);
    expect((failure as Error).message).toMatch(
      /denied transit\/decrypt\/sessions.*fresh approle login.*'update' on 'transit\/decrypt\/sessions'.*policy/,
    );
    expect(server.callCount('auth/approle/login')).toBe(2);
    expect(server.callCount(`transit/decrypt/${KEY}`)).toBe(2);
    const text = `${String(failure)} ${JSON.stringify(failure, Object.getOwnPropertyNames(failure))}`;
    for (const secret of [secretId, ...server.issuedTokens()]) expect(text).not.toContain(secret);
  });

  it.each([
    ['throttled (429)', (server: VaultTestServer) => server.throttleNext(1)],
    ['failing (500)', (server: VaultTestServer) => server.failNext(1, 500)],
    ['unavailable (503)', (server: VaultTestServer) => server.failNext(1, 503)],
  ])('reports Vault %s as retryable, then works again', async (_, fault) => {
    const { provider, server } = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    fault(server);
    const failure = await provider.unwrapDataKey(wrapped, context).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
    expect(await provider.unwrapDataKey(wrapped, context)).toHaveLength(32);
  });

  it('reports a request that outlasts requestTimeoutMs as retryable', async () => {
    const { provider, server } = await started({ requestTimeoutMs: 200 });
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    server.setLatency(600);
    await expect(provider.unwrapDataKey(wrapped, context)).rejects.toThrow(
      /transit\/decrypt\/sessions.*no answer within 200 ms/,
    );
  });

  it('reports a dropped connection as retryable', async () => {
    const { provider, server } = await started();
    const context = contextFor();
    const { wrapped } = await provider.generateDataKey(context);
    server.dropConnections(true);
    const failure = await provider.unwrapDataKey(wrapped, context).catch((error: unknown) => error);
    server.dropConnections(false);
    expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
    expect((failure as Error).message).toMatch(/network error/);
  });

  it('refuses options without a key name or with a malformed mount path', () => {
    const base = {
      endpoint: 'http://127.0.0.1:8200',
      auth: { method: 'token', token: 't' },
    } as const;
    expect(() => new VaultTransitKeyProvider({ ...base, keyName: '' })).toThrow(ConfigurationError);
    expect(
      () => new VaultTransitKeyProvider({ ...base, keyName: 'k', mountPath: '/transit/' }),
    ).toThrow(/mountPath/);
  });
});
