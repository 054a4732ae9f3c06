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
  const answer = (path: string) => {
    const script = answers[path];
    if (!script) return Promise.reject(new Error(`unscripted ${path}`));
    try {
      return Promise.resolve(script());
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return { token: '', read: answer, write: (path: string) => answer(path) };
}

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

  it('reports a login answer without a client token as retryable', async () => {
    const provider = providerOn({ [LOGIN]: () => ({ auth: { lease_duration: 60 } }) });
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
});
