import { DriverPackageNotInstalledError } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { ConfigurationError, StorageUnavailableError } from '../../src/index.js';
import {
  sqlServerStartupError,
  sqliteStartupError,
} from '../../src/module/storage-startup-errors.js';

const url = 'postgres://app:s3cret-canary@db.internal:6543/sessions';
const storage = { type: 'postgres', url };

/** A driver error as pg and mysql2 build them: a message, a code, and the URL nearby. */
function driverError(code: string | undefined, message = `failed for ${url}`): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code });
}

describe('sqlServerStartupError', () => {
  it("maps Postgres' wrong password (28P01) to ConfigurationError naming the login", () => {
    const error = sqlServerStartupError(driverError('28P01'), storage);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toBe(
      "Could not open the Postgres server at db.internal:6543, database 'sessions' as user 'app' (options.storage.url): wrong password (28P01); fix the user or password in options.storage.url, or grant that user access",
    );
  });

  it('finds the code inside an AggregateError (a host with several addresses)', () => {
    const aggregate = new AggregateError([
      driverError('ECONNREFUSED'),
      driverError('ECONNREFUSED'),
    ]);
    const error = sqlServerStartupError(aggregate, storage);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(error.message).toMatch(
      /: connection refused \(ECONNREFUSED\); check that the server runs/,
    );
  });

  it("reads pg's connect timeout, which has no code, as a timeout", () => {
    const error = sqlServerStartupError(new Error('timeout expired'), storage);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(error.message).toMatch(/connection timed out \(ETIMEDOUT\)/);
  });

  it('reports an unknown driver error by its code only, never its message', () => {
    const error = sqlServerStartupError(driverError('XX999'), storage);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(error.message).toMatch(/driver error XX999/);
    expect(`${error.message}\n${error.stack}`).not.toContain('s3cret-canary');
    expect(error.cause).toBeUndefined();
  });
});

describe('a driver that is not installed or not built', () => {
  it.each([
    ['postgres', 'Postgres', 'pg'],
    ['mysql', 'Mysql', 'mysql2'],
    ['mariadb', 'Mysql', 'mysql2'],
  ])(
    "names the package to install for storage type '%s', not the server",
    (type, driverName, driver) => {
      const missing = new DriverPackageNotInstalledError(driverName, driver);
      const error = sqlServerStartupError(missing, { type, url });
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.message).toBe(
        `options.storage.type '${type}' needs the '${driver}' package, which is not installed; install it next to the module: npm install ${driver}`,
      );
    },
  );

  it("says that better-sqlite3's native addon was never built, and how to build it", () => {
    // What the `bindings` package throws when the install script did not run.
    const notBuilt = new Error(
      'Could not locate the bindings file. Tried:\n → /app/node_modules/better-sqlite3/build/better_sqlite3.node',
    );
    const error = sqliteStartupError(notBuilt, './data/sessions.sqlite');
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/without its native addon/);
    expect(error.message).toContain('"allowScripts": { "better-sqlite3": true }');
    expect(error.message).toMatch(/npm rebuild better-sqlite3$/);
  });

  it('says to rebuild better-sqlite3 when its addon was built for another Node.js', () => {
    const otherNode = Object.assign(new Error('compiled against NODE_MODULE_VERSION 115'), {
      code: 'ERR_DLOPEN_FAILED',
    });
    const error = sqliteStartupError(otherNode, './data/sessions.sqlite');
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/another Node\.js version; run: npm rebuild better-sqlite3$/);
  });
});
