import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import type { LoggerService } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createDemoApp,
  startDemo,
  storageFromUrl,
  type RunningDemo,
} from '../../examples/demo/bootstrap.js';
import { DEV_KEY_FILE_NAME, DemoKeysError } from '../../examples/demo/demo-keys.js';
import { JSON_BODY_LIMIT_BYTES } from '../../examples/demo/demo-request.js';
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

interface CallOptions {
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
  /** Content-Type of a body; `null` sends none. @default 'application/json' */
  contentType?: string | null;
}

async function call(
  demo: RunningDemo,
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<{ status: number; body: unknown; text: string }> {
  const payload =
    options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const contentType =
    payload === undefined
      ? null
      : options.contentType === undefined
        ? 'application/json'
        : options.contentType;
  const response = await fetch(demo.url + path, {
    method,
    headers: {
      ...(contentType === null ? {} : { 'content-type': contentType }),
      ...options.headers,
    },
    // Bytes, not a string: fetch would add its own "text/plain" to a string body.
    body: payload === undefined ? undefined : Buffer.from(payload),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text), text };
}

/** The four fields of every error body of the demo, whatever failed. */
const ERROR_BODY_KEYS = ['error', 'message', 'retryable', 'statusCode'];

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
    expect(empty).toMatchObject({
      status: 404,
      body: { statusCode: 404, error: 'SESSION_EMPTY', retryable: false },
    });
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

  it('refuses a body not sent as Content-Type: application/json with 415, naming the header', async () => {
    const item = { role: 'user', content: marker };
    const cases = [
      { contentType: null, sent: 'no Content-Type header' },
      {
        contentType: 'application/x-www-form-urlencoded',
        sent: 'Content-Type application/x-www-form-urlencoded (what curl -d sends by default)',
      },
      { contentType: 'text/plain;charset=UTF-8', sent: 'Content-Type text/plain' },
    ];
    for (const { contentType, sent } of cases) {
      const refused = await call(demo, 'POST', '/sessions/ctype-1/items', {
        body: item,
        contentType,
      });
      expect(refused.status, String(contentType)).toBe(415);
      expect(refused.body).toEqual({
        statusCode: 415,
        error: 'UNSUPPORTED_MEDIA_TYPE',
        message: `Send the request body as JSON with the header "Content-Type: application/json"; this request has ${sent}`,
        retryable: false,
      });
      expect(refused.text).not.toContain(marker);
    }
    expect((await call(demo, 'GET', '/sessions/ctype-1/items')).body).toEqual({ items: [] });
    const withCharset = await call(demo, 'POST', '/sessions/ctype-1/items', {
      body: item,
      contentType: 'application/json; charset=utf-8',
    });
    expect(withCharset).toMatchObject({ status: 201, body: { appended: 1 } });
  });

  it('reads JSON bodies up to 1 MiB and answers a larger one with 413 naming the limit', async () => {
    // Above the 100 kB Nest would allow by default, below the demo's limit.
    const large = { role: 'user', content: 'x'.repeat(900 * 1024) };
    const stored = await call(demo, 'POST', '/sessions/large-1/items', { body: large });
    expect(stored).toMatchObject({ status: 201, body: { appended: 1 } });
    const tooLarge = await call(demo, 'POST', '/sessions/large-1/items', {
      body: { role: 'user', content: 'x'.repeat(JSON_BODY_LIMIT_BYTES) },
    });
    expect(tooLarge).toMatchObject({
      status: 413,
      body: { statusCode: 413, error: 'PAYLOAD_TOO_LARGE', retryable: false },
    });
    expect((tooLarge.body as { message: string }).message).toContain("demo's limit of 1 MiB");
  });

  it('answers every kind of error with the same four fields', async () => {
    const failures = {
      INVALID_ARGUMENT: await call(demo, 'GET', '/sessions/chat-1/items?limit=-1'),
      INVALID_JSON: await call(demo, 'POST', '/sessions/chat-1/items', { rawBody: '{"role":' }),
      UNSUPPORTED_MEDIA_TYPE: await call(demo, 'POST', '/sessions/chat-1/items', {
        body: { role: 'user', content: 'x' },
        contentType: null,
      }),
      SESSION_EMPTY: await call(demo, 'POST', '/sessions/never-written/pop'),
      NOT_FOUND: await call(demo, 'GET', '/no-such-route'),
    };
    // The demo's own checks share the module's code for a bad argument.
    const demoChecks = [
      await call(demo, 'GET', '/sessions/chat-1/items?limit=two'),
      await call(demo, 'POST', '/sessions/chat-1/items', { body: ['not', 'an', 'object'] }),
    ];
    for (const [code, failure] of Object.entries(failures)) {
      const body = failure.body as Record<string, unknown>;
      expect(Object.keys(body).toSorted(), code).toEqual(ERROR_BODY_KEYS);
      expect(body, code).toMatchObject({ statusCode: failure.status, error: code });
      expect(typeof body.message, code).toBe('string');
      expect(typeof body.retryable, code).toBe('boolean');
    }
    for (const failure of demoChecks) {
      expect(Object.keys(failure.body as object).toSorted()).toEqual(ERROR_BODY_KEYS);
      expect(failure.body).toMatchObject({ statusCode: 400, error: 'INVALID_ARGUMENT' });
    }
  });

  it('records who acted from x-actor-id, and shows it in GET /audit/report and /audit/verify', async () => {
    const headers = { 'x-actor-id': 'nurse-17', 'x-tenant-id': 'clinic', 'x-request-id': 'r-1' };
    await call(demo, 'POST', '/sessions/audited/items', {
      body: { role: 'user', content: marker },
      headers,
    });
    await call(demo, 'GET', '/sessions/audited/items', { headers });
    const report = await call(demo, 'GET', '/audit/report?sessionId=audited', { headers });
    expect(report.status).toBe(200);
    const events = (report.body as { events: Array<Record<string, any>> }).events;
    expect(events.map((event) => [event.action, event.actor.id])).toEqual([
      ['session.create', 'nurse-17'],
      ['key.create', 'nurse-17'],
      ['session.append', 'nurse-17'],
      ['session.read', 'nurse-17'],
    ]);
    expect(events[2].source).toEqual({ requestId: 'r-1', ip: '127.0.0.1' });
    expect(report.text).not.toContain(marker);
    const verified = await call(demo, 'GET', '/audit/verify', { headers });
    expect(verified.body).toMatchObject({ ok: true });
    const bad = await call(demo, 'GET', '/audit/report', { headers });
    expect(bad.status).toBe(400);
  });

  it('schedules the retention purge and shows the jobs in GET /jobs; POST /jobs/retention-purge runs it', async () => {
    const jobs = await call(demo, 'GET', '/jobs');
    expect(jobs.status).toBe(200);
    expect(jobs.body).toContainEqual(
      expect.objectContaining({
        key: 'retentionPurge',
        name: 'nest-encrypted-sessions:retention-purge',
        enabled: true,
        cron: '*/30 * * * * *',
      }),
    );
    const dryRun = await call(demo, 'POST', '/jobs/retention-purge?dryRun=true');
    expect(dryRun.status).toBe(200);
    expect(dryRun.body).toMatchObject({
      outcome: 'done',
      result: { purged: 0, dryRun: true, complete: true },
    });
    const bad = await call(demo, 'POST', '/jobs/retention-purge?dryRun=yes');
    expect(bad.status).toBe(400);
  });

  it('places a hold (erasure then 409 LEGAL_HOLD), exports it, releases it, then erases with a receipt', async () => {
    const headers = { 'x-tenant-id': 'clinic', 'x-actor-id': 'dpo-1' };
    await call(demo, 'POST', '/sessions/visit-9/items', {
      headers,
      body: { role: 'user', content: 'held words' },
    });
    const placed = await call(demo, 'POST', '/holds', {
      headers,
      body: { sessionId: 'visit-9', matterRef: 'case-77' },
    });
    expect(placed.status).toBe(201);
    const hold = placed.body as { holdId: string };
    expect(placed.body).toMatchObject({
      sessionId: 'visit-9',
      matterRef: 'case-77',
      placedBy: 'dpo-1',
    });

    const refused = await call(demo, 'POST', '/erasures', {
      headers,
      body: { sessionId: 'visit-9', reason: 'subject-request' },
    });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: 'LEGAL_HOLD' });
    expect((await call(demo, 'GET', '/holds', { headers })).body).toEqual([placed.body]);
    const exported = await call(demo, 'GET', `/holds/${hold.holdId}/export`, { headers });
    expect(exported.status).toBe(200);
    expect(exported.body).toMatchObject({ sessionId: 'visit-9', item: { content: 'held words' } });

    const released = await call(demo, 'POST', `/holds/${hold.holdId}/release`, { headers });
    expect(released.status).toBe(200);
    const erased = await call(demo, 'POST', '/erasures', {
      headers,
      body: { sessionId: 'visit-9', reason: 'subject-request' },
    });
    expect(erased.status).toBe(200);
    expect(erased.body).toMatchObject({
      scope: 'session',
      sessionIds: ['visit-9'],
      itemsDeleted: 1,
    });
    const after = await call(demo, 'GET', '/sessions/visit-9/items', { headers });
    expect(after.body).toEqual({ items: [] });
    const badReason = await call(demo, 'POST', '/erasures', {
      headers,
      body: { sessionId: 'visit-9', reason: 'because' },
    });
    expect(badReason.status).toBe(400);
  });

  it('logs one line per request naming its tenant, and never the query string', async () => {
    const acme = { 'x-tenant-id': 'acme' };
    await call(demo, 'POST', '/sessions/log-1/items', {
      headers: acme,
      body: { role: 'user', content: 'x' },
    });
    await call(demo, 'GET', '/sessions/log-1/items?limit=3', { headers: acme });
    await call(demo, 'GET', '/sessions/log-1/items');
    await call(demo, 'POST', '/sessions/log-1/items', { rawBody: 'not json' });
    await vi.waitFor(() => {
      expect(logger.text).toContain('tenant "acme" POST /sessions/log-1/items -> 201 (');
      expect(logger.text).toContain('tenant "acme" GET /sessions/log-1/items -> 200 (');
      expect(logger.text).toContain('tenant "default" GET /sessions/log-1/items -> 200 (');
      expect(logger.text).toContain('tenant "default" POST /sessions/log-1/items -> 400 (');
    });
    const requestLines = logger.lines.filter((line) => line.text.startsWith('tenant '));
    for (const line of requestLines) {
      expect(line.text).toMatch(/^tenant "[^"]*" [A-Z]+ \/[^?\s]* -> \d{3} \(\d+ ms\)$/);
    }
    // The module's own lines about a session name its tenant as well.
    expect(logger.text).toContain("Appended 1 item(s) to session 'log-1' of tenant 'acme'");
    expect(logger.text).toContain("Read 1 item(s) of session 'log-1' of tenant 'acme'");
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

describe('demo on a port that is taken', () => {
  it('fails with a message that says to set PORT', async () => {
    const blocker = createServer();
    await new Promise<void>((listening) => blocker.listen(0, '127.0.0.1', listening));
    const { port } = blocker.address() as AddressInfo;
    const logger = new CapturingLogger();
    try {
      const env = {
        SESSION_KEYS: `t1:${randomBytes(32).toString('base64')}`,
        SESSION_ACTIVE_KEY: 't1',
        PORT: String(port),
        HOST: '127.0.0.1',
      };
      const failure = startDemo({ env, dataDir: tempDataDir(), logger });
      await expect(failure).rejects.toThrow(
        `Cannot listen on port ${port} on 127.0.0.1: it is already in use (is another demo still running?). Set PORT to a free port, e.g. PORT=3000 npm start (PORT=0 picks one)`,
      );
      expect(logger.text).not.toContain('Demo listening on');
    } finally {
      await new Promise((closed) => blocker.close(closed));
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
