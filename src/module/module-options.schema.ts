import { KeyObject } from 'node:crypto';
import { z } from 'zod';
import {
  milliseconds,
  nonEmptyString,
  strictOptions,
  takes,
  wholeNumber,
} from '../errors/option-schema.js';
import {
  keyCacheOptionsSchema,
  keyProviderRetrySchema,
  keyRotationPolicySchema,
  maxItemsPerDataKeySchema,
  type KeyProvider,
} from '../keys/index.js';
import type { Logger as WinstonLogger } from 'winston';
import type { AuditActor } from '../audit/index.js';
import type { SessionStorage } from '../storage/index.js';

/**
 * The schema of `EncryptedSessionModule`'s options: the one place they are described. The
 * public option types are inferred from it, and `resolveModuleOptions` checks a host's options
 * with it, so a type and its check cannot drift apart. Every field's message says what to set.
 *
 * Only plain data and the host's own objects (`keys.provider`, `storage.instance`) appear here:
 * the types of optional packages (ioredis, the AWS SDK, node-vault) stay in their subpath
 * entries, so a host that does not install them still type-checks.
 */

// ---------------------------------------------------------------------------------------------
// Keys

const envKeySourceSchema = strictOptions(
  {
    /**
     * Root keys as `id:base64` pairs separated by commas (or an array of pairs). Each key must
     * be exactly 32 random bytes, e.g. from `openssl rand -base64 32`.
     */
    keys: z.union(
      [z.string().min(1), z.array(z.string()).readonly()],
      missingEnvKey(
        "'id:base64key,...' (comma-separated; each key 32 random bytes, e.g. k1:$(openssl rand -base64 32))",
        'SESSION_KEYS',
      ),
    ),
    /** Id of the key that wraps new data keys; must be one of `keys`. */
    activeKeyId: z
      .string(
        missingEnvKey(
          'the id of the key in options.keys.env.keys that wraps new data keys',
          'SESSION_ACTIVE_KEY',
        ),
      )
      .min(
        1,
        missingEnvKey(
          'the id of the key in options.keys.env.keys that wraps new data keys',
          'SESSION_ACTIVE_KEY',
        ),
      ),
    /** Names shown in error messages, so they point at what the operator actually sets. */
    sourceNames: strictOptions({
      keys: nonEmptyString('the name of the setting that holds the keys'),
      activeKeyId: nonEmptyString('the name of the setting that holds the active key id'),
    }).optional(),
  },
  'an object: { keys, activeKeyId }',
);

/**
 * `keys: { env: { keys: process.env.SESSION_KEYS! } }` with the variable unset passes
 * `undefined`: say that it is missing and where the README takes it from.
 */
function missingEnvKey(what: string, readmeVariable: string) {
  return {
    error: (issue: { input?: unknown }) => {
      const { input } = issue;
      const state =
        input === undefined || input === null
          ? `missing (${String(input)})`
          : input === ''
            ? 'empty'
            : undefined;
      return state === undefined
        ? `must be ${what}`
        : `is ${state}: set it to ${what} (the README reads it from ${readmeVariable})`;
    },
  };
}

const optionalString = (what: string) => nonEmptyString(what).optional();

/**
 * Static AWS credentials, or a function that resolves them (the SDK's credential providers).
 *
 * @publicApi
 */
export type AwsCredentialsOption =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }
  | (() => Promise<{
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken?: string;
      expiration?: Date;
    }>);

const awsKmsKeySourceSchema = strictOptions(
  {
    /**
     * The KMS key new data keys are wrapped under: a key id, a key ARN, an alias (`alias/...`)
     * or an alias ARN, of a symmetric encryption key. An alias is resolved to its ARN at startup.
     */
    keyId: nonEmptyString('a KMS key id, key ARN or alias (alias/...)'),
    /** AWS region of the key. Unset: the standard AWS environment (`AWS_REGION`, the profile). */
    region: optionalString('an AWS region, e.g. eu-west-1'),
    /** KMS endpoint URL, e.g. a VPC endpoint. Unset: the SDK's (`AWS_ENDPOINT_URL_KMS`). */
    endpoint: optionalString('the KMS endpoint URL, e.g. https://kms.eu-west-1.amazonaws.com'),
    /** Static credentials or a credentials provider. Unset: the SDK's default chain. */
    credentials: z
      .custom<AwsCredentialsOption>(
        (value) =>
          typeof value === 'function' ||
          (typeof value === 'object' &&
            value !== null &&
            typeof (value as { accessKeyId?: unknown }).accessKeyId === 'string' &&
            typeof (value as { secretAccessKey?: unknown }).secretAccessKey === 'string'),
        takes('{ accessKeyId, secretAccessKey, sessionToken? } or a credentials provider function'),
      )
      .optional(),
    /** Time limit of one HTTP attempt (connecting included), in ms. @default 5000 */
    requestTimeoutMs: milliseconds(5000, 1).optional(),
    /** Attempts per KMS call, first one included (the SDK's own retries). @default 3 */
    maxAttempts: wholeNumber('a whole number of attempts, at least 1 (default 3)', 1).optional(),
  },
  'an object: { keyId, region?, endpoint?, credentials? }',
);

const vaultAuthSchema = z.discriminatedUnion(
  'method',
  [
    strictOptions({
      method: z.literal('token'),
      /** A Vault token. Renewed while renewable; never logged. */
      token: nonEmptyString('a Vault token'),
    }),
    strictOptions({
      method: z.literal('approle'),
      roleId: nonEmptyString('the AppRole role id'),
      /** Never logged. */
      secretId: nonEmptyString('the AppRole secret id'),
      /** Mount path of the AppRole auth method. @default 'approle' */
      mountPath: optionalString("the AppRole auth mount path (default 'approle')"),
    }),
    strictOptions({
      method: z.literal('kubernetes'),
      /** Vault role bound to the pod's service account. */
      role: nonEmptyString('the Vault role bound to the service account'),
      /** The service account JWT; when left out, read from `jwtPath` at every login. */
      jwt: optionalString('a service account JWT'),
      /** @default '/var/run/secrets/kubernetes.io/serviceaccount/token' */
      jwtPath: optionalString('the path of the service account token file'),
      /** Mount path of the Kubernetes auth method. @default 'kubernetes' */
      mountPath: optionalString("the Kubernetes auth mount path (default 'kubernetes')"),
    }),
  ],
  takes(
    "{ method: 'token', token }, { method: 'approle', roleId, secretId } or { method: 'kubernetes', role }",
  ),
);

/**
 * How the Vault key providers log in (`keys.vaultTransit.auth`, `keys.vaultKv.auth`).
 *
 * @publicApi
 */
export type VaultAuthOptions = z.input<typeof vaultAuthSchema>;

const vaultConnectionShape = {
  /** Vault's address, e.g. `https://vault.internal:8200`. */
  endpoint: nonEmptyString("Vault's address, e.g. https://vault.internal:8200"),
  /** Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace`. */
  namespace: optionalString('a Vault namespace'),
  auth: vaultAuthSchema,
  /** Time limit of one Vault request, in ms. @default 5000 */
  requestTimeoutMs: milliseconds(5000, 1).optional(),
  /** Share of the token's TTL after which it is renewed. Lower it only in tests. @default 2/3 */
  renewAtFraction: z
    .number(takes('a fraction between 0 and 1 (default 2/3)'))
    .gt(0, takes('a fraction between 0 and 1 (default 2/3)'))
    .lt(1, takes('a fraction between 0 and 1 (default 2/3)'))
    .optional(),
};

const vaultTransitKeySourceSchema = strictOptions(
  {
    ...vaultConnectionShape,
    /** Mount path of the transit secrets engine. @default 'transit' */
    mountPath: optionalString("the transit mount path (default 'transit')"),
    /** Name of the transit key, created with `derived=true`. */
    keyName: nonEmptyString('the name of a transit key created with derived=true'),
    /** Let Vault generate data keys (`transit/datakey/plaintext`). @default false */
    useDatakeyEndpoint: z.boolean(takes('true or false (default false)')).optional(),
  },
  'an object: { endpoint, auth, keyName }',
);

const vaultKvKeySourceSchema = strictOptions(
  {
    ...vaultConnectionShape,
    /** Mount path of the KV version 2 secrets engine. @default 'secret' */
    mountPath: optionalString("the KV v2 mount path (default 'secret')"),
    /** Path of the secret inside the mount, e.g. `nest-sessions/root-key`. */
    secretPath: nonEmptyString('the path of the secret, e.g. nest-sessions/root-key'),
    /** Field of the secret holding the base64 root key. @default 'key' */
    field: optionalString("the secret's field holding the key (default 'key')"),
    /** How long the secret's versions are trusted before they are read again, in ms. @default 300000 */
    keyCacheTtlMs: milliseconds(300_000).optional(),
  },
  'an object: { endpoint, auth, secretPath }',
);

const isKeyProvider = (value: unknown): value is KeyProvider => {
  const provider = value as Partial<KeyProvider> | null | undefined;
  return (
    typeof provider === 'object' &&
    provider !== null &&
    typeof provider.activeKekId === 'function' &&
    typeof provider.generateDataKey === 'function' &&
    typeof provider.unwrapDataKey === 'function' &&
    typeof provider.rewrapDataKey === 'function'
  );
};

/** Each key source: where root keys come from. */
export const keySourceSchemas = {
  /** Root keys in configuration (`id:base64` pairs) with one active id. */
  env: envKeySourceSchema,
  /** A KMS key in AWS KMS (`npm install @aws-sdk/client-kms`). */
  awsKms: awsKmsKeySourceSchema,
  /** A derived transit key in HashiCorp Vault (`npm install node-vault`). */
  vaultTransit: vaultTransitKeySourceSchema,
  /** Root keys kept in a Vault KV v2 secret (`npm install node-vault`). */
  vaultKv: vaultKvKeySourceSchema,
  /**
   * Any {@link KeyProvider} the host built: a provider from `nest-encrypted-sessions/aws-kms` or
   * `/vault` with its own client, a custom HSM, a test double. The module awaits its `init()` at
   * startup and its `close()` at shutdown.
   */
  provider: z.custom<KeyProvider>(
    isKeyProvider,
    takes(
      'an object implementing KeyProvider (activeKekId, generateDataKey, unwrapDataKey, rewrapDataKey)',
    ),
  ),
};

/** The name of one key source. */
export type KeySourceName = keyof typeof keySourceSchemas;

/** What `keys` holds besides its source: policies of the key ring. */
const keyPolicyShape = {
  /**
   * Items one data key seals before the session moves to a new generation; one `addItems` or
   * history transaction appends at most this many. Lower only in tests. @default 268435456 (2^28)
   */
  maxItemsPerDataKey: maxItemsPerDataKeySchema.optional(),
  /** Retries of key provider calls that failed retryably (throttling, 5xx, a dropped connection). */
  retry: keyProviderRetrySchema.optional(),
  /**
   * When a session's data key gives way to a new generation: a key that sealed items and is
   * `maxAgeDays` old, or has sealed `maxItems`, is rotated at the session's next write.
   * @default { maxAgeDays: 90, maxItems: null }
   */
  rotation: keyRotationPolicySchema.optional(),
};

/** The options `keys` holds besides its one source. */
export const KEY_POLICY_OPTIONS = Object.keys(keyPolicyShape);

/** `keys` with exactly the one source `name`, and the key ring's policies. */
export function keysSchemaFor<Name extends KeySourceName>(name: Name) {
  return strictOptions({ [name]: keySourceSchemas[name], ...keyPolicyShape } as {
    [K in Name]: (typeof keySourceSchemas)[Name];
  } & typeof keyPolicyShape);
}

const keysSchema = z.union([
  keysSchemaFor('env'),
  keysSchemaFor('awsKms'),
  keysSchemaFor('vaultTransit'),
  keysSchemaFor('vaultKv'),
  keysSchemaFor('provider'),
]);

// ---------------------------------------------------------------------------------------------
// Storage

/** Options of every store the module keeps in SQL tables through TypeORM. */
const sqlTablesShape = {
  /** Prefix of every table the module creates: 1-20 lowercase letters, digits or `_`. @default 'nes_' */
  tablePrefix: z
    .string(takes("1-20 lowercase letters, digits or _, starting with a letter (default 'nes_')"))
    .optional(),
  /**
   * Apply the module's migrations at startup (only the module's own, tracked in
   * `<prefix>schema_migrations`). Set false when the host runs the exported migrations itself.
   * @default true
   */
  runMigrations: z.boolean(takes('true or false (default true)')).optional(),
};

const sqliteStorageSchema = strictOptions({
  type: z.literal('sqlite'),
  /** Database file. @default './data/sessions.sqlite' */
  path: optionalString('a file path, e.g. ./data/sessions.sqlite'),
  /** `FULL` waits for the disk at every commit; `NORMAL` is faster (see README). @default 'FULL' */
  synchronous: z.enum(['FULL', 'NORMAL'], takes("'FULL' (the default) or 'NORMAL'")).optional(),
  /** Wait for another process's write lock, in ms. @default 5000 */
  busyTimeoutMs: milliseconds(5000).optional(),
  /** SQLite page cache, in KiB. @default 8192 */
  cacheSizeKiB: wholeNumber('a whole number of KiB, at least 64 (default 8192)', 64).optional(),
  ...sqlTablesShape,
});

const sqlServerStorageSchema = strictOptions({
  /** `postgres`, or `mysql` / `mariadb` (the same mysql2 driver). */
  type: z.enum(['postgres', 'mysql', 'mariadb']),
  /**
   * Connection URL, e.g. `postgres://user:pass@host:5432/db` or `mysql://user:pass@host:3306/db`.
   * Keep the password in a secret store; the module never logs the URL.
   */
  url: nonEmptyString('a connection URL, e.g. postgres://user:password@host:port/database'),
  /** Most pooled connections this process opens. @default 10 */
  poolSize: wholeNumber('a whole number of connections, at least 1 (default 10)', 1).optional(),
  /** How long to wait for a connection, in ms. @default 10000 */
  connectTimeoutMs: milliseconds(10_000, 1).optional(),
  /**
   * Postgres schema holding the tables (it must exist; the role needs USAGE and CREATE on it).
   * @default the connection's search_path (usually `public`)
   */
  schema: optionalString('the name of an existing Postgres schema'),
  /** TLS settings passed to the driver (`true` for the system CAs). @default none */
  ssl: z
    .union([z.boolean(), z.record(z.string(), z.unknown())], takes('true, false or TLS options'))
    .optional(),
  ...sqlTablesShape,
});

const redisStorageSchema = strictOptions({
  type: z.literal('redis'),
  /**
   * Connection URL, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS). For a client of the
   * host's (or Redis Cluster), pass `{ instance: new RedisSessionStorage({ client }) }` from
   * `nest-encrypted-sessions/redis` instead.
   */
  url: nonEmptyString('a Redis URL, e.g. redis://127.0.0.1:6379/0'),
  /** Prefix of every key. @default 'nes:' */
  keyPrefix: z.string(takes("a key prefix, e.g. 'nes:' (the default)")).optional(),
  /** Keys of a session whose items all expired are deleted this long after, in s. @default 86400 */
  expiryBackstopSeconds: wholeNumber(
    'a whole number of seconds, at least 1 (default 86400)',
    1,
  ).optional(),
  /** Attempts of one unit of work under write conflicts. @default 100 */
  maxConflictRetries: wholeNumber(
    'a whole number of attempts, at least 1 (default 100)',
    1,
  ).optional(),
  /** Bound of every Redis round trip, in ms. @default 5000 */
  commandTimeoutMs: milliseconds(5000, 1).optional(),
  /** How long startup waits for Redis to answer, and the TCP connect timeout, in ms. @default 5000 */
  connectTimeoutMs: milliseconds(5000, 1).optional(),
});

const isSessionStorage = (value: unknown): value is SessionStorage => {
  const storage = value as Partial<SessionStorage> | null | undefined;
  return (
    typeof storage === 'object' &&
    storage !== null &&
    typeof storage.read === 'function' &&
    typeof storage.transaction === 'function' &&
    typeof storage.close === 'function'
  );
};

const STORAGE_TYPES =
  "'sqlite', 'postgres', 'mysql', 'mariadb', 'redis', 'memory' or 'hostDataSource'";

const storageSchema = z.discriminatedUnion(
  'type',
  [
    /** The module's own embedded SQLite file (WAL). The default. */
    sqliteStorageSchema,
    /** A Postgres or MySQL/MariaDB server the module connects to itself, from a URL. */
    sqlServerStorageSchema,
    /** Redis (ioredis 5, `npm install ioredis`): one hash tag per session. */
    redisStorageSchema,
    /** In process memory: nothing survives a restart. Tests and throwaway demos only. */
    strictOptions({ type: z.literal('memory') }),
    /**
     * The host TypeORM DataSource named by `dataSourceName` (given beside the options): its table
     * prefix and migrations. The default when `dataSourceName` is given.
     */
    strictOptions({ type: z.literal('hostDataSource'), ...sqlTablesShape }),
    /**
     * A {@link SessionStorage} the host built, e.g. `new RedisSessionStorage({ client })` from
     * `nest-encrypted-sessions/redis`. Used as given (the host runs its migrations, if any); the
     * module closes it at shutdown.
     */
    strictOptions({
      type: z.undefined().optional(),
      instance: z.custom<SessionStorage>(
        isSessionStorage,
        takes(
          `a SessionStorage (read, transaction, close), or give options.storage.type: one of ${STORAGE_TYPES}`,
        ),
      ),
    }),
  ],
  takes(`one of ${STORAGE_TYPES}, or { instance } (default 'sqlite')`),
);

// ---------------------------------------------------------------------------------------------
// Audit trail

/**
 * Maps a request, or an agent run's context, to the actor the trail records.
 *
 * @publicApi
 */
export type ActorResolver = (source: any) => AuditActor | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any

const auditOptionsSchema = strictOptions(
  {
    /**
     * Record every session operation in the tamper-evident trail (`docs/audit-format.md`),
     * fail-closed: an operation whose record cannot be written fails. @default true
     */
    enabled: z.boolean(takes('true or false (default true)')).optional(),
    /**
     * Refuse an operation that runs with no actor (no `runAs`, no request context) with
     * `AuditActorRequiredError`, before it touches anything.
     * @default true when NODE_ENV is 'production', else false (the actor is then recorded as
     *   `{ type: 'system', id: 'unattributed' }`)
     */
    requireActor: z.boolean(takes('true or false')).optional(),
    /**
     * How reads are recorded, always before their data is returned: `'group-commit'` (every
     * read; concurrent reads of a session share one commit) or `{ dedupeWindowSeconds }` (one
     * read event per actor and session in each window, remembered per process).
     * @default 'group-commit'
     */
    reads: z
      .union(
        [
          z.literal('group-commit'),
          strictOptions(
            {
              dedupeWindowSeconds: wholeNumber(
                'a whole number of seconds, at least 1 (e.g. 300)',
                1,
              ),
            },
            "'group-commit' or { dedupeWindowSeconds }",
          ),
        ],
        takes("'group-commit' (the default) or { dedupeWindowSeconds }"),
      )
      .optional(),
    /**
     * Days one MAC key seals new records before the next one starts; older keys stay, for
     * verification only. @default 30
     */
    macKeyRotationDays: wholeNumber(
      'a whole number of days, at least 1 (default 30)',
      1,
    ).optional(),
    /**
     * A copy of every committed event to winston, after commit (the database stays the system
     * of record): `{ file: './data/audit.jsonl' }` writes JSON lines in the stored schema (the
     * module ends and flushes that logger at shutdown); `{ logger }` hands each event to the
     * host's winston logger as `{ message: 'nes.audit', event }` (the host ends it). A failing
     * transport is counted and reported, never fails an operation. @default none
     */
    winston: z
      .union(
        [
          strictOptions({ file: nonEmptyString('the path of a JSON-lines file') }),
          strictOptions({
            logger: z.custom<WinstonLogger>(
              (value) =>
                typeof (value as WinstonLogger | null)?.log === 'function' &&
                typeof (value as WinstonLogger | null)?.on === 'function',
              takes('a winston Logger (winston.createLogger(...))'),
            ),
          }),
        ],
        takes("{ file: 'path' } or { logger }"),
      )
      .optional(),
    /**
     * Signed checkpoints of each tenant's trail (Ed25519 over the Merkle root of every chain
     * head), stored and copied to the winston sink: they let `verify` catch a cut tail, a chain
     * deleted whole and a rewrite by someone holding the MAC key. `privateKey`: an Ed25519
     * private key, PEM (`openssl genpkey -algorithm ed25519`); `keyId`: how auditors name its
     * public key (default `ed25519:` + 16 hex digits of its SHA-256); `everySeconds`: take one
     * for each tenant whose trail changed, on a timer (default: only on demand, through
     * `AuditService.checkpoint()`). @default none
     */
    checkpoints: strictOptions(
      {
        privateKey: z
          .union(
            [
              nonEmptyString('an Ed25519 private key in PEM'),
              z.custom<KeyObject>((value) => value instanceof KeyObject),
            ],
            takes('an Ed25519 private key (PEM, or a KeyObject)'),
          )
          .optional(),
        /** Verify-only: the public key, where checkpoints are checked but not taken. */
        publicKey: z
          .union(
            [
              nonEmptyString('an Ed25519 public key in PEM'),
              z.custom<KeyObject>((value) => value instanceof KeyObject),
            ],
            takes('an Ed25519 public key (PEM, or a KeyObject)'),
          )
          .optional(),
        keyId: optionalString('an id for the public key, e.g. "audit-2026"'),
        everySeconds: wholeNumber('a whole number of seconds, at least 1', 1).optional(),
      },
      'an object with { privateKey } (or { publicKey } to verify only)',
    ).optional(),
    /**
     * Who acts in a request, for `AuditActorMiddleware` (the host applies it to its routes):
     * e.g. `(req) => req.user && { type: 'user', id: req.user.sub, tenantId: req.user.tenant }`.
     * Undefined leaves the request without an actor. @default none
     */
    actorFromRequest: z
      .custom<ActorResolver>(
        (value) => typeof value === 'function',
        takes('a function (request) => { type, id, tenantId } | undefined'),
      )
      .optional(),
    /**
     * Who acts in an agent run: the session receives the run's context from the agents
     * Runner (`RunContextAwareSession`) and records the actor this returns from
     * `runContext.context`, for the calls of that run. @default none
     */
    actorFromRunContext: z
      .custom<ActorResolver>(
        (value) => typeof value === 'function',
        takes('a function (runContext.context) => { type, id, tenantId } | undefined'),
      )
      .optional(),
  },
  'an object, e.g. { requireActor: true }',
);

// ---------------------------------------------------------------------------------------------
// Scheduled jobs

const jobsOptionsSchema = strictOptions(
  {
    /**
     * How long a job's lease lasts unless renewed, in seconds. A replica renews it at a third of
     * that while its job works; another replica takes over this long after one died.
     * @default 60
     */
    leaseTtlSeconds: wholeNumber('a whole number of seconds, from 5 to 3600 (default 60)', 5)
      .max(3600, { error: 'must be at most 3600 seconds' })
      .optional(),
    /**
     * Moves data keys still wrapped by an older root key to the active one (KEK rotation by
     * rewrap; `KekRotationService`), on one replica at a time, audited per page.
     * `cron`: when (default hourly, `'0 * * * *'`); `batchSize`: data keys per page (default
     * 100); `maxBatchesPerRun`: pages per run (default 50; the next run goes on).
     * @default { enabled: false }
     */
    kekRewrap: strictOptions(
      {
        enabled: z.boolean(takes('true or false (default false)')).optional(),
        cron: nonEmptyString("a cron expression, e.g. '0 * * * *' (hourly)").optional(),
        batchSize: wholeNumber('a whole number from 1 to 1000 (default 100)', 1)
          .max(1000, { error: 'must be at most 1000' })
          .optional(),
        maxBatchesPerRun: wholeNumber('a whole number, at least 1 (default 50)', 1).optional(),
      },
      "an object, e.g. { enabled: true, cron: '0 * * * *' }",
    ).optional(),
    /**
     * Re-encrypts the items of retiring data keys into their session's active key and
     * destroys each retiring key once no item references it (`KeyRotationService`), on one
     * replica at a time, audited per batch. `cron`: when (default daily at 03:00,
     * `'0 3 * * *'`); `batchSize`: items per batch (default 500); `maxBatchesPerRun`: batches
     * per run (default 1000; the next run goes on).
     * @default { enabled: false }
     */
    keyRotation: strictOptions(
      {
        enabled: z.boolean(takes('true or false (default false)')).optional(),
        cron: nonEmptyString("a cron expression, e.g. '0 3 * * *' (daily at 03:00)").optional(),
        batchSize: wholeNumber('a whole number from 1 to 10000 (default 500)', 1)
          .max(10_000, { error: 'must be at most 10000' })
          .optional(),
        maxBatchesPerRun: wholeNumber('a whole number, at least 1 (default 1000)', 1).optional(),
      },
      "an object, e.g. { enabled: true, cron: '0 3 * * *' }",
    ).optional(),
    /**
     * Deletes expired items (`RetentionService.purgeExpired`), on one replica at a time: each
     * item's sealed expiry is confirmed before it goes, and each session's batch is audited
     * (`retention.purge.batch`). `cron`: when (default every 15 minutes, `'*\/15 * * * *'`);
     * `batchSize`: expired items per page of the scan (default 1000); `maxBatchesPerRun`:
     * batches per run (default 1000; the next run goes on).
     * @default { enabled: false }
     */
    retentionPurge: strictOptions(
      {
        enabled: z.boolean(takes('true or false (default false)')).optional(),
        cron: nonEmptyString(
          "a cron expression, e.g. '*/15 * * * *' (every 15 minutes)",
        ).optional(),
        batchSize: wholeNumber('a whole number from 1 to 10000 (default 1000)', 1)
          .max(10_000, { error: 'must be at most 10000' })
          .optional(),
        maxBatchesPerRun: wholeNumber('a whole number, at least 1 (default 1000)', 1).optional(),
      },
      "an object, e.g. { enabled: true, cron: '*/15 * * * *' }",
    ).optional(),
  },
  'an object, e.g. { kekRewrap: { enabled: true } }',
);

// ---------------------------------------------------------------------------------------------
// The whole

/** The schema of `EncryptedSessionModule.forRoot`'s options (and of `forRootAsync`'s factory result). */
export const moduleOptionsSchema = strictOptions(
  {
    /** Root key source and key policies. Required: there is no default key. */
    keys: keysSchema,
    /**
     * Where sessions are stored.
     * @default { type: 'sqlite', path: './data/sessions.sqlite', synchronous: 'FULL' }, or
     *   `{ type: 'hostDataSource' }` when `dataSourceName` is given
     */
    storage: storageSchema.optional(),
    /** Tenant of sessions opened without one. @default 'default' */
    defaultTenantId: optionalString("a tenant id (default 'default')"),
    /** Item time-to-live in seconds for sessions opened without one; null keeps items. @default null */
    itemTtlSeconds: wholeNumber('a positive whole number of seconds, or null', 1)
      .nullable()
      .optional(),
    /**
     * Largest encoded (JSON) size of one item in bytes, checked before anything is written:
     * `addItems` and `applyHistoryTransaction` refuse a larger item with `InvalidArgumentError`.
     * Keep it below the storage backend's own ceiling (README). @default 4194304 (4 MiB)
     */
    maxItemBytes: wholeNumber(
      'a positive whole number of bytes (the largest encoded item), e.g. 4194304 for 4 MiB (the default)',
      1,
    ).optional(),
    /** The in-process cache of unwrapped data keys: how many, and for how long. */
    keyCache: keyCacheOptionsSchema.optional(),
    /** The audit trail: on by default, fail-closed. */
    audit: auditOptionsSchema.optional(),
    /**
     * Scheduled jobs, each run by one replica at a time under its lease. An enabled job needs
     * the host to import `ScheduleModule.forRoot()` from `@nestjs/schedule`; with every job
     * disabled (the default) the scheduler is not needed.
     */
    jobs: jobsOptionsSchema.optional(),
    /**
     * What the retention purge deletes besides expired items. `sessionIdleDays`: a session
     * with no activity for that many days has its data keys destroyed (crypto-shred) and its
     * rows deleted by the purge (its audit chain stays); null keeps idle sessions. A legal hold
     * keeps a session whatever its age. @default { sessionIdleDays: null }
     */
    retention: strictOptions(
      {
        sessionIdleDays: wholeNumber('a whole number of days, at least 1, or null', 1)
          .nullable()
          .optional(),
      },
      'an object, e.g. { sessionIdleDays: 365 }',
    ).optional(),
  },
  'an options object with at least { keys }',
);

/**
 * Options of `EncryptedSessionModule.forRoot` / `forRootAsync`.
 *
 * @publicApi
 */
export type EncryptedSessionModuleOptions = z.input<typeof moduleOptionsSchema>;
/**
 * `options.audit`: the audit trail.
 *
 * @publicApi
 */
export type AuditOptions = z.input<typeof auditOptionsSchema>;
/**
 * `options.jobs`: the scheduled jobs.
 *
 * @publicApi
 */
export type JobsOptions = z.input<typeof jobsOptionsSchema>;
/**
 * `options.keys`: one root key source and the key ring's policies.
 *
 * @publicApi
 */
export type KeysOptions = z.input<typeof keysSchema>;
/**
 * `options.storage`: where sessions are stored.
 *
 * @publicApi
 */
export type StorageOptions = z.input<typeof storageSchema>;
/**
 * The module's own embedded SQLite file (WAL). The default.
 *
 * @publicApi
 */
export type SqliteStorageOptions = z.input<typeof sqliteStorageSchema>;
/**
 * A Postgres or MySQL/MariaDB server the module connects to itself.
 *
 * @publicApi
 */
export type SqlServerStorageOptions = z.input<typeof sqlServerStorageSchema>;
/**
 * Redis from a URL; a host's client goes in `{ instance }`.
 *
 * @publicApi
 */
export type RedisStorageOptions = z.input<typeof redisStorageSchema>;
/**
 * `keys.env`.
 *
 * @publicApi
 */
export type EnvKeySourceOptions = z.input<typeof envKeySourceSchema>;
/**
 * `keys.awsKms`.
 *
 * @publicApi
 */
export type AwsKmsKeySourceOptions = z.input<typeof awsKmsKeySourceSchema>;
/**
 * `keys.vaultTransit`.
 *
 * @publicApi
 */
export type VaultTransitKeySourceOptions = z.input<typeof vaultTransitKeySourceSchema>;
/**
 * `keys.vaultKv`.
 *
 * @publicApi
 */
export type VaultKvKeySourceOptions = z.input<typeof vaultKvKeySourceSchema>;

/**
 * Options that change the module graph; given next to the options, never async.
 *
 * @publicApi
 */
export interface EncryptedSessionModuleExtras {
  /** Register the module globally. @default false */
  isGlobal?: boolean;
  /**
   * Store sessions in a host's TypeORM DataSource registered with `TypeOrmModule.forRoot`:
   * `'default'` for the unnamed one, or its name. Its table prefix and migrations go in
   * `storage: { type: 'hostDataSource' }`. @default undefined (own SQLite file)
   */
  dataSourceName?: string;
}

/**
 * Default SQLite file, relative to the working directory.
 *
 * @publicApi
 */
export const DEFAULT_SQLITE_PATH = './data/sessions.sqlite';
