import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DriverPackageNotInstalledError } from 'typeorm';
import {
  ConfigurationError,
  EncryptedSessionError,
  StorageUnavailableError,
} from '../errors/index.js';

type ErrorClass = typeof ConfigurationError | typeof StorageUnavailableError;

/** What a driver error code says about the server or the options, and what to fix. */
interface Diagnosis {
  readonly errorClass: ErrorClass;
  /** What went wrong, for the operator. */
  readonly reason: string;
  /** What to change. */
  readonly fix: string;
}

const UNREACHABLE_FIX =
  'check that the server runs and that the host and port in options.storage.url are right';

const unreachable = (reason: string): Diagnosis => ({
  errorClass: StorageUnavailableError,
  reason,
  fix: UNREACHABLE_FIX,
});
const misconfigured = (reason: string, fix: string): Diagnosis => ({
  errorClass: ConfigurationError,
  reason,
  fix,
});

const LOGIN_FIX = 'fix the user or password in options.storage.url, or grant that user access';
const DATABASE_FIX = 'create it, or fix the database name in options.storage.url';

/**
 * Driver error codes (Node's socket errors, Postgres SQLSTATEs, mysql2 codes) seen when a
 * server cannot be reached or refuses the connection's settings.
 */
const DIAGNOSES: Readonly<Record<string, Diagnosis>> = {
  ECONNREFUSED: unreachable('connection refused'),
  ECONNRESET: unreachable('connection reset'),
  ETIMEDOUT: unreachable('connection timed out'),
  EHOSTUNREACH: unreachable('host unreachable'),
  ENETUNREACH: unreachable('network unreachable'),
  ENOTFOUND: unreachable('host not found (DNS)'),
  EAI_AGAIN: unreachable('host name lookup failed for now (DNS)'),
  PROTOCOL_CONNECTION_LOST: unreachable('connection closed by the server'),
  // Postgres
  '57P03': unreachable('the server is starting up or shutting down'),
  '53300': unreachable('the server has too many connections'),
  '28P01': misconfigured('wrong password', LOGIN_FIX),
  '28000': misconfigured('login refused (no such role, or no pg_hba.conf entry for it)', LOGIN_FIX),
  '3D000': misconfigured('no such database', DATABASE_FIX),
  '42501': misconfigured('permission denied', LOGIN_FIX),
  // MySQL / MariaDB
  ER_ACCESS_DENIED_ERROR: misconfigured(
    'login refused (wrong password or no such user)',
    LOGIN_FIX,
  ),
  ER_DBACCESS_DENIED_ERROR: misconfigured('the user may not use this database', LOGIN_FIX),
  ER_BAD_DB_ERROR: misconfigured('no such database', DATABASE_FIX),
  ER_HOST_NOT_PRIVILEGED: misconfigured(
    'this client host may not connect',
    'allow this host for the user on the server',
  ),
  ER_CON_COUNT_ERROR: unreachable('the server has too many connections'),
};

/** Connect timeouts of pg come without a code. */
const PG_TIMEOUT_MESSAGES = ['timeout expired', 'Connection terminated due to connection timeout'];

/** The first code a driver error (or one inside an AggregateError or a cause) carries. */
function errorCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null || depth > 3) return undefined;
  const { code, errors, cause, message } = error as {
    code?: unknown;
    errors?: unknown;
    cause?: unknown;
    message?: unknown;
  };
  if (typeof code === 'string' && code !== '') return code;
  if (typeof code === 'number') return String(code);
  if (typeof message === 'string' && PG_TIMEOUT_MESSAGES.some((m) => message.includes(m))) {
    return 'ETIMEDOUT';
  }
  for (const inner of Array.isArray(errors) ? errors : []) {
    const found = errorCode(inner, depth + 1);
    if (found) return found;
  }
  return errorCode(cause, depth + 1);
}

/** `host:port`, database and user of a connection URL; never its password. */
function describeTarget(type: string, url: string): { where: string; user: string } {
  const parsed = new URL(url);
  const port = parsed.port || (type === 'postgres' ? '5432' : '3306');
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || '(default)';
  return {
    where: `${parsed.hostname}:${port}, database '${database}'`,
    user: decodeURIComponent(parsed.username) || '(default)',
  };
}

/**
 * The startup error for a database server the module could not open from `options.storage`.
 * It names the option, the host, port, database and user, never the password, and keeps no
 * driver error as `cause` (drivers may echo the URL). Unreachable servers are retryable
 * ({@link StorageUnavailableError}); refused logins and unknown databases are
 * {@link ConfigurationError}s.
 */
export function sqlServerStartupError(
  error: unknown,
  storage: { type: string; url: string },
): EncryptedSessionError {
  // Our own option checks already say what to set.
  if (error instanceof EncryptedSessionError) return error;
  if (error instanceof DriverPackageNotInstalledError) {
    // The driver is an optional peer: a new install of the module does not bring it.
    const driver = storage.type === 'postgres' ? 'pg' : 'mysql2';
    return new ConfigurationError(
      `options.storage.type '${storage.type}' needs the '${driver}' package, which is not installed; install it next to the module: npm install ${driver}`,
    );
  }
  const code = errorCode(error);
  const { where, user } = describeTarget(storage.type, storage.url);
  const diagnosis = code === undefined ? undefined : DIAGNOSES[code];
  const engine = storage.type === 'postgres' ? 'Postgres' : 'MySQL/MariaDB';
  if (!diagnosis) {
    return new StorageUnavailableError(
      `Could not open the ${engine} server at ${where} as user '${user}' (options.storage.url): driver error ${code ?? 'without a code'}; ${UNREACHABLE_FIX}`,
    );
  }
  return new diagnosis.errorClass(
    `Could not open the ${engine} server at ${where} as user '${user}' (options.storage.url): ${diagnosis.reason} (${code}); ${diagnosis.fix}`,
  );
}

const isDirectory = (path: string): boolean => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

/**
 * The startup error for the module's own SQLite file that could not be created or opened:
 * always a {@link ConfigurationError} naming `options.storage.path`, except a file locked by
 * another process ({@link StorageUnavailableError}).
 */
export function sqliteStartupError(error: unknown, path: string): EncryptedSessionError {
  if (error instanceof EncryptedSessionError) return error;
  const file = resolve(path);
  const option = `options.storage.path '${path}'`;
  const code = errorCode(error) ?? 'without a code';
  // better-sqlite3 is an optional peer: a host on Redis or a server database never installs it.
  if (error instanceof DriverPackageNotInstalledError) {
    return new ConfigurationError(
      `options.storage type 'sqlite' (the default) needs the 'better-sqlite3' package, which is not installed; install it next to the module and allow its install script: npm install better-sqlite3 (with "allowScripts": { "better-sqlite3": true } in your package.json), or choose another options.storage`,
    );
  }
  // better-sqlite3 loads its native addon on the first open: without it, the file is not the
  // problem. npm 11 skips install scripts that the app's allowScripts does not name.
  if (error instanceof Error && error.message.startsWith('Could not locate the bindings file')) {
    return new ConfigurationError(
      `${option}: better-sqlite3 is installed without its native addon (its install script did not run); allow it in your package.json ("allowScripts": { "better-sqlite3": true }, or npm install-scripts approve better-sqlite3), then run: npm rebuild better-sqlite3`,
    );
  }
  if (code === 'ERR_DLOPEN_FAILED') {
    return new ConfigurationError(
      `${option}: better-sqlite3's native addon does not load (${code}), most often because it was built for another Node.js version; run: npm rebuild better-sqlite3`,
    );
  }
  if (isDirectory(file)) {
    return new ConfigurationError(
      `${option} is a directory (${file}); give the path of a database file, e.g. ${resolve(file, 'sessions.sqlite')}`,
    );
  }
  switch (code) {
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ConfigurationError(
        `${option}: cannot create the folder ${dirname(file)} or the file in it (${code}: not writable); choose a writable location or fix its permissions`,
      );
    case 'ENOTDIR':
    case 'EEXIST':
      return new ConfigurationError(
        `${option}: cannot create the folder ${dirname(file)} (${code}: a part of that path is a file); choose another location`,
      );
    case 'SQLITE_NOTADB':
      return new ConfigurationError(
        `${option}: ${file} is not a SQLite database (${code}); point it at the module's database file or a new path`,
      );
    case 'SQLITE_BUSY':
      return new StorageUnavailableError(
        `${option}: ${file} is locked by another process (${code}); retry, or raise options.storage.busyTimeoutMs`,
      );
    default:
      return new ConfigurationError(
        `${option}: cannot open ${file} as a SQLite database (${code}); check that its folder exists and is writable`,
      );
  }
}
