import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import createVault from 'node-vault';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  KeyUnusableError,
  type DataKeyContext,
  type VaultAuthOptions,
} from '../../src/index.js';
import {
  VaultTransitKeyProvider,
  type VaultTransitKeyProviderOptions,
} from '../../src/keys/providers/vault/transit-key-provider.js';
import { sanitizeVaultError } from '../../src/keys/providers/vault/errors.js';
import { jwtFile } from '../support/jwt-file.js';
import { VaultTestServer, type VaultTestServerOptions } from '../support/vault-test-server.js';

const KEY = 'sessions';
const ENCRYPT = `transit/encrypt/${KEY}`;

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Vault auth', () => {
  let server: VaultTestServer | undefined;
  let provider: VaultTransitKeyProvider | undefined;
  const cleanups: (() => void)[] = [];

  async function startServer(options: VaultTestServerOptions = {}): Promise<VaultTestServer> {
    server = await VaultTestServer.start(options);
    server.createTransitKey(KEY);
    return server;
  }

  function providerWith(
    auth: VaultAuthOptions,
    options: Partial<VaultTransitKeyProviderOptions> = {},
  ): VaultTransitKeyProvider {
    provider = new VaultTransitKeyProvider({
      endpoint: server!.endpoint,
      auth,
      keyName: KEY,
      ...options,
    });
    return provider;
  }

  afterEach(async () => {
    vi.restoreAllMocks();
    await provider?.close();
    await server?.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
    provider = undefined;
    server = undefined;
  });

  describe('token', () => {
    it('looks the token up at init and sends it with every request', async () => {
      const vault = await startServer();
      const token = vault.createToken();
      await providerWith({ method: 'token', token }).init();
      await provider!.generateDataKey(contextFor());
      expect(vault.callCount('auth/token/lookup-self')).toBe(1);
      expect(vault.calls.map((call) => call.token)).toEqual([token, token, token]);
    });

    it('refuses at init a token Vault does not know, without quoting it', async () => {
      const vault = await startServer();
      const token = `hvs.${randomUUID()}`;
      const failure = await providerWith({ method: 'token', token })
        .init()
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect((failure as Error).message).toMatch(/invalid, expired or revoked/);
      expect(JSON.stringify(failure, Object.getOwnPropertyNames(failure))).not.toContain(token);
      expect(vault.callCount('auth/token/lookup-self')).toBe(1);
    });

    it('reports an expired token on a call as a KeyUnusableError, without logging in or quoting it', async () => {
      const vault = await startServer();
      const token = vault.createToken();
      await providerWith({ method: 'token', token }).init();
      vault.expireToken(token);

      const failure = await provider!
        .generateDataKey(contextFor())
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(KeyUnusableError);
      expect((failure as Error).message).toMatch(/token expired or was revoked/);
      expect(JSON.stringify(failure, Object.getOwnPropertyNames(failure))).not.toContain(token);
    });

    it('renews a renewable token before it expires', async () => {
      const vault = await startServer();
      const token = vault.createToken({ ttlSeconds: 3 });
      await providerWith({ method: 'token', token }, { renewAtFraction: 0.2 }).init();
      await vi.waitFor(() => expect(vault.tokenInfo(token).renewals).toBeGreaterThanOrEqual(1), {
        timeout: 2500,
      });
      expect(vault.tokenInfo(token).expired).toBe(false);
    });

    it('warns once when the token cannot be renewed, and keeps using it', async () => {
      const vault = await startServer();
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      const token = vault.createToken({ ttlSeconds: 60, renewable: false });
      await providerWith({ method: 'token', token }).init();
      await provider!.generateDataKey(contextFor());
      await provider!.generateDataKey(contextFor());

      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(
        /cannot be renewed \(the token is not renewable\)/,
      );
      expect(String(warn.mock.calls[0][0])).not.toContain(token);
      expect(vault.callCount(ENCRYPT)).toBe(2);
    });
  });

  describe('AppRole', () => {
    it('logs in at init and uses the token it got', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole();
      await providerWith({ method: 'approle', roleId, secretId }).init();
      await provider!.generateDataKey(contextFor());
      expect(vault.callCount('auth/approle/login')).toBe(1);
      expect(vault.calls.find((call) => call.path === ENCRYPT)?.token).toBe(vault.loginTokens()[0]);
    });

    it('sends no token with the login', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole();
      await providerWith({ method: 'approle', roleId, secretId }).init();
      expect(vault.calls.find((call) => call.path === 'auth/approle/login')?.token).toBeUndefined();
    });

    it('uses a configured mount path', async () => {
      const vault = await startServer({ approleMount: 'apps' });
      const { roleId, secretId } = vault.addAppRole();
      await providerWith({ method: 'approle', roleId, secretId, mountPath: 'apps' }).init();
      expect(vault.callCount('auth/apps/login')).toBe(1);
    });

    it('refuses at init credentials Vault refuses, without quoting the secret id', async () => {
      const vault = await startServer();
      const { roleId } = vault.addAppRole();
      const secretId = randomUUID();
      const failure = await providerWith({ method: 'approle', roleId, secretId })
        .init()
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect((failure as Error).message).toMatch(/HTTP 400: invalid role or secret ID/);
      expect(JSON.stringify(failure, Object.getOwnPropertyNames(failure))).not.toContain(secretId);
    });

    it('logs in once more and retries once when a call finds its token expired', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole();
      await providerWith({ method: 'approle', roleId, secretId }).init();
      vault.expireToken(vault.loginTokens()[0]);

      await provider!.generateDataKey(contextFor());

      expect(vault.callCount('auth/approle/login')).toBe(2);
      const encrypts = vault.calls.filter((call) => call.path === ENCRYPT);
      expect(encrypts.map((call) => call.status)).toEqual([403, 200]);
      expect(encrypts[1].token).toBe(vault.loginTokens()[1]);
    });

    it('shares one fresh login between concurrent calls refused for an expired token', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole();
      await providerWith({ method: 'approle', roleId, secretId }).init();
      vault.expireToken(vault.loginTokens()[0]);

      await Promise.all(Array.from({ length: 5 }, () => provider!.generateDataKey(contextFor())));

      expect(vault.callCount('auth/approle/login')).toBe(2);
    });

    it('renews the token before it expires', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole({ ttlSeconds: 3 });
      await providerWith({ method: 'approle', roleId, secretId }, { renewAtFraction: 0.2 }).init();
      const token = vault.loginTokens()[0];
      // The provider counts a renewal once Vault's answer is back, a moment after Vault does.
      await vi.waitFor(
        () => {
          expect(vault.tokenInfo(token).renewals).toBeGreaterThanOrEqual(1);
          expect(provider!.connectionStats().renewals).toBeGreaterThanOrEqual(1);
        },
        { timeout: 2500 },
      );
      expect(vault.callCount('auth/approle/login')).toBe(1);
    });

    it('logs in afresh when Vault refuses the renewal', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole({ ttlSeconds: 3 });
      await providerWith({ method: 'approle', roleId, secretId }, { renewAtFraction: 0.2 }).init();
      vault.expireToken(vault.loginTokens()[0]);

      await vi.waitFor(() => expect(vault.callCount('auth/approle/login')).toBe(2), {
        timeout: 2500,
      });

      expect(vault.calls.find((call) => call.path === 'auth/token/renew-self')?.status).toBe(403);
      await provider!.generateDataKey(contextFor());
      expect(vault.calls.filter((call) => call.path === ENCRYPT).map((c) => c.status)).toEqual([
        200,
      ]);
    });

    it('logs in afresh when the token reaches its max TTL', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole({ ttlSeconds: 3, maxTtlSeconds: 4 });
      await providerWith({ method: 'approle', roleId, secretId }, { renewAtFraction: 0.3 }).init();

      await vi.waitFor(() => expect(vault.callCount('auth/approle/login')).toBe(2), {
        timeout: 4000,
      });

      expect(vault.tokenInfo(vault.loginTokens()[0]).renewals).toBeGreaterThanOrEqual(1);
      expect(vault.tokenInfo(vault.loginTokens()[0]).expired).toBe(false);
    });

    it('logs in afresh before a non-renewable token expires', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole({ ttlSeconds: 3, renewable: false });
      await providerWith({ method: 'approle', roleId, secretId }, { renewAtFraction: 0.2 }).init();

      await vi.waitFor(() => expect(vault.callCount('auth/approle/login')).toBe(2), {
        timeout: 2500,
      });

      expect(vault.callCount('auth/token/renew-self')).toBe(0);
    });

    it('stops renewing after close()', async () => {
      const vault = await startServer();
      const { roleId, secretId } = vault.addAppRole({ ttlSeconds: 3 });
      await providerWith({ method: 'approle', roleId, secretId }, { renewAtFraction: 0.2 }).init();
      await provider!.close();

      await sleep(1200);

      expect(vault.callCount('auth/token/renew-self')).toBe(0);
      expect(vault.callCount('auth/approle/login')).toBe(1);
    });
  });

  describe('Kubernetes', () => {
    it('logs in with the service account JWT read from jwtPath', async () => {
      const vault = await startServer();
      const { role, jwt } = vault.addKubernetesRole('sessions-app');
      await providerWith({ method: 'kubernetes', role, jwtPath: jwtFile(jwt, cleanups) }).init();
      await provider!.generateDataKey(contextFor());
      expect(vault.callCount('auth/kubernetes/login')).toBe(1);
      expect(vault.calls.find((call) => call.path === ENCRYPT)?.status).toBe(200);
    });

    it('reads jwtPath again at each login, as the kubelet rotates it', async () => {
      const vault = await startServer();
      const { role, jwt } = vault.addKubernetesRole('sessions-app');
      const path = jwtFile(jwt, cleanups);
      await providerWith({ method: 'kubernetes', role, jwtPath: path }).init();
      const rotated = vault.addKubernetesRole('sessions-app').jwt;
      writeFileSync(path, rotated);
      vault.expireToken(vault.loginTokens()[0]);

      await provider!.generateDataKey(contextFor());

      expect(
        vault.calls.filter((c) => c.path === 'auth/kubernetes/login').map((c) => c.status),
      ).toEqual([200, 200]);
    });

    it('logs in with a JWT given inline', async () => {
      const vault = await startServer();
      const { role, jwt } = vault.addKubernetesRole('sessions-app');
      await providerWith({ method: 'kubernetes', role, jwt }).init();
      expect(vault.callCount('auth/kubernetes/login')).toBe(1);
    });

    it('refuses at init a jwtPath that cannot be read, naming it', async () => {
      await startServer();
      const path = join(tmpdir(), `missing-${randomUUID()}`);
      const failure = await providerWith({ method: 'kubernetes', role: 'r', jwtPath: path })
        .init()
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect((failure as Error).message).toContain(`${path} (ENOENT)`);
    });

    it('refuses at init a JWT Vault does not accept, without quoting it', async () => {
      const vault = await startServer();
      const { role } = vault.addKubernetesRole('sessions-app');
      const jwt = `eyJhbGciOiJSUzI1NiJ9.${randomUUID()}.${randomUUID()}`;
      const failure = await providerWith({ method: 'kubernetes', role, jwt })
        .init()
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigurationError);
      expect((failure as Error).message).toMatch(/HTTP 403: permission denied/);
      expect(JSON.stringify(failure, Object.getOwnPropertyNames(failure))).not.toContain(jwt);
    });
  });

  describe('connection', () => {
    it('sends the namespace with every request', async () => {
      const vault = await startServer({ namespace: 'team-a' });
      await providerWith(
        { method: 'token', token: vault.createToken() },
        { namespace: 'team-a' },
      ).init();
      await provider!.generateDataKey(contextFor());
      expect(new Set(vault.calls.map((call) => call.namespace))).toEqual(new Set(['team-a']));
    });

    it('uses an injected node-vault client and leaves its token alone', async () => {
      const vault = await startServer();
      const client = createVault({ endpoint: vault.endpoint, token: 'client-own-token' });
      const { roleId, secretId } = vault.addAppRole();
      provider = new VaultTransitKeyProvider({
        client,
        auth: { method: 'approle', roleId, secretId },
        keyName: KEY,
      });
      await provider.init();
      await provider.generateDataKey(contextFor());
      expect(client.token).toBe('client-own-token');
      expect(vault.calls.find((call) => call.path === ENCRYPT)?.token).toBe(vault.loginTokens()[0]);
    });

    it('refuses options without an endpoint or client', () => {
      expect(
        () => new VaultTransitKeyProvider({ auth: { method: 'token', token: 't' }, keyName: KEY }),
      ).toThrow(/needs endpoint/);
    });

    it('refuses AppRole options without a secret id', () => {
      expect(
        () =>
          new VaultTransitKeyProvider({
            endpoint: 'http://127.0.0.1:8200',
            auth: { method: 'approle', roleId: 'r', secretId: '' },
            keyName: KEY,
          }),
      ).toThrow(/approle auth needs roleId and secretId/);
    });

    it('redacts tokens, ids and ciphertexts from Vault error strings', () => {
      const token = 'hvs.CAESIJ3mZq1xLrA7bT0pQ2VwYXNzd29yZA';
      const uuid = randomUUID();
      const text = sanitizeVaultError(
        `2 errors occurred:\n\t* bad ${token}\n\t* role ${uuid} vault:v3:AAAAbbbbCCCC== min_decryption_version\n\n`,
      );
      expect(text).toBe(
        'bad [redacted] role [redacted] vault:v…:[redacted] min_decryption_version',
      );
    });
  });
});
