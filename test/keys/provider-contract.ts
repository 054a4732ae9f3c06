import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionError,
  IntegrityError,
  KeyProviderUnavailableError,
  type DataKeyContext,
  type KeyProvider,
} from '../../src/index.js';
import { errorText } from '../support/error-text.js';
import { rejectionOf } from '../support/thrown-by.js';

/** A provider under test, with the levers the shared suite pulls. */
export interface ProviderFixture {
  readonly provider: KeyProvider;
  /**
   * Makes a new root key (or key version) the active one, as an operator's rotation would,
   * and returns once `provider.activeKekId()` names it.
   */
  rotateRootKey(): Promise<void>;
  /**
   * Makes the provider's service refuse every call (503 / connection refused) until
   * `restoreService`. Only for providers with a service (see describeRemoteProviderContract).
   */
  breakService?(): Promise<void>;
  restoreService?(): Promise<void>;
  /** Secrets the fixture knows (tokens, root key material) that must never appear in errors. */
  readonly secrets: readonly string[];
  close(): Promise<void>;
}

export type ProviderFixtureFactory = () => Promise<ProviderFixture>;

const contextFor = (dekId = randomUUID()): DataKeyContext => ({
  tenantId: 'acme',
  sessionId: `s-${randomUUID()}`,
  dekId,
});

/**
 * Creates and inits a fresh fixture before each test (handing it to `use`) and closes it
 * after.
 */
function openFixtureEachTest(
  createFixture: ProviderFixtureFactory,
  use: (fixture: ProviderFixture) => void,
): void {
  let opened: ProviderFixture;
  beforeEach(async () => {
    opened = await createFixture();
    await opened.provider.init?.();
    use(opened);
  });
  afterEach(async () => {
    await opened.provider.close?.();
    await opened.close();
  });
}

/**
 * The one wording every provider with an `init()` uses when called before it, pinned here so
 * the providers cannot drift apart again.
 */
const usedBeforeInitMessage = (providerName: string, method: string): string =>
  `${providerName} key provider: ${method}() was called before init(); the module awaits init() at startup, so when using the provider on its own, await provider.init() first`;

/** Each key call of the port, made on a provider that was never initialised. */
const callsBeforeInit: readonly [string, (provider: KeyProvider) => Promise<unknown>][] = [
  ['activeKekId', async (provider) => provider.activeKekId()],
  ['generateDataKey', (provider) => provider.generateDataKey(contextFor())],
  // The init check comes before the wrapped key is read, so any bytes do.
  [
    'unwrapDataKey',
    (provider) =>
      provider.unwrapDataKey({ kekId: 'none', wrappedKey: Buffer.alloc(48) }, contextFor()),
  ],
  [
    'rewrapDataKey',
    (provider) =>
      provider.rewrapDataKey({ kekId: 'none', wrappedKey: Buffer.alloc(48) }, contextFor()),
  ],
];

/** Fails when an error shows a key (as base64 or hex) or a fixture secret anywhere. */
function expectNoSecrets(
  error: unknown,
  keys: readonly Buffer[],
  secrets: readonly string[],
): void {
  const text = errorText(error);
  const forbidden = [
    ...keys.flatMap((key) => [key.toString('base64'), key.toString('hex')]),
    ...secrets,
  ];
  expect(forbidden.filter((secret) => text.includes(secret)).map((s) => s.slice(0, 6))).toEqual([]);
}

/**
 * The behaviour every key provider must show, written once and run against each provider
 * over its real client (env in memory; KMS and Vault against the loopback test servers).
 */
export function describeKeyProviderContract(
  name: string,
  createFixture: ProviderFixtureFactory,
): void {
  describe(`KeyProvider contract: ${name}`, () => {
    let fixture: ProviderFixture;
    let provider: KeyProvider;

    openFixtureEachTest(createFixture, (opened) => {
      fixture = opened;
      provider = opened.provider;
    });

    it('generates a random 32-byte data key wrapped under the active root key', async () => {
      const context = contextFor();
      const first = await provider.generateDataKey(context);
      const second = await provider.generateDataKey(contextFor());
      expect(first.plaintext).toHaveLength(32);
      expect(first.plaintext.equals(second.plaintext)).toBe(false);
      expect(first.wrapped.kekId).toBe(provider.activeKekId());
      expect(first.wrapped.wrappedKey.includes(first.plaintext)).toBe(false);
    });

    it('unwraps what it wrapped, given the same context', async () => {
      const context = contextFor();
      const { plaintext, wrapped } = await provider.generateDataKey(context);
      expect((await provider.unwrapDataKey(wrapped, context)).equals(plaintext)).toBe(true);
    });

    it.each([
      ['tenant', { tenantId: 'other-tenant' }],
      ['session', { sessionId: 'other-session' }],
      ['data key id', { dekId: randomUUID() }],
    ])('refuses to unwrap under another %s with IntegrityError', async (_, change) => {
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      await expect(
        provider.unwrapDataKey(wrapped, { ...context, ...change }),
      ).rejects.toBeInstanceOf(IntegrityError);
    });

    it('refuses a tampered wrapped key with IntegrityError', async () => {
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      const tampered = Buffer.from(wrapped.wrappedKey);
      tampered[tampered.length - 3] ^= 0x01;
      await expect(
        provider.unwrapDataKey({ kekId: wrapped.kekId, wrappedKey: tampered }, context),
      ).rejects.toBeInstanceOf(IntegrityError);
    });

    it('after a root key rotation wraps under the new key and still unwraps the old ones', async () => {
      const context = contextFor();
      const before = await provider.generateDataKey(context);
      const oldKekId = provider.activeKekId();
      await fixture.rotateRootKey();
      expect(provider.activeKekId()).not.toBe(oldKekId);
      const after = await provider.generateDataKey(contextFor());
      expect(after.wrapped.kekId).toBe(provider.activeKekId());
      expect((await provider.unwrapDataKey(before.wrapped, context)).equals(before.plaintext)).toBe(
        true,
      );
    });

    it('rewraps a data key under the active root key without changing it', async () => {
      const context = contextFor();
      const { plaintext, wrapped } = await provider.generateDataKey(context);
      await fixture.rotateRootKey();
      const rewrapped = await provider.rewrapDataKey(wrapped, context);
      expect(rewrapped.kekId).toBe(provider.activeKekId());
      expect(rewrapped.kekId).not.toBe(wrapped.kekId);
      expect((await provider.unwrapDataKey(rewrapped, context)).equals(plaintext)).toBe(true);
    });

    it('refuses to rewrap under another context with IntegrityError', async () => {
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      await fixture.rotateRootKey();
      await expect(
        provider.rewrapDataKey(wrapped, { ...context, sessionId: 'other-session' }),
      ).rejects.toBeInstanceOf(IntegrityError);
    });

    it('keeps data keys, wrapped keys and secrets out of integrity errors', async () => {
      const context = contextFor();
      const { plaintext, wrapped } = await provider.generateDataKey(context);
      const failure = await provider
        .unwrapDataKey(wrapped, { ...context, tenantId: 'x' })
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(IntegrityError);
      expectNoSecrets(failure, [plaintext, wrapped.wrappedKey], fixture.secrets);
    });
  });
}

/**
 * What only a provider with a service shows (env keys live in the process and cannot be
 * unreachable): run by the KMS and Vault specs next to {@link describeKeyProviderContract}.
 */
export function describeRemoteProviderContract(
  name: string,
  createFixture: ProviderFixtureFactory,
): void {
  // Every remote provider has init(); env keys are ready once built, with no "before".
  describe(`KeyProvider contract, before init(): ${name}`, () => {
    let unopened: ProviderFixture | undefined;

    afterEach(async () => {
      await unopened?.provider.close?.();
      await unopened?.close();
      unopened = undefined;
    });

    it.for(callsBeforeInit)(
      'refuses %s() before init() with the shared ConfigurationError',
      async ([method, call]) => {
        unopened = await createFixture();
        const { provider } = unopened;
        const failure = await rejectionOf(() => call(provider));
        expect(failure).toBeInstanceOf(ConfigurationError);
        expect(failure.message).toBe(usedBeforeInitMessage(provider.name, method));
      },
    );
  });

  describe(`KeyProvider contract, remote service: ${name}`, () => {
    let fixture: ProviderFixture;
    let provider: KeyProvider;

    openFixtureEachTest(createFixture, (opened) => {
      fixture = opened;
      provider = opened.provider;
    });

    it('reports an unreachable service as a retryable KeyProviderUnavailableError', async () => {
      const context = contextFor();
      const { wrapped } = await provider.generateDataKey(context);
      await fixture.breakService!();
      try {
        const failure = await provider
          .unwrapDataKey(wrapped, context)
          .catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
        expect((failure as EncryptedSessionError).retryable).toBe(true);
      } finally {
        await fixture.restoreService!();
      }
      expect(await provider.unwrapDataKey(wrapped, context)).toHaveLength(32);
    });

    it('keeps data keys, wrapped keys and secrets out of outage errors', async () => {
      const context = contextFor();
      const { plaintext, wrapped } = await provider.generateDataKey(context);
      await fixture.breakService!();
      const failure = await provider
        .unwrapDataKey(wrapped, context)
        .catch((error: unknown) => error);
      await fixture.restoreService!();
      expect(failure).toBeInstanceOf(KeyProviderUnavailableError);
      expectNoSecrets(failure, [plaintext, wrapped.wrappedKey], fixture.secrets);
    });
  });
}
