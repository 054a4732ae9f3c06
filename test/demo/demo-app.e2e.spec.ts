import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoggerService } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDemoApp,
  startDemo,
  storageFromUrl,
  type RunningDemo,
} from '../../examples/demo/bootstrap.js';
import { DEV_KEY_FILE_NAME, DemoKeysError } from '../../examples/demo/demo-keys.js';
import {
  createTestDatabase,
  sqlServerUp,
  type TestDatabase,
} from '../support/sql-server-support.js';

/** Collects every log line so tests can check what the demo does (and does not) log. */
class CapturingLogger implements LoggerService {
  readonly lines: { level: string; text: string }[] = [];
  log = (message: unknown, ...rest: unknown[]) => this.push('log', message, rest);
  warn = (message: unknown, ...rest: unknown[]) => this.push('warn', message, rest);
  error = (message: unknown, ...rest: unknown[]) => this.push('error', message, rest);
  debug = (message: unknown, ...rest: unknown[]) => this.push('debug', message, rest);
  verbose = (message: unknown, ...rest: unknown[]) => this.push('verbose', message, rest);
  fatal = (message: unknown, ...rest: unknown[]) => this.push('fatal', message, rest);

  get text(): string {
    return this.lines.map((line) => line.text).join('\n');
  }

  private push(level: string, message: unknown, rest: unknown[]): void {
    const parts = [message, ...rest].map((part) =>
      part instanceof Error ? `${part.message}\n${part.stack}` : String(part),
    );
    this.lines.push({ level, text: parts.join(' ') });
  }
}

const tempDirs: string[] = [];
function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nes-demo-'));
  tempDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

async function call(
  demo: RunningDemo,
  method: string,
  path: string,
  options: { body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: unknown; text: string }> {
  const hasBody = options.body !== undefined || options.rawBody !== undefined;
  const response = await fetch(demo.url + path, {
    method,
    headers: {
      ...(hasBody ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    body:
      options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text), text };
}

describe('demo app with keys from SESSION_KEYS', () => {
  const rootKey = randomBytes(32).toString('base64');
  const env = { SESSION_KEYS: `t1:${rootKey}`, SESSION_ACTIVE_KEY: 't1' };
  const logger = new CapturingLogger();
  // Content that must appear only in responses to the owner, never in files, errors or logs.
  const marker = `patient-note-${randomBytes(8).toString('hex')}`;
  let dataDir: string;
  let demo: RunningDemo;

  beforeAll(async () => {
    dataDir = tempDataDir();
    demo = await startDemo({ env, dataDir, port: 0, host: '127.0.0.1', logger });
  });

  afterAll(async () => {
    await demo?.app.close();
  });

  it('appends a batch and a single item, then returns the newest N in order with ?limit', async () => {
    const batch = await call(demo, 'POST', '/sessions/chat-1/items', {
      body: {
        items: [
          { role: 'user', content: 'first' },
          { role: 'assistant', content: 'second' },
          { role: 'user', content: marker },
        ],
      },
    });
    expect(batch).toMatchObject({ status: 201, body: { appended: 3 } });
    const single = await call(demo, 'POST', '/sessions/chat-1/items', {
      body: { role: 'assistant', content: 'fourth' },
    });
    expect(single).toMatchObject({ status: 201, body: { appended: 1 } });

    const newestTwo = await call(demo, 'GET', '/sessions/chat-1/items?limit=2');
    expect(newestTwo.status).toBe(200);
    expect(newestTwo.body).toEqual({
      items: [
        { role: 'user', content: marker },
        { role: 'assistant', content: 'fourth' },
      ],
    });
    const all = await call(demo, 'GET', '/sessions/chat-1/items');
    expect((all.body as { items: unknown[] }).items).toHaveLength(4);
    const none = await call(demo, 'GET', '/sessions/chat-1/items?limit=0');
    expect(none.body).toEqual({ items: [] });
  });

  it('stores the SQLite file in the data folder with no plaintext in it', () => {
    const files = readdirSync(dataDir).filter((name) => name.startsWith('demo.sqlite'));
    expect(files).toContain('demo.sqlite');
    for (const name of files) {
      expect(readFileSync(join(dataDir, name)).includes(marker), name).toBe(false);
    }
  });

  it('pops the newest item (POST /pop and DELETE /items/last), then answers 404 { item: null }', async () => {
    await call(demo, 'POST', '/sessions/pop-1/items', {
      body: {
        items: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'b' },
        ],
      },
    });
    expect(await call(demo, 'POST', '/sessions/pop-1/pop')).toMatchObject({
      status: 200,
      body: { item: { role: 'assistant', content: 'b' } },
    });
    expect(await call(demo, 'DELETE', '/sessions/pop-1/items/last')).toMatchObject({
      status: 200,
      body: { item: { role: 'user', content: 'a' } },
    });
    const empty = await call(demo, 'POST', '/sessions/pop-1/pop');
    expect(empty).toMatchObject({ status: 404, body: { item: null } });
  });

  it('clears a session with DELETE /sessions/:id -> 204', async () => {
    await call(demo, 'POST', '/sessions/clear-1/items', { body: { role: 'user', content: 'x' } });
    const cleared = await call(demo, 'DELETE', '/sessions/clear-1');
    expect(cleared.status).toBe(204);
    expect(cleared.text).toBe('');
    expect((await call(demo, 'GET', '/sessions/clear-1/items')).body).toEqual({ items: [] });
  });

  it('keeps tenants apart by the x-tenant-id header', async () => {
    await call(demo, 'POST', '/sessions/shared-id/items', {
      headers: { 'x-tenant-id': 'acme' },
      body: { role: 'user', content: 'acme only' },
    });
    const otherTenant = await call(demo, 'GET', '/sessions/shared-id/items', {
      headers: { 'x-tenant-id': 'globex' },
    });
    expect(otherTenant.body).toEqual({ items: [] });
    const defaultTenant = await call(demo, 'GET', '/sessions/shared-id/items');
    expect(defaultTenant.body).toEqual({ items: [] });
    const owner = await call(demo, 'GET', '/sessions/shared-id/items', {
      headers: { 'x-tenant-id': 'acme' },
    });
    expect(owner.body).toEqual({ items: [{ role: 'user', content: 'acme only' }] });
  });

  it('maps InvalidArgumentError to 400 with the error code', async () => {
    const negative = await call(demo, 'GET', '/sessions/chat-1/items?limit=-1');
    expect(negative).toMatchObject({
      status: 400,
      body: { statusCode: 400, error: 'INVALID_ARGUMENT', retryable: false },
    });
    const longId = await call(demo, 'GET', `/sessions/${'x'.repeat(300)}/items`);
    expect(longId).toMatchObject({ status: 400, body: { error: 'INVALID_ARGUMENT' } });
  });

  it('rejects bad bodies with 400 without echoing what was sent', async () => {
    // The JSON parser's own message quotes the first characters of the body.
    const notJson = await call(demo, 'POST', '/sessions/chat-1/items', {
      rawBody: 'ssn 078-05-1120',
    });
    expect(notJson).toMatchObject({
      status: 400,
      body: { message: 'Request body is not valid JSON' },
    });
    expect(notJson.text).not.toContain('ssn');
    const notItems = await call(demo, 'POST', '/sessions/chat-1/items', {
      body: { items: [{ content: marker }] },
    });
    expect(notItems.status).toBe(400);
    expect(notItems.text).not.toContain(marker);
    const unchanged = await call(demo, 'GET', '/sessions/chat-1/items');
    expect((unchanged.body as { items: unknown[] }).items).toHaveLength(4);
  });

  it('never logs item content or key material', () => {
    expect(logger.text).toContain('Demo listening on');
    expect(logger.text).not.toContain(marker);
    expect(logger.text).not.toContain(rootKey);
  });
});

describe('demo key configuration', () => {
  it('refuses to start with NODE_ENV=production and no keys, naming what to set', async () => {
    const dataDir = tempDataDir();
    const failure = startDemo({
      env: { NODE_ENV: 'production' },
      dataDir,
      port: 0,
      logger: new CapturingLogger(),
    });
    await expect(failure).rejects.toBeInstanceOf(DemoKeysError);
    await expect(failure).rejects.toThrow(/SESSION_KEYS/);
    await expect(failure).rejects.toThrow(/SESSION_ACTIVE_KEY/);
    await expect(failure).rejects.toThrow(/openssl rand -base64 32/);
    expect(existsSync(join(dataDir, DEV_KEY_FILE_NAME))).toBe(false);
  });

  it('refuses SESSION_KEYS without SESSION_ACTIVE_KEY, listing the key ids', async () => {
    const failure = createDemoApp({
      env: { SESSION_KEYS: `a1:${randomBytes(32).toString('base64')}` },
      dataDir: tempDataDir(),
      logger: new CapturingLogger(),
    });
    await expect(failure).rejects.toThrow(/SESSION_ACTIVE_KEY is not set.*one of: a1/);
  });

  it('creates a 0600 development key file outside production, warns loudly, and reuses it', async () => {
    const dataDir = tempDataDir();
    const keyFile = join(dataDir, DEV_KEY_FILE_NAME);
    const firstLogger = new CapturingLogger();
    const first = await startDemo({ env: {}, dataDir, port: 0, logger: firstLogger });
    let content: string;
    try {
      content = readFileSync(keyFile, 'utf8');
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const key = /^SESSION_KEYS=dev1:([A-Za-z0-9+/]{43}=)$/m.exec(content)?.[1];
      expect(key).toBeDefined();
      expect(Buffer.from(key!, 'base64')).toHaveLength(32);
      expect(content).toMatch(/^SESSION_ACTIVE_KEY=dev1$/m);

      const warnings = firstLogger.lines.filter((line) => line.level === 'warn');
      expect(warnings.length).toBeGreaterThanOrEqual(5);
      const warningText = warnings.map((line) => line.text).join('\n');
      expect(warningText).toContain('NOT FOR PRODUCTION');
      expect(warningText).toContain('SESSION_KEYS');
      expect(warningText).toContain('openssl rand -base64 32');
      expect(firstLogger.text).not.toContain(key!);

      await call(first, 'POST', '/sessions/dev-1/items', {
        body: { role: 'user', content: 'kept' },
      });
    } finally {
      await first.app.close();
    }

    // A restart reuses the same key, so what was written before is still readable.
    const secondLogger = new CapturingLogger();
    const second = await startDemo({ env: {}, dataDir, port: 0, logger: secondLogger });
    try {
      expect(readFileSync(keyFile, 'utf8')).toBe(content);
      expect(secondLogger.text).toContain('reuses');
      const items = await call(second, 'GET', '/sessions/dev-1/items');
      expect(items.body).toEqual({ items: [{ role: 'user', content: 'kept' }] });
    } finally {
      await second.app.close();
    }
  });
});

const postgresUp = await sqlServerUp('postgres');

describe('demo storage from SESSION_STORAGE_URL', () => {
  let database: TestDatabase | undefined;
  afterAll(async () => {
    await database?.drop();
  });

  it.skipIf(!postgresUp)('stores sessions on the Postgres server the URL names', async () => {
    database = await createTestDatabase('postgres');
    const logger = new CapturingLogger();
    const env = {
      SESSION_KEYS: `t1:${randomBytes(32).toString('base64')}`,
      SESSION_ACTIVE_KEY: 't1',
      SESSION_STORAGE_URL: database.url,
    };
    const demo = await startDemo({ env, dataDir: tempDataDir(), port: 0, logger });
    try {
      await call(demo, 'POST', '/sessions/pg-1/items', {
        body: { role: 'user', content: 'on pg' },
      });
      const items = await call(demo, 'GET', '/sessions/pg-1/items');
      expect(items.body).toEqual({ items: [{ role: 'user', content: 'on pg' }] });
      expect(logger.text).toContain('Sessions in postgres');
    } finally {
      await demo.app.close();
    }
  });

  it('refuses a URL of an unknown kind without echoing it', () => {
    expect(() => storageFromUrl('ftp://user:canary-secret@host/x')).toThrow(
      /must start with postgres:\/\//,
    );
    expect(() => storageFromUrl('ftp://user:canary-secret@host/x')).not.toThrow(/canary-secret/);
  });
});
