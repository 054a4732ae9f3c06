import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger, type ArgumentsHost } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { startDemo } from '../../examples/demo/bootstrap.js';
import { DemoExceptionFilter } from '../../examples/demo/demo-exception.filter.js';
import {
  ConfigurationError,
  IntegrityError,
  KeyDestroyedError,
  KeyProviderUnavailableError,
  KeyUnusableError,
  ShuttingDownError,
  StorageUnavailableError,
} from '../../src/index.js';

/** Runs the demo's error filter on `error` and returns what it answered. */
function answer(error: unknown, requestHeaders: Record<string, string> = {}) {
  const headers: Record<string, string> = {};
  let reply: { body: Record<string, unknown>; status: number } | undefined;
  const adapterHost = {
    httpAdapter: {
      setHeader: (_response: unknown, name: string, value: string) => (headers[name] = value),
      reply: (_response: unknown, body: Record<string, unknown>, status: number) =>
        (reply = { body, status }),
    },
  } as unknown as HttpAdapterHost;
  const request = {
    method: 'GET',
    originalUrl: '/sessions/s-1/items?limit=2',
    headers: requestHeaders,
  };
  const host = {
    switchToHttp: () => ({ getResponse: () => ({}), getRequest: () => request }),
  } as unknown as ArgumentsHost;
  new DemoExceptionFilter(adapterHost).catch(error, host);
  return { ...reply!, headers };
}

const CANARY = `library-detail-${randomBytes(6).toString('hex')}`;

describe('README: what the demo exposes', () => {
  // The filter logs every 5xx; keep those lines for the test that reads them, off the console.
  let loggedErrors: MockInstance<Logger['error']>;
  beforeEach(() => {
    loggedErrors = vi.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

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
    ['IntegrityError', new IntegrityError(CANARY), 500, 'INTEGRITY', false],
    [
      'StorageUnavailableError',
      new StorageUnavailableError(CANARY),
      503,
      'STORAGE_UNAVAILABLE',
      true,
    ],
    ['an unexpected TypeError', new TypeError(CANARY), 500, 'INTERNAL', false],
    ['a thrown string', CANARY, 500, 'INTERNAL', false],
  ])(
    'answers %s with the one error shape and no detail',
    (_name, error, statusCode, code, retryable) => {
      const { body, status } = answer(error);
      expect(status).toBe(statusCode);
      expect(body).toEqual({ statusCode, error: code, message: expect.any(String), retryable });
      expect(JSON.stringify(body)).not.toContain(CANARY);
    },
  );

  it.each([
    ['KeyProviderUnavailableError', new KeyProviderUnavailableError('down'), '1'],
    ['StorageUnavailableError', new StorageUnavailableError('down'), '1'],
    ['ShuttingDownError', new ShuttingDownError('closing'), '1'],
    ['IntegrityError', new IntegrityError('bad'), undefined],
  ])('sets Retry-After on retryable errors only (%s)', (_name, error, retryAfter) => {
    expect(answer(error).headers['Retry-After']).toBe(retryAfter);
  });

  it('logs a server-side failure with the tenant and route, never the query string', () => {
    answer(new IntegrityError('row 7 failed'), { 'x-tenant-id': 'acme' });
    answer(new IntegrityError('row 8 failed'));
    expect(loggedErrors.mock.calls.map(([line]) => String(line))).toEqual([
      'tenant "acme" GET /sessions/s-1/items -> 500 INTEGRITY: IntegrityError (INTEGRITY): row 7 failed',
      'tenant "default" GET /sessions/s-1/items -> 500 INTEGRITY: IntegrityError (INTEGRITY): row 8 failed',
    ]);
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
