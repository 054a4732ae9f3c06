#!/usr/bin/env node
// A new host app that keeps sessions in Redis, installed from this package as a user installs
// it (npm pack, then npm install of the tarball), to show what the package asks of such a host:
//   - npm installs the required peers (typeorm, @nestjs/typeorm) and none of the optional ones:
//     no better-sqlite3, pg, mysql2, AWS SDK or node-vault, and no native addon at all;
//   - the module runs on Redis: one session round trip through the built package;
//   - each backend the host did not install fails at startup with a ConfigurationError naming
//     the package to install, not a module-not-found stack;
//   - the host's TypeScript, with skipLibCheck off, compiles against the package's typings.
// A second host already on TypeORM 0.3 with Postgres shares its DataSource with the module: one
// copy of typeorm, the README's migration snippet compiling and running, an empty schema diff.
// Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0), Postgres (POSTGRES_URL, default
// postgres://postgres@127.0.0.1:5432/postgres, allowed to create a database) and the npm
// registry (or a warm npm cache). Exit code 0 when every check passed.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '..');
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
/** The newest TypeORM 0.3 the peer range is checked with. */
const TYPEORM_03 = '0.3.28';
const work = mkdtempSync(join(tmpdir(), 'nes-host-'));
const host = join(work, 'host');
let failures = 0;
let passes = 0;

function check(name, ok, detail = '') {
  if (ok) passes += 1;
  else failures += 1;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok || !detail ? '' : `: ${detail}`}`);
}

/** The version of `name` this repository installed, so the host resolves from the npm cache. */
const repoVersion = (name) =>
  JSON.parse(readFileSync(join(repo, 'node_modules', name, 'package.json'), 'utf8')).version;

function run(command, args, cwd) {
  return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

try {
  console.log(`host install smoke in ${work}`);
  const tarball = join(
    work,
    run('npm', ['pack', '--silent', '--pack-destination', work], repo).trim().split('\n').pop(),
  );

  const dependencies = Object.fromEntries(
    [
      '@nestjs/common',
      '@nestjs/core',
      // The agents SDK the sessions are for: the package's typings name its Session.
      '@openai/agents-core',
      'reflect-metadata',
      'rxjs',
      'ioredis',
      'typescript',
      '@types/node',
    ].map((name) => [name, repoVersion(name)]),
  );
  run('mkdir', ['-p', host]);
  writeFileSync(
    join(host, 'package.json'),
    JSON.stringify(
      {
        name: 'redis-only-host',
        private: true,
        type: 'module',
        dependencies: { 'nest-encrypted-sessions': `file:${tarball}`, ...dependencies },
      },
      null,
      2,
    ),
  );
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], host);

  const modules = join(host, 'node_modules');
  const installed = (name) => {
    try {
      return statSync(join(modules, name)).isDirectory();
    } catch {
      return false;
    }
  };
  for (const peer of ['typeorm', '@nestjs/typeorm', 'zod', 'lru-cache']) {
    check(`installs ${peer}`, installed(peer));
  }
  for (const optional of ['better-sqlite3', 'pg', 'mysql2', '@aws-sdk/client-kms', 'node-vault']) {
    check(`does not install the optional peer ${optional}`, !installed(optional));
  }
  const nativeFiles = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.node') || entry.name === 'binding.gyp') nativeFiles.push(path);
    }
  };
  walk(modules);
  check('installs no native addon', nativeFiles.length === 0, nativeFiles.slice(0, 3).join(', '));

  const keyPrefix = `nes-host-${randomBytes(4).toString('hex')}:`;
  writeFileSync(
    join(host, 'app.mjs'),
    `import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ConfigurationError, EncryptedSessionModule, EncryptedSessionService } from 'nest-encrypted-sessions';

const keys = { env: { keys: 'k1:' + randomBytes(32).toString('base64'), activeKeyId: 'k1' } };
const results = [];
const start = (options) => {
  class HostModule {}
  Module({ imports: [EncryptedSessionModule.forRoot({ keys, ...options })] })(HostModule);
  return NestFactory.createApplicationContext(HostModule, { logger: false, abortOnError: false });
};

const app = await start({ storage: { type: 'redis', url: ${JSON.stringify(redisUrl)}, keyPrefix: ${JSON.stringify(keyPrefix)} } });
const session = await app.get(EncryptedSessionService).open('host-smoke');
await session.addItems([{ role: 'user', content: 'hello from a Redis-only host' }]);
const items = await session.getItems();
results.push(['round trip on Redis', items.length === 1 && items[0].content === 'hello from a Redis-only host']);
await session.clearSession();
await app.close();
const redis = new Redis(${JSON.stringify(redisUrl)});
const left = await redis.keys(${JSON.stringify(keyPrefix + '*')});
if (left.length > 0) await redis.del(...left);
await redis.quit();

for (const [name, options, needs] of [
  ['sqlite (the default)', {}, 'better-sqlite3'],
  ['postgres', { storage: { type: 'postgres', url: 'postgres://u@127.0.0.1:1/db' } }, 'pg'],
  ['awsKms', { keys: { awsKms: { keyId: 'alias/x', region: 'eu-west-1' } } }, '@aws-sdk/client-kms'],
  ['vaultTransit', { keys: { vaultTransit: { endpoint: 'http://127.0.0.1:1', auth: { method: 'token', token: 't' }, keyName: 'k' } }, storage: { type: 'memory' } }, 'node-vault'],
]) {
  const error = await start(options).then((started) => started.close(), (caught) => caught);
  results.push([
    name + ' without ' + needs + ': ConfigurationError naming it',
    error instanceof ConfigurationError && error.message.includes("'" + needs + "'") || error?.message?.includes('npm install ' + needs),
    String(error?.message ?? error),
  ]);
}
console.log(JSON.stringify(results));
`,
  );
  const results = JSON.parse(run(process.execPath, ['app.mjs'], host).trim().split('\n').pop());
  for (const [name, ok, detail] of results) check(name, ok, detail);

  writeFileSync(
    join(host, 'host.ts'),
    `import { Module } from '@nestjs/common';
import {
  EncryptedSessionModule,
  EncryptedSessionService,
  type EncryptedSessionModuleOptions,
} from 'nest-encrypted-sessions';
import { RedisSessionStorage } from 'nest-encrypted-sessions/redis';
import { Redis } from 'ioredis';

const options: EncryptedSessionModuleOptions = {
  keys: { env: { keys: process.env.SESSION_KEYS ?? '', activeKeyId: 'k1' }, retry: { maxAttempts: 2 } },
  storage: { instance: new RedisSessionStorage({ client: new Redis() }) },
  keyCache: { maxEntries: 100 },
};

@Module({ imports: [EncryptedSessionModule.forRoot(options)] })
export class HostModule {
  constructor(readonly sessions: EncryptedSessionService) {}
}
`,
  );
  writeFileSync(
    join(host, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'nodenext',
        target: 'es2022',
        noEmit: true,
        skipLibCheck: false,
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
        types: ['node'],
      },
      files: ['host.ts'],
    }),
  );
  let tscOutput = '';
  try {
    run(join(host, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], host);
  } catch (error) {
    tscOutput = `${error.stdout ?? ''}${error.stderr ?? ''}`;
  }
  check(
    "the host's TypeScript compiles against the package (skipLibCheck off)",
    tscOutput === '',
    tscOutput.split('\n').slice(0, 8).join('\n'),
  );

  // A second host: an app already on TypeORM 0.3 with Postgres, sharing its DataSource and
  // running the module's migrations itself (the README's own snippet).
  const legacy = join(work, 'typeorm-03-host');
  run('mkdir', ['-p', legacy]);
  writeFileSync(
    join(legacy, 'package.json'),
    JSON.stringify({
      name: 'typeorm-03-host',
      private: true,
      type: 'module',
      dependencies: {
        'nest-encrypted-sessions': `file:${tarball}`,
        ...dependencies,
        '@nestjs/typeorm': repoVersion('@nestjs/typeorm'),
        typeorm: TYPEORM_03,
        pg: repoVersion('pg'),
      },
    }),
  );
  run(
    'npm',
    ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'],
    legacy,
  );
  const typeormCopies = run('npm', ['ls', 'typeorm', '--all', '--parseable'], legacy)
    .trim()
    .split('\n')
    .filter((line) => line.endsWith('/typeorm'));
  check(
    `a host on typeorm ${TYPEORM_03} keeps one copy of it`,
    typeormCopies.length === 1 &&
      JSON.parse(readFileSync(join(typeormCopies[0], 'package.json'), 'utf8')).version ===
        TYPEORM_03,
    typeormCopies.join(', '),
  );
  const database = `nes_host_${randomBytes(4).toString('hex')}`;
  const adminUrl = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const databaseUrl = new URL(adminUrl);
  databaseUrl.pathname = `/${database}`;
  writeFileSync(
    join(legacy, 'app.ts'),
    `import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule, getDataSourceToken } from '@nestjs/typeorm';
import { randomBytes } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { EncryptedSessionModule, EncryptedSessionService } from 'nest-encrypted-sessions';
import { sessionEntitySchemas, sessionMigrations } from 'nest-encrypted-sessions/typeorm';

@Module({
  imports: [
    TypeOrmModule.forRoot({
      type: 'postgres',
      url: ${JSON.stringify(databaseUrl.href)},
      entities: [...sessionEntitySchemas({ databaseType: 'postgres' })],
      migrations: [...sessionMigrations()],
      migrationsRun: true,
    }),
    EncryptedSessionModule.forRoot({
      keys: { env: { keys: 'k1:' + randomBytes(32).toString('base64'), activeKeyId: 'k1' } },
      storage: { type: 'hostDataSource', runMigrations: false },
      dataSourceName: 'default',
    }),
  ],
})
class HostModule {}

const app = await NestFactory.createApplicationContext(HostModule, { logger: false });
const session = await app.get(EncryptedSessionService).open('typeorm-03');
await session.addItems([{ role: 'user', content: 'hello from TypeORM 0.3' }]);
const items = await session.getItems();
const dataSource = app.get<DataSource>(getDataSourceToken());
const pending = await dataSource.driver.createSchemaBuilder().log();
await app.close();
console.log(JSON.stringify({ items: items.length, pending: pending.upQueries.map((q) => q.query) }));
`,
  );
  writeFileSync(
    join(legacy, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'nodenext',
        target: 'es2022',
        outDir: 'out',
        skipLibCheck: false,
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
        types: ['node'],
      },
      files: ['app.ts'],
    }),
  );
  let legacyTsc = '';
  try {
    run(join(legacy, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], legacy);
  } catch (error) {
    legacyTsc = `${error.stdout ?? ''}${error.stderr ?? ''}`;
  }
  check(
    'the README migration snippet compiles on typeorm 0.3 (skipLibCheck off)',
    legacyTsc === '',
    legacyTsc.split('\n').slice(0, 8).join('\n'),
  );
  const psql = (sql) => run('psql', [adminUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], legacy);
  psql(`CREATE DATABASE ${database}`);
  try {
    const outcome = JSON.parse(
      run(process.execPath, ['out/app.js'], legacy).trim().split('\n').pop(),
    );
    check('a round trip on the host DataSource under typeorm 0.3', outcome.items === 1);
    check(
      "typeorm 0.3's schema diff of the exported entities is empty",
      outcome.pending.length === 0,
      outcome.pending.join('; '),
    );
  } finally {
    psql(`DROP DATABASE ${database} WITH (FORCE)`);
  }
} catch (error) {
  failures += 1;
  console.log(`FAIL host install smoke stopped: ${error.stderr ?? ''}${error.message}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`host install smoke: ${passes} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
