import { existsSync } from 'node:fs';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EncryptedSessionModule, type StorageOptions } from '../module/index.js';
import { UsageError } from './runtime.js';

/** The environment the bin reads, as the demo does; shown in its `--help`. */
export const ENV_HELP = `
Configured by the environment, as the demo:
  SESSION_KEYS         root keys, "id:base64key[,id:base64key...]" (required)
  SESSION_ACTIVE_KEY   the active root key id (required)
  SESSION_STORAGE_URL  postgres://, mysql:// or mariadb://, redis:// (default: the SQLite file)
  SESSION_SQLITE_PATH  the SQLite file (default ./data/demo.sqlite, the demo's)
  AUDIT_CHECKPOINT_PUBLIC_KEY  the Ed25519 public key of the trail's checkpoints (PEM); with
                       --tenant, chains are measured against the tenant's latest checkpoint
  AUDIT_CHECKPOINT_PRIVATE_KEY  the checkpoints' Ed25519 private key (PEM): signs the receipts
                       of erase (without it they are unsigned)
The CLI never creates tables: start the app once (or run the module's migrations) first.
The demo's development keys: node --env-file=./data/dev-keys.env <this script> <command> ...
`;

/**
 * The storage the environment names, as the demo reads it. An operator tool never creates
 * tables (`runMigrations: false`): a store without them is refused, not set up.
 */
export function storageFromEnv(env: NodeJS.ProcessEnv): StorageOptions {
  const url = env.SESSION_STORAGE_URL?.trim();
  if (!url) {
    return {
      type: 'sqlite',
      path: env.SESSION_SQLITE_PATH ?? './data/demo.sqlite',
      runMigrations: false,
    };
  }
  const scheme = /^([a-z]+):\/\//.exec(url)?.[1];
  if (scheme === 'postgres' || scheme === 'postgresql') {
    return { type: 'postgres', url, runMigrations: false };
  }
  if (scheme === 'mysql' || scheme === 'mariadb')
    return { type: 'mysql', url, runMigrations: false };
  if (scheme === 'redis' || scheme === 'rediss') return { type: 'redis', url };
  throw new UsageError(
    'SESSION_STORAGE_URL must start with postgres://, mysql://, mariadb:// or redis://',
  );
}

/**
 * The bin's application context, built from the environment like the demo's module: the keys,
 * the storage, the audit trail (on, with the checkpoints' public key if given), and the jobs
 * left at their defaults (none scheduled: a command runs one itself, as its own system actor).
 * Checks the environment when called, so `--help` needs none.
 */
export function contextFromEnv(env: NodeJS.ProcessEnv): () => Promise<INestApplicationContext> {
  return async () => {
    const storage = storageFromEnv(env);
    if (!env.SESSION_KEYS || !env.SESSION_ACTIVE_KEY) {
      throw new UsageError('set SESSION_KEYS and SESSION_ACTIVE_KEY (see --help)');
    }
    // SQLite would create a missing file: an operator's typo must not leave an empty store.
    if (storage.type === 'sqlite' && !existsSync(storage.path ?? '')) {
      throw new UsageError(
        `no SQLite file at ${storage.path ?? '(none)'}: set SESSION_SQLITE_PATH to the app's file, or SESSION_STORAGE_URL to its server (see --help)`,
      );
    }
    @Module({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: env.SESSION_KEYS, activeKeyId: env.SESSION_ACTIVE_KEY } },
          storage,
          ...(env.AUDIT_CHECKPOINT_PRIVATE_KEY
            ? { audit: { checkpoints: { privateKey: env.AUDIT_CHECKPOINT_PRIVATE_KEY } } }
            : env.AUDIT_CHECKPOINT_PUBLIC_KEY
              ? { audit: { checkpoints: { publicKey: env.AUDIT_CHECKPOINT_PUBLIC_KEY } } }
              : {}),
        }),
      ],
    })
    // oxlint-disable-next-line typescript/no-extraneous-class -- a Nest module is a class by design
    class CliModule {}
    return NestFactory.createApplicationContext(CliModule, {
      logger: ['error'],
      abortOnError: false,
    });
  };
}
