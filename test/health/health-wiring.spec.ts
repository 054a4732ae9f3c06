import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync, unlinkSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ENCRYPTED_SESSION_HEALTH_OPTIONS,
  EncryptedSessionHealthIndicator,
  EncryptedSessionHealthModule,
} from '../../src/health/index.js';
import {
  ConfigurationError,
  EncryptedSessionModule,
  type SessionStorage,
} from '../../src/index.js';
import { SESSION_STORAGE } from '../../src/storage/storage.ports.js';
import { compileLibrary } from '../support/compiled-library.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const root = resolve(import.meta.dirname, '../..');
const keys = { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } };

describe('nest-encrypted-sessions/health: wiring', () => {
  let app: INestApplication | undefined;

  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('serves GET /health over HTTP: 200 while up, 503 with the error code once storage is down', async () => {
    @Controller('health')
    class HealthController {
      constructor(
        private readonly health: HealthCheckService,
        private readonly sessions: EncryptedSessionHealthIndicator,
      ) {}

      @Get()
      @HealthCheck()
      check() {
        return this.health.check([() => this.sessions.isHealthy()]);
      }
    }
    // The module is not global: the indicator is a provider of the module that imports it.
    @Module({
      imports: [
        TerminusModule.forRoot({ logger: false }),
        EncryptedSessionModule.forRoot({ keys, storage: { type: 'memory' } }),
      ],
      providers: [
        EncryptedSessionHealthIndicator,
        { provide: ENCRYPTED_SESSION_HEALTH_OPTIONS, useValue: { timeoutMs: 500 } },
      ],
      controllers: [HealthController],
    })
    // oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
    class HostModule {}

    const moduleRef = await Test.createTestingModule({ imports: [HostModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    const url = `http://127.0.0.1:${port}/health`;

    const up = await fetch(url);
    expect(up.status).toBe(200);
    expect(up.headers.get('cache-control')).toMatch(/no-store/);
    expect(await up.json()).toMatchObject({
      status: 'ok',
      info: {
        'encrypted-sessions': {
          status: 'up',
          storage: { status: 'up', backend: 'memory' },
          keyProvider: { status: 'up', provider: 'env', outage: false },
          jobs: { status: 'up', kekRewrap: { status: 'up', enabled: false } },
        },
      },
    });

    await app.get<symbol, SessionStorage>(SESSION_STORAGE, { strict: false }).close();
    const down = await fetch(url);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({
      status: 'error',
      error: {
        'encrypted-sessions': {
          status: 'down',
          storage: { status: 'down', error: 'SHUTTING_DOWN' },
        },
      },
    });
  });

  it.each([
    [
      { timeoutMs: 0 },
      /^healthOptions\.timeoutMs must be a whole number of milliseconds, at least 1/,
    ],
    [{ maxLagPeriods: -1 }, /^healthOptions\.maxLagPeriods must be a number of periods above 0/],
    [
      { timeout: 100 },
      /^Unknown option healthOptions\.timeout; healthOptions takes: timeoutMs, maxLagPeriods/,
    ],
  ])('refuses options %j, saying what to set', (options, message) => {
    let thrown: unknown;
    try {
      EncryptedSessionHealthModule.forRoot(options as never);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigurationError);
    expect((thrown as Error).message).toMatch(message);
  });
});

/** Runs `script` as an ES module in a fresh Node process; resolves with its stdout. */
function runModule(script: string, env: Record<string, string>): Promise<string> {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 30_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) =>
        error ? fail(new Error(`${error.message}\n${stderr}`)) : done(stdout),
    );
  });
}

/** A node_modules of links to the repository's, without `@nestjs/terminus`: a host that never installed it. */
function nodeModulesWithoutTerminus(target: string): void {
  const source = join(root, 'node_modules');
  mkdirSync(join(target, '@nestjs'), { recursive: true });
  for (const name of readdirSync(source)) {
    if (name === '@nestjs') continue;
    symlinkSync(join(source, name), join(target, name));
  }
  for (const name of readdirSync(join(source, '@nestjs'))) {
    if (name === 'terminus') continue;
    symlinkSync(join(source, '@nestjs', name), join(target, '@nestjs', name));
  }
}

/** The RESULT line the script prints. */
const result = (stdout: string): unknown =>
  JSON.parse(
    stdout
      .split('\n')
      .find((line) => line.startsWith('RESULT '))!
      .slice('RESULT '.length),
  );

describe('a host without @nestjs/terminus (the compiled package)', () => {
  const script = `
    const entry = process.env.ENTRY;
    const pkg = await import(entry);
    let health;
    try {
      const healthPkg = await import(new URL('./health/index.js', entry).href);
      health = typeof healthPkg.EncryptedSessionHealthModule;
    } catch (error) {
      health = error.code + (String(error.message).includes("'@nestjs/terminus'") ? ' @nestjs/terminus' : '');
    }
    process.stdout.write('\\nRESULT ' + JSON.stringify({ root: typeof pkg.EncryptedSessionModule, health }) + '\\n');
  `;
  it('loads the package root, and only the ./health entry asks for terminus', async () => {
    const library = compileLibrary();
    try {
      const env = { ENTRY: library.entryUrl };
      // With terminus installed, both load.
      expect(result(await runModule(script, env))).toEqual({
        root: 'function',
        health: 'function',
      });
      // Without it: the root loads as before; the health entry names the missing package.
      const modules = join(dirname(dirname(fileURLToPath(library.entryUrl))), 'node_modules');
      unlinkSync(modules); // the link compileLibrary made, not what it points to
      nodeModulesWithoutTerminus(modules);
      expect(result(await runModule(script, env))).toEqual({
        root: 'function',
        health: 'ERR_MODULE_NOT_FOUND @nestjs/terminus',
      });
    } finally {
      library.dispose();
    }
  }, 120_000);
});
