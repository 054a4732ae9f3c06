import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  KeyProviderUnavailableError,
  type DataKeyContext,
  type VaultAuthOptions,
} from '../../src/index.js';
import {
  VaultTransitKeyProvider,
  type VaultTransitKeyProviderOptions,
} from '../../src/keys/providers/vault/transit-key-provider.js';
import { VaultConnection } from '../../src/keys/providers/vault/connection.js';
import type { VaultClient } from '../../src/keys/providers/vault/connection-options.js';
import { sanitizeVaultError } from '../../src/keys/providers/vault/errors.js';
import { numberField } from '../../src/keys/providers/vault/response-fields.js';
import { jwtFile } from '../support/jwt-file.js';
import { VaultTestServer } from '../support/vault-test-server.js';
import { rejectionOf } from '../support/thrown-by.js';

/*
 * The Vault connection (login, renewal, error mapping, option checks) against a scripted
 * node-vault client: failures the test server does not produce, and renewal timing driven by
 * fake timers instead of real waits. Each test pins one check whose removal StrykerJS showed no
 * other test noticing. (The loopback test server serves the one test that needs a real
 * node-vault client.)
 */

const KEY = 'sessions';
const ENCRYPT = `transit/encrypt/${KEY}`;
const LOGIN = 'auth/approle/login';
const RENEW = 'auth/token/renew-self';

type Answer = () => unknown;

/** node-vault's error for an HTTP answer with `status`. */
function httpError(status: number, body: unknown = { errors: [] }): Error {
  return Object.assign(new Error(`Status ${status}`), { response: { statusCode: status, body } });
}

/** A node-vault client stand-in answering each path from `answers` (a function may throw). */
function scriptedClient(answers: Record<string, Answer>) {
  const answer = (path: string, options?: { headers?: Record<string, string> }) => {
    requests.push({ path, headers: { ...options?.headers } });
    const script = answers[path];
    if (!script) return Promise.reject(new Error(`unscripted ${path}`));
    try {
      return Promise.resolve(script());
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return {
    token: '',
    read: answer,
    write: (path: string, _body: unknown, options?: { headers?: Record<string, string> }) =>
      answer(path, options),
  };
}

/** Every request the scripted clients received, with its headers. */
const requests: { path: string; headers: Record<string, string> }[] = [];
const requestsTo = (path: string) => requests.filter((request) => request.path === path);

const encrypted = () => ({ data: { ciphertext: 'vault:v1:AAAA' } });
const transitKey = () => ({
  data: { derived: true, supports_encryption: true, latest_version: 1 },
});
const loginAnswer = (leaseSeconds: number, renewable: boolean) => ({
  auth: { client_token: `hvs.${randomUUID()}`, lease_duration: leaseSeconds, renewable },
});

/** Answers with HTTP 403 the first time, then with `then`. */
function deniedOnce(then: Answer): Answer {
  let calls = 0;
  return () => {
    calls++;
    if (calls === 1) throw httpError(403);
    return then();
  };
}

/** An answer that waits until the test settles it, and the functions that settle it. */
function heldAnswer() {
  const held: { resolve: (body: unknown) => void; reject: (error: unknown) => void } = {
    resolve: () => undefined,
    reject: () => undefined,
  };
  const answer: Answer = () =>
    new Promise((resolve, reject) => Object.assign(held, { resolve, reject }));
  return { answer, held };
}

/** A Vault connection of its own on a scripted client, for calls no provider test reaches. */
function connectionOn(answers: Record<string, Answer>): VaultConnection {
  return new VaultConnection(
    {
      client: scriptedClient(answers) as unknown as VaultClient,
      auth: { method: 'approle', roleId: 'role', secretId: 'secret' },
    },
    'vault-test',
  );
}

function providerOn(
  answers: Record<string, Answer>,
  auth: VaultAuthOptions = { method: 'approle', roleId: 'role', secretId: 'secret' },
  options: Partial<VaultTransitKeyProviderOptions> = {},
) {
  return new VaultTransitKeyProvider({
    client: scriptedClient({
      [`transit/keys/${KEY}`]: transitKey,
      ...answers,
    }) as unknown as VaultTransitKeyProviderOptions['client'],
    auth,
    keyName: KEY,
    ...options,
  });
}

/** Fake timers and a silenced logger, for the renewal tests. */
function fakeTime(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  vi.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
}

const contextFor = (): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId: randomUUID(),
});

describe('Vault connection against a scripted Vault client', () => {
  const cleanups: (() => void)[] = [];
  let server: VaultTestServer | undefined;

  afterEach(async () => {
    requests.length = 0;
    vi.useRealTimers();
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
    await server?.close();
    server = undefined;
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  describe('options', () => {
    const endpoint = 'http://127.0.0.1:8200';
    const build = (options: Partial<VaultTransitKeyProviderOptions>) => () =>
      new VaultTransitKeyProvider({
        endpoint,
        auth: { method: 'token', token: 't' },
        keyName: KEY,
        ...options,
      });

    it.each<[string, Partial<VaultTransitKeyProviderOptions>]>([
      ['an endpoint that is not a URL', { endpoint: 'vault:8200 ' }],
      ['an endpoint that does not parse', { endpoint: 'http://' }],
      ['an ftp endpoint', { endpoint: 'ftp://127.0.0.1:8200' }],
      ['a zero requestTimeoutMs', { requestTimeoutMs: 0 }],
      ['a requestTimeoutMs that is not a number', { requestTimeoutMs: Number.NaN }],
      ['a renewAtFraction of 0', { renewAtFraction: 0 }],
      ['a renewAtFraction of 1', { renewAtFraction: 1 }],
      ['a blank token', { auth: { method: 'token', token: '  ' } }],
      [
        'a token that is not a string',
        { auth: { method: 'token', token: 42 } as unknown as VaultAuthOptions },
      ],
      [
        'an AppRole mountPath with a leading slash',
        { auth: { method: 'approle', roleId: 'r', secretId: 's', mountPath: '/approle' } },
      ],
      ['a Kubernetes login without a role', { auth: { method: 'kubernetes', role: '' } }],
      [
        'a Kubernetes login with an empty jwt',
        { auth: { method: 'kubernetes', role: 'r', jwt: '' } },
      ],
      [
        'a Kubernetes mountPath with a trailing slash',
        { auth: { method: 'kubernetes', role: 'r', mountPath: 'k8s/' } },
      ],
      ['an unknown auth method', { auth: { method: 'ldap' } as unknown as VaultAuthOptions }],
      ['no auth at all', { auth: undefined }],
      ['a transit mountPath that is not a string', { mountPath: 42 as unknown as string }],
    ])('refuses %s', (_, options) => {
      expect(build(options)).toThrow(ConfigurationError);
    });

    it.each<[string, Partial<VaultTransitKeyProviderOptions>]>([
      ['an https endpoint', { endpoint: 'https://vault.internal:8200' }],
      ['a 1 ms requestTimeoutMs', { requestTimeoutMs: 1 }],
      [
        'a Kubernetes login with its own mountPath',
        { auth: { method: 'kubernetes', role: 'r', jwt: 'j', mountPath: 'k8s' } },
      ],
      [
        'an AppRole login with its own mountPath',
        { auth: { method: 'approle', roleId: 'r', secretId: 's', mountPath: 'apps' } },
      ],
    ])('accepts %s', (_, options) => {
      expect(build(options)).not.toThrow();
    });
  });

  it('reports a token lookup failing with HTTP 500 as retryable, not as a bad token', async () => {
    const provider = providerOn(
      {
        'auth/token/lookup-self': () => {
          throw httpError(500);
        },
      },
      { method: 'token', token: 'hvs.token' },
    );
    expect(await rejectionOf(() => provider.init())).toBeInstanceOf(KeyProviderUnavailableError);
  });

  it.each([
    [500, KeyProviderUnavailableError],
    [429, KeyProviderUnavailableError],
    [400, ConfigurationError],
  ] as const)('maps a login refused with HTTP %i at init', async (status, errorClass) => {
    const provider = providerOn({
      [LOGIN]: () => {
        throw httpError(status);
      },
    });
    expect(await rejectionOf(() => provider.init())).toBeInstanceOf(errorClass);
  });

  it.each<[string, unknown]>([
    ['without a client token', { auth: { lease_duration: 60 } }],
    ['with an empty client token', { auth: { client_token: '', lease_duration: 60 } }],
    ['without an auth block', {}],
    ['of JSON null', null],
  ])('reports a login answer %s as retryable', async (_, body) => {
    const provider = providerOn({ [LOGIN]: () => body });
    const error = await rejectionOf(() => provider.init());
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect(error.message).toMatch(/without a client token/);
  });

  describe('failures of a call', () => {
    it.each<[string, unknown, Function, RegExp]>([
      ['HTTP 412', httpError(412), KeyProviderUnavailableError, /HTTP 412/],
      ['HTTP 429', httpError(429), KeyProviderUnavailableError, /HTTP 429/],
      ['HTTP 500', httpError(500), KeyProviderUnavailableError, /HTTP 500/],
      [
        'HTTP 404 without a mapping',
        httpError(404, { errors: 'not a list' }),
        ConfigurationError,
        /HTTP 404: no error text/,
      ],
      [
        'HTTP 400 with error entries that are not strings',
        httpError(400, { errors: [42, { text: 'x' }, 'bad input'] }),
        ConfigurationError,
        /HTTP 400: bad input\)/,
      ],
      [
        'a time-out',
        Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }),
        KeyProviderUnavailableError,
        /no answer within 1234 ms/,
      ],
      [
        'a refused connection',
        Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }),
        KeyProviderUnavailableError,
        /network error ECONNREFUSED/,
      ],
      ['a named error', new TypeError('boom'), KeyProviderUnavailableError, /: TypeError; retry/],
      ['null', null, KeyProviderUnavailableError, /: unknown error; retry/],
    ])('reports %s', async (_, thrown, errorClass, message) => {
      const provider = providerOn(
        {
          [LOGIN]: () => loginAnswer(0, false),
          [ENCRYPT]: () => {
            throw thrown;
          },
        },
        undefined,
        { requestTimeoutMs: 1234 },
      );
      await provider.init();
      const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
      expect(error).toBeInstanceOf(errorClass);
      expect(error.message).toMatch(message);
    });
  });

  it('reads a TTL given as a numeric string: a plain token that cannot be renewed is warned about', async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const provider = providerOn(
      { 'auth/token/lookup-self': () => ({ data: { ttl: '3600', renewable: false } }) },
      { method: 'token', token: 'hvs.token' },
    );
    await provider.init();
    await provider.close();
    expect(warn.mock.calls.map(([message]) => String(message))).toEqual([
      expect.stringMatching(/cannot be renewed .* until it expires at \d{4}-/),
    ]);
  });

  describe('renewal (fake timers)', () => {
    it('retries a failed renewal after a third of the remaining life', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      let renewals = 0;
      const provider = providerOn(
        {
          [LOGIN]: () => loginAnswer(30, true),
          [RENEW]: () => {
            renewals++;
            if (renewals === 1) throw httpError(503);
            return loginAnswer(30, true);
          },
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      // Renewal at 15 s fails; 15 s are left, so the retry comes 5 s later.
      await vi.advanceTimersByTimeAsync(15_000);
      expect(provider.connectionStats()).toMatchObject({ renewals: 0, failedRenewals: 1 });
      await vi.advanceTimersByTimeAsync(4_900);
      expect(renewals).toBe(1);
      await vi.advanceTimersByTimeAsync(200);
      expect(provider.connectionStats()).toMatchObject({ renewals: 1, failedRenewals: 1 });
      await provider.close();
    });

    it('retries a failed background login after a third of the remaining life', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      vi.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
      let logins = 0;
      const provider = providerOn(
        {
          [LOGIN]: () => {
            logins++;
            if (logins === 2) throw httpError(503);
            return loginAnswer(30, false);
          },
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(15_000);
      expect(logins).toBe(2);
      expect(warn.mock.calls.map(([message]) => String(message))).toEqual([
        expect.stringMatching(/Vault login failed \(.*HTTP 503.*\); retrying/),
      ]);
      await vi.advanceTimersByTimeAsync(4_900);
      expect(logins).toBe(2);
      await vi.advanceTimersByTimeAsync(200);
      expect(provider.connectionStats().logins).toBe(2);
      await provider.close();
    });

    it('stops retrying a failed background login once closed', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      vi.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
      let logins = 0;
      let closeDuringLogin: (() => Promise<void>) | undefined;
      const provider = providerOn(
        {
          [LOGIN]: () => {
            logins++;
            if (logins === 1) return loginAnswer(30, false);
            void closeDuringLogin?.();
            throw httpError(503);
          },
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      closeDuringLogin = () => provider.close();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(logins).toBe(2);
      expect(warn).not.toHaveBeenCalled();
    });
  });

  it('reports a token lookup refused with HTTP 404 as a ConfigurationError', async () => {
    const provider = providerOn(
      {
        'auth/token/lookup-self': () => {
          throw httpError(404);
        },
      },
      { method: 'token', token: 'hvs.token' },
    );
    const error = await rejectionOf(() => provider.init());
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/Vault refused auth\/token\/lookup-self .* \(HTTP 404/);
  });

  it('sends no token with a login, and the login token with calls', async () => {
    const provider = providerOn({
      [LOGIN]: () => ({ auth: { client_token: 'hvs.login-token', lease_duration: 0 } }),
      [ENCRYPT]: () => ({ data: { ciphertext: 'vault:v1:AAAA' } }),
    });
    await provider.init();
    await provider.generateDataKey(contextFor());
    expect(requestsTo(LOGIN).map((request) => request.headers)).toStrictEqual([{}]);
    expect(requestsTo(ENCRYPT).map((request) => request.headers)).toEqual([
      { 'X-Vault-Token': 'hvs.login-token' },
    ]);
  });

  it('reports a login refused after a 403 at run time as retryable, not as configuration', async () => {
    let logins = 0;
    const provider = providerOn({
      [LOGIN]: () => {
        logins++;
        if (logins > 1) throw httpError(400);
        return loginAnswer(0, false);
      },
      [ENCRYPT]: () => {
        throw httpError(403);
      },
    });
    await provider.init();
    const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
    expect(logins).toBe(2);
  });

  it('reports a login answered with a redirect after a 403 at run time as the call, not as a refused login', async () => {
    // Only a 4xx is a refused login (retryable at run time); anything else below 400 is mapped
    // like any other answer Vault should not give.
    let logins = 0;
    const provider = providerOn({
      [LOGIN]: () => {
        logins++;
        if (logins > 1) throw httpError(307);
        return loginAnswer(0, false);
      },
      [ENCRYPT]: () => {
        throw httpError(403);
      },
    });
    await provider.init();
    const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(error).toBeInstanceOf(ConfigurationError);
  });

  it('reports a service account token that became unreadable after init as retryable', async () => {
    const jwtPath = jwtFile('eyJhbGciOiJSUzI1NiJ9.e30.c2ln', cleanups);
    const provider = providerOn(
      { 'auth/kubernetes/login': () => loginAnswer(0, false), [ENCRYPT]: deniedOnce(encrypted) },
      { method: 'kubernetes', role: 'sessions-app', jwtPath },
    );
    await provider.init();
    rmSync(jwtPath);
    const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(error).toBeInstanceOf(KeyProviderUnavailableError);
  });

  it('does not repeat a call refused with 403 for a plain token: there is no login to retry with', async () => {
    const provider = providerOn(
      {
        'auth/token/lookup-self': () => ({ data: { ttl: 0 } }),
        [ENCRYPT]: () => {
          throw httpError(403);
        },
      },
      { method: 'token', token: 'hvs.token' },
    );
    await provider.init();
    await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(requestsTo(ENCRYPT)).toHaveLength(1);
  });

  it.each([
    ['a token after an error code', 'ECONNRESET hvs.s3cr3tT0ken'],
    ['a token before an error code', 'hvs.s3cr3tT0ken ECONNRESET'],
  ])('does not quote an error code with %s', async (_, code) => {
    const provider = providerOn({
      [LOGIN]: () => loginAnswer(0, false),
      [ENCRYPT]: () => {
        throw Object.assign(new Error('socket hang up'), { code });
      },
    });
    await provider.init();
    const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(error.message).not.toContain('s3cr3t');
  });

  describe('namespace', () => {
    it('sends the namespace with every request through an injected client', async () => {
      const provider = providerOn({ [LOGIN]: () => loginAnswer(0, false) }, undefined, {
        namespace: 'team-a',
      });
      await provider.init();
      expect(requests.map((request) => request.headers['X-Vault-Namespace'])).toEqual([
        'team-a',
        'team-a',
      ]);
    });

    it('gives the client it creates its own namespace, not VAULT_NAMESPACE from the environment', async () => {
      // node-vault falls back to VAULT_NAMESPACE and lets its namespace win over a request's.
      vi.stubEnv('VAULT_NAMESPACE', 'team-b');
      const vault = (server = await VaultTestServer.start({ namespace: 'team-a' }));
      vault.createTransitKey(KEY);
      const provider = new VaultTransitKeyProvider({
        endpoint: vault.endpoint,
        namespace: 'team-a',
        auth: { method: 'token', token: vault.createToken() },
        keyName: KEY,
      });
      await provider.init();
      await provider.close();
      expect(vault.calls.map((call) => call.namespace)).toEqual(['team-a', 'team-a']);
    });
  });

  describe('the connection itself', () => {
    it.each([
      ['read', (connection: VaultConnection) => connection.read('secret/data/root')],
      ['write', (connection: VaultConnection) => connection.write('transit/encrypt/k', {})],
    ] as const)(
      'refuses %s() before open() with the providers\' "used before init()" error',
      async (method, call) => {
        const error = await rejectionOf(() => call(connectionOn({})));
        expect(error).toBeInstanceOf(ConfigurationError);
        expect(error.message).toContain(
          `vault-test key provider: VaultConnection.${method}() was called before init(); `,
        );
      },
    );

    it('reports a missing node-vault package as a ConfigurationError', async () => {
      const connection = new VaultConnection(
        { endpoint: 'http://127.0.0.1:8200', auth: { method: 'token', token: 'hvs.token' } },
        'vault-test',
        () => Promise.reject(new Error("Cannot find package 'node-vault'")),
      );
      const error = await rejectionOf(() => connection.open());
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.message).toMatch(/npm install node-vault/);
    });

    it.each([
      [400, ConfigurationError],
      [500, KeyProviderUnavailableError],
    ] as const)(
      'reads only a 404 as absent in readIfPresent: HTTP %i fails',
      async (status, errorClass) => {
        const connection = connectionOn({
          [LOGIN]: () => loginAnswer(0, false),
          'secret/data/root': () => {
            throw httpError(status);
          },
        });
        await connection.open();
        const error = await rejectionOf(() => connection.readIfPresent('secret/data/root'));
        expect(error).toBeInstanceOf(errorClass);
      },
    );
  });

  describe('token life cycle (fake timers)', () => {
    it('plans nothing for a token without TTL', async () => {
      fakeTime();
      const provider = providerOn({ [LOGIN]: () => loginAnswer(0, true) });
      await provider.init();
      await vi.advanceTimersByTimeAsync(600_000);
      expect(requests.map((request) => request.path)).toEqual([LOGIN, `transit/keys/${KEY}`]);
      await provider.close();
    });

    it('renews at the configured share of the TTL, again after each full renewal', async () => {
      fakeTime();
      const provider = providerOn(
        { [LOGIN]: () => loginAnswer(30, true), [RENEW]: () => loginAnswer(30, true) },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(14_900);
      expect(requestsTo(RENEW)).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(200);
      expect(requestsTo(RENEW)).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(15_000);
      expect(provider.connectionStats()).toMatchObject({ logins: 1, renewals: 2 });
      await provider.close();
    });

    it.each([400, 403])(
      'logs in afresh at once when Vault refuses the renewal with %i',
      async (status) => {
        fakeTime();
        const provider = providerOn(
          {
            [LOGIN]: () => loginAnswer(30, true),
            [RENEW]: () => {
              throw httpError(status);
            },
          },
          undefined,
          { renewAtFraction: 0.5 },
        );
        await provider.init();
        await vi.advanceTimersByTimeAsync(15_100);
        expect(provider.connectionStats()).toMatchObject({ logins: 2, failedRenewals: 1 });
        await provider.close();
      },
    );

    it('logs in afresh when a renewal is capped by the max TTL, at the share of what is left', async () => {
      fakeTime();
      const provider = providerOn(
        { [LOGIN]: () => loginAnswer(30, true), [RENEW]: () => loginAnswer(10, true) },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      // Renewed at 15 s for only 10 s: a fresh login 5 s later, no second renewal.
      await vi.advanceTimersByTimeAsync(19_900);
      expect(provider.connectionStats()).toMatchObject({ logins: 1, renewals: 1 });
      await vi.advanceTimersByTimeAsync(200);
      expect(provider.connectionStats()).toMatchObject({ logins: 2, renewals: 1 });
      expect(requestsTo(RENEW)).toHaveLength(1);
      await provider.close();
    });

    it('leaves no renewal behind when init() fails after the login', async () => {
      fakeTime();
      const provider = providerOn({
        [LOGIN]: () => loginAnswer(30, true),
        [`transit/keys/${KEY}`]: () => {
          throw httpError(404);
        },
      });
      expect(await rejectionOf(() => provider.init())).toBeInstanceOf(ConfigurationError);
      await vi.advanceTimersByTimeAsync(600_000);
      expect(requestsTo(RENEW)).toHaveLength(0);
      expect(requestsTo(LOGIN)).toHaveLength(1);
    });

    it('warns once about a plain token that cannot be renewed, however often it is opened', async () => {
      fakeTime();
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      const provider = providerOn(
        { 'auth/token/lookup-self': () => ({ data: { ttl: 30, renewable: false } }) },
        { method: 'token', token: 'hvs.token' },
      );
      await provider.init();
      await provider.close();
      await provider.init();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(requestsTo('auth/token/lookup-self')).toHaveLength(2);
      expect(requestsTo(RENEW)).toHaveLength(0);
      expect(warn).toHaveBeenCalledTimes(1);
      await provider.close();
    });

    it('stops renewing a plain token once a renewal grants less than the TTL it was created with', async () => {
      fakeTime();
      const provider = providerOn(
        {
          'auth/token/lookup-self': () => ({
            data: { ttl: 30, creation_ttl: 60, renewable: true },
          }),
          [RENEW]: () => loginAnswer(40, true),
        },
        { method: 'token', token: 'hvs.token' },
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      // Renewed at 15 s for 40 s, less than the 60 s the token was created with: its max TTL.
      await vi.advanceTimersByTimeAsync(120_000);
      expect(requestsTo(RENEW)).toHaveLength(1);
      await provider.close();
    });

    it('logs in afresh when a renewal answers that the token is no longer renewable', async () => {
      fakeTime();
      const provider = providerOn(
        { [LOGIN]: () => loginAnswer(30, true), [RENEW]: () => loginAnswer(30, false) },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(30_100);
      expect(provider.connectionStats()).toMatchObject({ logins: 2, renewals: 1 });
      await provider.close();
    });

    it('plans nothing after a renewal that grants no TTL', async () => {
      fakeTime();
      const provider = providerOn(
        { [LOGIN]: () => loginAnswer(30, true), [RENEW]: () => ({ auth: { renewable: true } }) },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(600_000);
      expect(provider.connectionStats()).toMatchObject({ logins: 1, renewals: 1 });
      await provider.close();
    });

    it('retries a failed login after a capped renewal at a third of what the renewal left', async () => {
      fakeTime();
      let logins = 0;
      const provider = providerOn(
        {
          [LOGIN]: () => {
            logins++;
            if (logins === 2) throw httpError(503);
            return loginAnswer(300, true);
          },
          [RENEW]: () => loginAnswer(120, true),
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      // Renewed at 150 s for 120 s (capped): the login at 210 s fails, 60 s before expiry, so
      // the next try comes 20 s later.
      await vi.advanceTimersByTimeAsync(229_900);
      const before = logins;
      await vi.advanceTimersByTimeAsync(200);
      expect([before, logins]).toEqual([2, 3]);
      await provider.close();
    });

    it("drops the old token's renewal when a call logs in afresh", async () => {
      fakeTime();
      const provider = providerOn(
        {
          [LOGIN]: () => loginAnswer(30, true),
          [RENEW]: () => loginAnswer(30, true),
          [ENCRYPT]: deniedOnce(encrypted),
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(10_000);
      // A fresh login at 10 s: its token is renewed at 25 s, and the old one's plan (15 s) goes.
      await provider.generateDataKey(contextFor());
      await vi.advanceTimersByTimeAsync(14_900);
      expect(requestsTo(RENEW)).toHaveLength(0);
      await provider.close();
    });

    it('ignores a renewal of the old token that fails after a call logged in afresh', async () => {
      fakeTime();
      const renewal = heldAnswer();
      const provider = providerOn(
        {
          [LOGIN]: () => loginAnswer(30, true),
          [RENEW]: renewal.answer,
          [ENCRYPT]: deniedOnce(encrypted),
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(15_100);
      await provider.generateDataKey(contextFor());
      renewal.held.reject(httpError(403));
      await vi.advanceTimersByTimeAsync(1_000);
      expect(provider.connectionStats().logins).toBe(2);
      await provider.close();
    });

    it("keeps the fresh token's renewal plan when a renewal of the old token answers late", async () => {
      fakeTime();
      const first = heldAnswer();
      let renewals = 0;
      const provider = providerOn(
        {
          [LOGIN]: () => loginAnswer(30, true),
          [RENEW]: () => {
            renewals++;
            return renewals === 1 ? first.answer() : loginAnswer(30, true);
          },
          [ENCRYPT]: deniedOnce(encrypted),
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(15_100);
      // A fresh login at 15.1 s (renewal due at 30.1 s), then the old token's renewal answers.
      await provider.generateDataKey(contextFor());
      first.held.resolve(loginAnswer(300, true));
      await vi.advanceTimersByTimeAsync(15_100);
      expect(requestsTo(RENEW)).toHaveLength(2);
      await provider.close();
    });

    it('keeps one renewal plan when a renewal from before close() fails after the reopen', async () => {
      fakeTime();
      const first = heldAnswer();
      let renewals = 0;
      const provider = providerOn(
        {
          'auth/token/lookup-self': () => ({ data: { ttl: 30, renewable: true } }),
          [RENEW]: () => {
            renewals++;
            return renewals === 1 ? first.answer() : loginAnswer(30, true);
          },
        },
        { method: 'token', token: 'hvs.token' },
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(15_100);
      await provider.close();
      // Reopened at 15.1 s: renewal due at 30.1 s, until the old renewal fails and its retry
      // (a third of the 30 s left) takes the place of that plan.
      await provider.init();
      first.held.reject(httpError(503));
      await vi.advanceTimersByTimeAsync(15_500);
      expect(requestsTo(RENEW)).toHaveLength(2);
      await provider.close();
    });

    it('plans no renewal for a login that completes after close()', async () => {
      fakeTime();
      const provider: VaultTransitKeyProvider = providerOn(
        {
          [LOGIN]: () => {
            void provider.close();
            return loginAnswer(30, true);
          },
        },
        undefined,
        { renewAtFraction: 0.5 },
      );
      await provider.init();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(requestsTo(RENEW)).toHaveLength(0);
    });

    it('leaves its renewal timer unreferenced, so it never keeps the process alive', async () => {
      const timers = vi.spyOn(globalThis, 'setTimeout');
      const provider = providerOn({ [LOGIN]: () => loginAnswer(30, true) });
      await provider.init();
      const referenced = timers.mock.results.map(({ value }) => (value as NodeJS.Timeout).hasRef());
      await provider.close();
      expect(referenced).toEqual([false]);
    });
  });
});

describe('sanitizeVaultError at its edges', () => {
  it.each([
    ['a 32-letter run without digits', `bad ${'a'.repeat(32)} value`, 'bad [redacted] value'],
    [
      'a 31-letter run without digits',
      `bad ${'a'.repeat(31)} value`,
      `bad ${'a'.repeat(31)} value`,
    ],
    ['a 20-character run with a digit', `bad ${'a'.repeat(19)}1 value`, 'bad [redacted] value'],
    [
      'a 19-character run with a digit',
      `bad ${'a'.repeat(18)}1 value`,
      `bad ${'a'.repeat(18)}1 value`,
    ],
    [
      'the header of a single error',
      '1 error occurred:\n\t* permission denied\n\n',
      'permission denied',
    ],
    ['bullets and runs of white space', '* a\n\t*  b', 'a b'],
    [
      'a ciphertext of a two-digit key version',
      'bad vault:v12:AAAAbbbbCCCC== here',
      'bad vault:v…:[redacted] here',
    ],
  ])('handles %s', (_, input, output) => {
    expect(sanitizeVaultError(input)).toBe(output);
  });

  it('caps the text at 200 characters', () => {
    expect(sanitizeVaultError('word '.repeat(100))).toHaveLength(200);
  });
});

describe('numberField at its edges', () => {
  it.each<[string, unknown]>([
    ['null', null],
    ['white space', ' '],
    ['a word', 'abc'],
  ])('reads %s as no number', (_, value) => {
    expect(numberField({ ttl: value }, 'ttl')).toBeUndefined();
  });
});
