import type { AddressInfo } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { Logger, type INestApplication, type LoggerService, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WinstonModule, utilities as nestWinston } from 'nest-winston';
import winston from 'winston';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { StorageOptions } from '../../src/index.js';
import { AppModule } from './app.module.js';
import { resolveDemoKeys } from './demo-keys.js';
import { DEFAULT_TENANT_ID, JSON_BODY_LIMIT_BYTES, TENANT_HEADER } from './demo-request.js';
import { requestLogMiddleware } from './request-log.middleware.js';

/** Folder of the demo's SQLite file and development key file, relative to the working directory. */
export const DEFAULT_DATA_DIR = './data';
/** Name of the demo's SQLite file inside the data folder. */
export const DEMO_SQLITE_FILE_NAME = 'demo.sqlite';
/** Name of the JSON-lines copy of the audit trail inside the data folder. */
export const DEMO_AUDIT_FILE_NAME = 'audit.jsonl';
/** Port when neither the options nor `PORT` name one. */
export const DEFAULT_PORT = 3000;
/** Interface the demo listens on when `HOST` is not set: this machine only (the demo has no auth). */
export const DEFAULT_HOST = '127.0.0.1';

/** Options of {@link createDemoApp} and {@link startDemo}; all optional. */
export interface DemoAppOptions {
  /** Where `SESSION_KEYS`, `SESSION_ACTIVE_KEY`, `SESSION_STORAGE_URL`, `NODE_ENV`, `PORT`, `HOST` are read. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Folder of `demo.sqlite` and the development key file. @default './data' */
  readonly dataDir?: string;
  /**
   * Nest logger option, also used for the development-key warning. @default winston through
   * nest-winston (Nest-style lines on the console), see {@link demoLogger}
   */
  readonly logger?: LoggerService | LogLevel[] | false;
}

/** Options of {@link startDemo}. */
export interface StartDemoOptions extends DemoAppOptions {
  /** Port to listen on; 0 picks a free one. @default env.PORT, else 3000 */
  readonly port?: number;
  /** Interface to listen on. @default env.HOST, else '127.0.0.1' */
  readonly host?: string;
}

/** A started demo: the app (close it to shut down) and the URL it serves. */
export interface RunningDemo {
  readonly app: INestApplication;
  /** e.g. `http://127.0.0.1:3000` */
  readonly url: string;
}

/**
 * Builds the demo app (not yet listening): resolves the root keys (see `resolveDemoKeys`),
 * opens `<dataDir>/demo.sqlite` (or the server `SESSION_STORAGE_URL` names), reads JSON bodies
 * up to `JSON_BODY_LIMIT_BYTES` (and no other kind), logs every request with its tenant and
 * enables shutdown hooks.
 *
 * @throws DemoKeysError when keys are missing in production or inconsistent.
 * @throws ConfigurationError (from the module) when a key in SESSION_KEYS is unusable.
 */
export async function createDemoApp(options: DemoAppOptions = {}): Promise<INestApplication> {
  const env = options.env ?? process.env;
  const dataDir = resolve(options.dataDir ?? DEFAULT_DATA_DIR);
  const appLogger = options.logger === undefined ? demoLogger() : options.logger;
  const keyLogger = isLoggerService(appLogger) ? appLogger : undefined;
  const keys = resolveDemoKeys({ env, dataDir, logger: keyLogger });
  const sqlitePath = join(dataDir, DEMO_SQLITE_FILE_NAME);
  const storage = storageFromUrl(env.SESSION_STORAGE_URL) ?? { type: 'sqlite', path: sqlitePath };
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot({ keys, storage, auditFile: join(dataDir, DEMO_AUDIT_FILE_NAME) }),
    {
      logger: appLogger,
      // Throw startup errors to the caller instead of aborting the process.
      abortOnError: false,
      // JSON only, with the limit below: Nest's defaults add a form parser and cap JSON at 100 kB.
      bodyParser: false,
    },
  );
  const logger = keyLogger ?? new Logger('Demo');
  // Before the body parser, so that refused bodies are logged too.
  app.use(requestLogMiddleware(logger));
  app.useBodyParser('json', { limit: JSON_BODY_LIMIT_BYTES });
  app.enableShutdownHooks();
  const keySource = keys.source === 'env' ? 'SESSION_KEYS' : displayPath(keys.devKeyFile!);
  logger.log(
    `Sessions in ${storage.type === 'sqlite' ? displayPath(sqlitePath) : storage.type}; root keys ${keys.keyIds.join(', ')} from ${keySource} (active: ${keys.activeKeyId}); tenant from the ${TENANT_HEADER} header, else "${DEFAULT_TENANT_ID}"`,
  );
  return app;
}

/**
 * The demo's Nest logger: winston, through nest-winston, printing Nest-style lines on the
 * console. (The audit trail's own winston copy goes to `<dataDir>/audit.jsonl`.)
 */
export function demoLogger(): LoggerService {
  return WinstonModule.createLogger({
    transports: [
      new winston.transports.Console({
        format: winston.format.combine(
          winston.format.timestamp(),
          nestWinston.format.nestLike('Demo', { colors: process.stdout.isTTY, prettyPrint: true }),
        ),
      }),
    ],
  });
}

/** Builds the demo app and listens; {@link RunningDemo.app}`.close()` shuts it down cleanly. */
export async function startDemo(options: StartDemoOptions = {}): Promise<RunningDemo> {
  const env = options.env ?? process.env;
  const port = options.port ?? parsePort(env.PORT);
  const host = options.host ?? (env.HOST?.trim() || DEFAULT_HOST);
  const app = await createDemoApp(options);
  try {
    await app.listen(port, host);
  } catch (error) {
    await app.close();
    throw listenError(error, port, host);
  }
  const address = app.getHttpServer().address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  (isLoggerService(options.logger) ? options.logger : new Logger('Demo')).log(
    `Demo listening on ${url}`,
  );
  return { app, url };
}

/**
 * Storage named by `SESSION_STORAGE_URL` (postgres://, mysql:// or mariadb://, redis:// or
 * rediss://), or undefined for the embedded SQLite file.
 */
export function storageFromUrl(url: string | undefined): StorageOptions | undefined {
  const trimmed = url?.trim();
  if (!trimmed) return undefined;
  const scheme = /^([a-z]+):\/\//.exec(trimmed)?.[1];
  switch (scheme) {
    case 'postgres':
    case 'postgresql':
      return { type: 'postgres', url: trimmed };
    case 'mysql':
    case 'mariadb':
      return { type: 'mysql', url: trimmed };
    case 'redis':
    case 'rediss':
      return { type: 'redis', url: trimmed };
    default:
      // Never echo the URL: it may hold a password.
      throw new Error(
        'SESSION_STORAGE_URL must start with postgres://, mysql://, mariadb://, redis:// or rediss:// (leave it unset for the embedded SQLite file)',
      );
  }
}

/**
 * A failed `listen` with a message that says what to do: a busy or forbidden port is the usual
 * cause (another demo still running, a port below 1024), and `PORT` is the way out.
 */
function listenError(error: unknown, port: number, host: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const where = `port ${port} on ${host}`;
  const fix = `Set PORT to a free port, e.g. PORT=${port === DEFAULT_PORT ? DEFAULT_PORT + 1 : DEFAULT_PORT} npm start (PORT=0 picks one)`;
  if (code === 'EADDRINUSE') {
    return new Error(
      `Cannot listen on ${where}: it is already in use (is another demo still running?). ${fix}`,
      { cause: error },
    );
  }
  if (code === 'EACCES') {
    return new Error(`Cannot listen on ${where}: permission denied. ${fix}`, { cause: error });
  }
  if (code === 'EADDRNOTAVAIL') {
    return new Error(
      `Cannot listen on ${host}: no interface of this machine has that address. Set HOST to one that does, e.g. HOST=127.0.0.1`,
      { cause: error },
    );
  }
  return error;
}

function parsePort(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return DEFAULT_PORT;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be a port number from 0 to 65535, e.g. PORT=3000`);
  }
  return port;
}

function isLoggerService(logger: DemoAppOptions['logger']): logger is LoggerService {
  return typeof logger === 'object' && logger !== null && !Array.isArray(logger);
}

function displayPath(path: string): string {
  const fromCwd = relative(process.cwd(), path);
  return fromCwd.startsWith('..') ? path : `./${fromCwd}`;
}
