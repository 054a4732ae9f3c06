import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleLogger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  EncryptedSessionModule,
  StorageUnavailableError,
  type EncryptedSessionModuleOptions,
} from '../../src/index.js';
import { type SqlServerType } from '../../src/storage/typeorm/server-data-source.js';
import { errorText } from '../support/error-text.js';
import { SERVER_ADMIN_URLS, sqlServerUp } from '../support/sql-server-support.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const envKeys = () => ({ env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k1' } });

/** Collects every line logged during startup, at every level. */
class CollectingLogger extends ConsoleLogger {
  readonly lines: string[] = [];
  constructor() {
    super('test', { logLevels: ['log', 'error', 'warn', 'debug', 'verbose'] });
  }
  protected override printMessages(messages: unknown[], context = '', logLevel = 'log'): void {
    this.lines.push(`${logLevel} ${context} ${messages.map(String).join(' ')}`);
  }
}

/** Starts the module with these options; returns what startup threw and every log line. */
async function startup(
  options: EncryptedSessionModuleOptions,
): Promise<{ error: unknown; logged: string }> {
  const logger = new CollectingLogger();
  const error = await Test.createTestingModule({
    imports: [EncryptedSessionModule.forRoot(options)],
  })
    .setLogger(logger)
    .compile()
    .then(
      async (moduleRef) => {
        await moduleRef.close();
        throw new Error('expected startup to fail, but the module started');
      },
      (caught: unknown) => caught,
    );
  return { error, logged: logger.lines.join('\n') };
}

describe("the README's env key snippet with its variables unset", () => {
  const unset = `NES_TEST_UNSET_${randomBytes(4).toString('hex')}`;

  it('names options.keys.env.keys and SESSION_KEYS when the keys are undefined', async () => {
    const { error } = await startup({
      keys: { env: { keys: process.env[unset]!, activeKeyId: process.env[unset]! } },
      storage: { type: 'memory' },
    });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      "options.keys.env.keys is missing (undefined): set it to 'id:base64key,...' (comma-separated; each key 32 random bytes, e.g. k1:$(openssl rand -base64 32)) (the README reads it from SESSION_KEYS)",
    );
  });

  it('names options.keys.env.activeKeyId and SESSION_ACTIVE_KEY when the id is undefined', async () => {
    const { error } = await startup({
      keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: process.env[unset]! } },
      storage: { type: 'memory' },
    });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      'options.keys.env.activeKeyId is missing (undefined): set it to the id of the key in options.keys.env.keys that wraps new data keys (the README reads it from SESSION_ACTIVE_KEY)',
    );
  });

  it('names the option in the checks that follow (an unknown active id)', async () => {
    const { error } = await startup({
      keys: { env: { keys: newRootKeyEntry('k1'), activeKeyId: 'k2' } },
      storage: { type: 'memory' },
    });
    expect((error as Error).message).toBe(
      "No active key 'k2' in options.keys.env.keys; add it or set options.keys.env.activeKeyId to one of: k1",
    );
  });
});

const servers: SqlServerType[] = ['postgres', 'mysql'];
const up = Object.fromEntries(
  await Promise.all(servers.map(async (type) => [type, await sqlServerUp(type)] as const)),
) as Record<SqlServerType, boolean>;

/** A URL on the test server with other credentials, port, host or database. */
function serverUrl(
  type: SqlServerType,
  change: { user?: string; password?: string; host?: string; port?: string; database?: string },
): string {
  const url = new URL(SERVER_ADMIN_URLS[type]);
  if (change.user !== undefined) url.username = change.user;
  if (change.password !== undefined) url.password = change.password;
  if (change.host !== undefined) url.hostname = change.host;
  if (change.port !== undefined) url.port = change.port;
  if (change.database !== undefined) url.pathname = `/${change.database}`;
  return url.toString();
}

async function adminQuery(type: SqlServerType, statements: string[]): Promise<void> {
  const admin = new DataSource({ type, url: SERVER_ADMIN_URLS[type], poolSize: 1 });
  await admin.initialize();
  try {
    for (const statement of statements) await admin.query(statement);
  } finally {
    await admin.destroy();
  }
}

/** Starts on `url` and checks the error class, that it names the option and the target, and
 * that the password never reaches the message, the stack or a log line. */
async function expectStartupError(
  type: SqlServerType,
  url: string,
  errorClass: typeof ConfigurationError | typeof StorageUnavailableError,
  named: { where: string; reason: RegExp; secret: string },
): Promise<void> {
  const { error, logged } = await startup({
    keys: envKeys(),
    storage: { type, url, connectTimeoutMs: 5000 },
  });
  expect(error).toBeInstanceOf(errorClass);
  const { message } = error as Error;
  expect(message).toContain('options.storage.url');
  expect(message).toContain(named.where);
  expect(message).toMatch(named.reason);
  expect((error as Error).cause).toBeUndefined();
  expect(errorText(error)).not.toContain(named.secret);
  expect(logged).not.toContain(named.secret);
}

describe.each(servers)("startup errors of the module's own database on %s", (type) => {
  // Carried by the URLs: it must never reach a message, a stack or a log line.
  const canary = `pw-canary-${randomBytes(6).toString('hex')}`;
  const hostPort = new URL(SERVER_ADMIN_URLS[type]).host;
  const adminDatabase = new URL(SERVER_ADMIN_URLS[type]).pathname.slice(1);

  it.skipIf(!up[type])('a refused connection (wrong port) is StorageUnavailableError', async () => {
    await expectStartupError(
      type,
      serverUrl(type, { password: canary, port: '1' }),
      StorageUnavailableError,
      {
        where: `127.0.0.1:1, database '${adminDatabase}'`,
        reason: /connection refused/,
        secret: canary,
      },
    );
  });

  it.skipIf(!up[type])('an unknown host is StorageUnavailableError', async () => {
    await expectStartupError(
      type,
      serverUrl(type, { password: canary, host: 'sessions-db.invalid' }),
      StorageUnavailableError,
      { where: 'sessions-db.invalid:', reason: /host not found/, secret: canary },
    );
  });

  it.skipIf(!up[type])('an unknown database is ConfigurationError', async () => {
    // The admin login (MariaDB checks a password before the database).
    await expectStartupError(
      type,
      serverUrl(type, { database: 'nes_no_such_database' }),
      ConfigurationError,
      {
        where: `${hostPort}, database 'nes_no_such_database'`,
        reason: /no such database/,
        secret: canary,
      },
    );
  });

  it.skipIf(!up[type])('an unknown user is ConfigurationError', async () => {
    await expectStartupError(
      type,
      serverUrl(type, { user: 'nes_no_such_user', password: canary }),
      ConfigurationError,
      {
        where: `${hostPort}, database '${adminDatabase}' as user 'nes_no_such_user'`,
        reason: /login refused/,
        secret: canary,
      },
    );
  });
});

// Postgres here trusts every loopback login (pg_hba.conf `trust`) and never checks a password,
// so a wrong password is tested on MariaDB; Postgres' 28P01 mapping is covered in
// storage-startup-errors.spec.ts.
describe("startup errors of the module's own database on mariadb: a wrong password", () => {
  const canary = `pw-canary-${randomBytes(6).toString('hex')}`;
  const user = `nes_pw_${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    if (!up.mysql) return;
    // A throwaway login with a real password, so a wrong one is refused by the server.
    await adminQuery('mysql', [`CREATE USER '${user}'@'%' IDENTIFIED BY 'right-${canary}'`]);
  });
  afterAll(async () => {
    if (!up.mysql) return;
    await adminQuery('mysql', [`DROP USER IF EXISTS '${user}'@'%'`]);
  });

  it.skipIf(!up.mysql)('is ConfigurationError naming the user, never the password', async () => {
    await expectStartupError(
      'mysql',
      serverUrl('mysql', { user, password: canary }),
      ConfigurationError,
      {
        where: `as user '${user}'`,
        reason: /login refused \(wrong password or no such user\)/,
        secret: canary,
      },
    );
  });
});

describe("startup errors of the module's own SQLite file", () => {
  let directory: string;
  beforeAll(() => {
    directory = mkdtempSync(join(tmpdir(), 'nes-startup-'));
  });
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  it('a path that is a directory is ConfigurationError', async () => {
    const path = join(directory, 'a-directory');
    mkdirSync(path);
    const { error } = await startup({ keys: envKeys(), storage: { type: 'sqlite', path } });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      `options.storage.path '${path}' is a directory (${path}); give the path of a database file, e.g. ${join(path, 'sessions.sqlite')}`,
    );
  });

  it('a folder that cannot be created is ConfigurationError', async () => {
    const file = join(directory, 'a-file');
    writeFileSync(file, 'not a folder');
    const path = join(file, 'sessions.sqlite');
    const { error } = await startup({ keys: envKeys(), storage: { type: 'sqlite', path } });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      `options.storage.path '${path}': cannot create the folder ${file} (EEXIST: a part of that path is a file); choose another location`,
    );
  });

  it('a file that is not a database is ConfigurationError', async () => {
    const path = join(directory, 'not-a-database.sqlite');
    writeFileSync(path, randomBytes(4096));
    const { error } = await startup({ keys: envKeys(), storage: { type: 'sqlite', path } });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(
      /^options\.storage\.path '.*': .* is not a SQLite database \(SQLITE_NOTADB\)/,
    );
  });
});
