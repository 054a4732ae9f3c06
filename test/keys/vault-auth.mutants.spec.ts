import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigurationError,
  KeyProviderUnavailableError,
  VaultTransitKeyProvider,
  type DataKeyContext,
  type VaultAuthOptions,
  type VaultTransitKeyProviderOptions,
} from '../../src/index.js';
import { sanitizeVaultError } from '../../src/keys/providers/vault-auth.js';

/*
 * The Vault connection (login, renewal, error mapping, option checks) against a scripted
 * node-vault client: failures the test server does not produce, and renewal timing driven by
 * fake timers instead of real waits. Each test pins one check whose removal StrykerJS showed no
 * other test noticing.
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

const transitKey = () => ({
  data: { derived: true, supports_encryption: true, latest_version: 1 },
});
const loginAnswer = (leaseSeconds: number, renewable: boolean) => ({
  auth: { client_token: `hvs.${randomUUID()}`, lease_duration: leaseSeconds, renewable },
});

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

async function rejectionOf(action: () => Promise<unknown>): Promise<Error> {
  try {
    await action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

describe('Vault connection against a scripted Vault client', () => {
  afterEach(() => {
    requests.length = 0;
    vi.useRealTimers();
    vi.restoreAllMocks();
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
      ['an ftp endpoint', { endpoint: 'ftp://127.0.0.1:8200' }],
      ['a zero requestTimeoutMs', { requestTimeoutMs: 0 }],
      ['a requestTimeoutMs that is not a number', { requestTimeoutMs: Number.NaN }],
      ['a renewAtFraction of 0', { renewAtFraction: 0 }],
      ['a renewAtFraction of 1', { renewAtFraction: 1 }],
      ['a blank token', { auth: { method: 'token', token: '  ' } }],
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

  it('refuses a call before init() with a ConfigurationError', async () => {
    const provider = providerOn({});
    const error = await rejectionOf(() => provider.generateDataKey(contextFor()));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/used before init\(\)/);
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

  it.each([
    ['without a client token', { lease_duration: 60 }],
    ['with an empty client token', { client_token: '', lease_duration: 60 }],
  ])('reports a login answer %s as retryable', async (_, auth) => {
    const provider = providerOn({ [LOGIN]: () => ({ auth }) });
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
  ])('handles %s', (_, input, output) => {
    expect(sanitizeVaultError(input)).toBe(output);
  });

  it('caps the text at 200 characters', () => {
    expect(sanitizeVaultError('word '.repeat(100))).toHaveLength(200);
  });
});
