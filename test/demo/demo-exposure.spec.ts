import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArgumentsHost } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import { describe, expect, it } from 'vitest';
import { startDemo } from '../../examples/demo/bootstrap.js';
import { SessionErrorFilter } from '../../examples/demo/session-error.filter.js';
import {
  ConfigurationError,
  IntegrityError,
  KeyDestroyedError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  ShuttingDownError,
  StorageUnavailableError,
  type EncryptedSessionError,
} from '../../src/index.js';

/** Runs the demo's error filter on `error` and returns what it answered. */
function answer(error: EncryptedSessionError) {
  const headers: Record<string, string> = {};
  let reply: { body: { message: string }; status: number } | undefined;
  const adapterHost = {
    httpAdapter: {
      setHeader: (_response: unknown, name: string, value: string) => (headers[name] = value),
      reply: (_response: unknown, body: { message: string }, status: number) =>
        (reply = { body, status }),
    },
  } as unknown as HttpAdapterHost;
  const host = {
    switchToHttp: () => ({ getResponse: () => ({}) }),
  } as unknown as ArgumentsHost;
  new SessionErrorFilter(adapterHost).catch(error, host);
  return { ...reply!, headers };
}

const CANARY = `library-detail-${randomBytes(6).toString('hex')}`;

describe('README: what the demo exposes', () => {
  it.each([
    ['IntegrityError', new IntegrityError(CANARY)],
    ['KeyDestroyedError', new KeyDestroyedError(CANARY)],
    ['ConfigurationError', new ConfigurationError(CANARY)],
    ['KeyProviderUnavailableError', new KeyProviderUnavailableError(CANARY)],
    ['StorageUnavailableError', new StorageUnavailableError(CANARY)],
    ['ShuttingDownError', new ShuttingDownError(CANARY)],
    ['KeyUnusableError', new KeyUnusableError(CANARY)],
  ])('answers %s with a fixed message, not the library message', (_name, error) => {
    const { body } = answer(error);
    expect(body.message).not.toContain(CANARY);
  });

  it.each([
    ['KeyProviderUnavailableError', new KeyProviderUnavailableError('down'), '1'],
    ['StorageUnavailableError', new StorageUnavailableError('down'), '1'],
    ['ShuttingDownError', new ShuttingDownError('closing'), '1'],
    ['IntegrityError', new IntegrityError('bad'), undefined],
  ])('sets Retry-After on retryable errors only (%s)', (_name, error, retryAfter) => {
    expect(answer(error).headers['Retry-After']).toBe(retryAfter);
  });

  it('listens on 127.0.0.1 when HOST is not set', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'nes-demo-host-'));
    const env = {
      SESSION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
      SESSION_ACTIVE_KEY: 'k1',
    };
    const demo = await startDemo({ env, dataDir, port: 0, logger: false });
    try {
      expect(new URL(demo.url).hostname).toBe('127.0.0.1');
    } finally {
      await demo.app.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
