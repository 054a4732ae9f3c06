import { z } from 'zod';
import type { Logger as WinstonLogger } from 'winston';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { signingKeyIdOf, type AuditReadsPolicy, type CheckpointSigner } from '../audit/index.js';
import { ConfigurationError } from '../errors/index.js';
import type { JobsConfig } from '../jobs/index.js';
import { parseOptions } from '../errors/option-schema.js';
import {
  keyRingOptionsFrom,
  resolveKeyRingOptions,
  type KeyRingOptions,
  type ModuleKeyRingOptions,
} from '../keys/index.js';
import { DEFAULT_MAX_ITEM_BYTES, type SessionDefaults } from '../sessions/index.js';
import type { SessionStorage } from '../storage/index.js';
// Only the key rule: the Redis adapter itself (and ioredis) is loaded when Redis is named.
import { validateRedisKeyPrefix } from '../storage/redis/redis-keys.js';
import {
  DEFAULT_TABLE_PREFIX,
  checkSqlServerOptions,
  tableNamesFor,
} from '../storage/typeorm/index.js';
import { MODULE_EXTRAS_DEFAULTS } from './encrypted-session.module-definition.js';
import {
  DEFAULT_SQLITE_PATH,
  KEY_POLICY_OPTIONS,
  keySourceSchemas,
  keysSchemaFor,
  moduleOptionsSchema,
  type ActorResolver,
  type AuditOptions,
  type JobsOptions,
  type KeySourceName,
  type RedisStorageOptions,
  type SqlServerStorageOptions,
  type SqliteStorageOptions,
} from './module-options.schema.js';

/** The one key source the options name, parsed. */
export type ResolvedKeySource = {
  [Name in KeySourceName]: {
    readonly source: Name;
    readonly options: z.output<(typeof keySourceSchemas)[Name]>;
  };
}[KeySourceName];

/** Table prefix and migrations of a store kept in SQL tables, defaults applied. */
interface SqlTables {
  readonly tablePrefix: string;
  readonly runMigrations: boolean;
}

/** Where sessions go, defaults applied. */
export type ResolvedStorage =
  | (Readonly<SqliteStorageOptions> &
      SqlTables & { readonly path: string; readonly synchronous: 'FULL' | 'NORMAL' })
  | (Readonly<SqlServerStorageOptions> & SqlTables)
  | Readonly<RedisStorageOptions>
  | { readonly type: 'memory' }
  | ({ readonly type: 'hostDataSource' } & SqlTables)
  | { readonly type: 'instance'; readonly instance: SessionStorage };

/**
 * The module's options after {@link resolveModuleOptions}: checked, defaults applied, frozen.
 * Every provider of the module derives what it needs from this one object.
 */
/** The audit trail's options, defaults applied; `undefined` when the trail is off. */
export interface ResolvedAuditOptions {
  readonly requireActor: boolean;
  readonly actorFromRequest: ActorResolver | undefined;
  readonly actorFromRunContext: ActorResolver | undefined;
  /** The checkpoints' signing key, and the timer, if configured. */
  readonly checkpoints:
    { readonly signer: CheckpointSigner; readonly everyMs?: number } | undefined;
  /** Where committed events are copied, if anywhere. */
  readonly winston: { readonly file: string } | { readonly logger: WinstonLogger } | undefined;
  readonly reads: AuditReadsPolicy;
  readonly macKeyRotationMs: number;
}

export interface ResolvedModuleOptions {
  readonly keys: ResolvedKeySource;
  readonly audit: ResolvedAuditOptions | undefined;
  readonly keyRing: Readonly<Required<KeyRingOptions>>;
  readonly storage: ResolvedStorage;
  readonly sessions: Readonly<SessionDefaults>;
  readonly jobs: JobsConfig;
}

/** Options that change the module graph: read beside the options, never in them. */
const EXTRAS = Object.keys(MODULE_EXTRAS_DEFAULTS);

const KEY_SOURCES = Object.keys(keySourceSchemas) as KeySourceName[];

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Checks the options a host gave `forRoot` (or its `forRootAsync` factory returned) against
 * {@link moduleOptionsSchema} and the storage and key layers' own rules, applies the defaults,
 * and freezes the result. Builds and opens nothing.
 *
 * @param hostDataSourceNamed Whether `dataSourceName` was given beside the options.
 * @throws ConfigurationError naming the first option that is wrong and what to set.
 */
export function resolveModuleOptions(
  options: unknown,
  hostDataSourceNamed = false,
): ResolvedModuleOptions {
  if (isPlainObject(options)) {
    for (const extra of EXTRAS) {
      if (Object.hasOwn(options, extra)) {
        throw new ConfigurationError(
          `options.${extra} changes the module graph: pass it beside useFactory (forRootAsync({ ${extra}, useFactory })), not in the factory's result, where it is not read`,
        );
      }
    }
  }
  // `keys` is a union without a tag: it is checked on its own below, by the source it names.
  const parsed = parseOptions(
    moduleOptionsSchema.extend({ keys: z.unknown().optional() }),
    options,
    'options',
  );
  const keys = resolveKeys(parsed.keys);
  return deepFreeze({
    keys: keys.source,
    audit: resolveAudit(parsed.audit),
    jobs: resolveJobs(parsed.jobs, parsed.retention?.sessionIdleDays ?? null),
    keyRing: resolveKeyRingOptions(
      keyRingOptionsFrom({
        keyCache: parsed.keyCache,
        keys: keys.policies,
      }),
    ),
    storage: resolveStorage(parsed.storage, hostDataSourceNamed),
    sessions: {
      tenantId: parsed.defaultTenantId ?? 'default',
      itemTtlSeconds: parsed.itemTtlSeconds ?? null,
      maxItemBytes: parsed.maxItemBytes ?? DEFAULT_MAX_ITEM_BYTES,
    },
  });
}

const DAY_MS = 86_400_000;

function resolveJobs(jobs: JobsOptions | undefined, sessionIdleDays: number | null): JobsConfig {
  return {
    leaseTtlMs: (jobs?.leaseTtlSeconds ?? 60) * 1000,
    kekRewrap: {
      enabled: jobs?.kekRewrap?.enabled ?? false,
      cron: jobs?.kekRewrap?.cron ?? '0 * * * *',
      batchSize: jobs?.kekRewrap?.batchSize ?? 100,
      maxBatchesPerRun: jobs?.kekRewrap?.maxBatchesPerRun ?? 50,
    },
    keyRotation: {
      enabled: jobs?.keyRotation?.enabled ?? false,
      cron: jobs?.keyRotation?.cron ?? '0 3 * * *',
      batchSize: jobs?.keyRotation?.batchSize ?? 500,
      maxBatchesPerRun: jobs?.keyRotation?.maxBatchesPerRun ?? 1000,
    },
    retentionPurge: {
      enabled: jobs?.retentionPurge?.enabled ?? false,
      cron: jobs?.retentionPurge?.cron ?? '*/15 * * * *',
      batchSize: jobs?.retentionPurge?.batchSize ?? 1000,
      maxBatchesPerRun: jobs?.retentionPurge?.maxBatchesPerRun ?? 1000,
      sessionIdleDays,
    },
  };
}

function resolveAudit(audit: AuditOptions | undefined): ResolvedAuditOptions | undefined {
  if (audit?.enabled === false) return undefined;
  return {
    // Production refuses an operation nobody is accountable for; elsewhere it is recorded as
    // the unattributed system actor.
    requireActor: audit?.requireActor ?? process.env.NODE_ENV === 'production',
    reads: audit?.reads ?? 'group-commit',
    macKeyRotationMs: (audit?.macKeyRotationDays ?? 30) * DAY_MS,
    actorFromRequest: audit?.actorFromRequest,
    actorFromRunContext: audit?.actorFromRunContext,
    winston: audit?.winston,
    checkpoints: audit?.checkpoints && {
      signer: checkpointSigner(audit.checkpoints, audit.checkpoints.everySeconds !== undefined),
      ...(audit.checkpoints.everySeconds === undefined
        ? {}
        : { everyMs: audit.checkpoints.everySeconds * 1000 }),
    },
  };
}

/**
 * The checkpoint signer of the options: a private key (its public key derived), or a public key
 * alone to verify only. Refused, never echoed, unless it is Ed25519.
 */
function checkpointSigner(
  options: {
    readonly privateKey?: string | KeyObject;
    readonly publicKey?: string | KeyObject;
    readonly keyId?: string;
  },
  timed: boolean,
): CheckpointSigner {
  const { privateKey, publicKey } = options;
  if (timed && privateKey === undefined) {
    throw new ConfigurationError(
      'options.audit.checkpoints.everySeconds takes checkpoints, which needs privateKey; a publicKey alone only verifies them',
    );
  }
  if ((privateKey === undefined) === (publicKey === undefined)) {
    throw new ConfigurationError(
      'options.audit.checkpoints takes privateKey (to take and verify checkpoints) or publicKey (to verify only), not both and not neither',
    );
  }
  const which = privateKey === undefined ? 'public' : 'private';
  let key: KeyObject | undefined;
  try {
    const given = (privateKey ?? publicKey)!;
    key =
      typeof given !== 'string'
        ? given
        : which === 'private'
          ? createPrivateKey(given)
          : createPublicKey(given);
  } catch {
    key = undefined;
  }
  if (key?.type !== which || key.asymmetricKeyType !== 'ed25519') {
    throw new ConfigurationError(
      `options.audit.checkpoints.${which}Key must be an Ed25519 ${which} key (PEM); generate one with: openssl genpkey -algorithm ed25519`,
    );
  }
  const verifyKey = which === 'private' ? createPublicKey(key) : key;
  return {
    ...(which === 'private' ? { privateKey: key } : {}),
    publicKey: verifyKey,
    keyId: options.keyId ?? signingKeyIdOf(verifyKey),
  };
}

function resolveKeys(keys: unknown) {
  if (!isPlainObject(keys)) {
    throw new ConfigurationError(
      'options.keys is required: { env: { keys, activeKeyId } }, { awsKms }, { vaultTransit }, { vaultKv } or { provider } (there is no default key)',
    );
  }
  const sources = KEY_SOURCES.filter((name) => Object.hasOwn(keys, name));
  if (sources.length > 1) {
    throw new ConfigurationError(
      `options.keys names ${sources.length} key sources (${sources.join(', ')}); give exactly one`,
    );
  }
  const [source] = sources;
  if (source === undefined) {
    const unknown = Object.keys(keys).find((key) => !KEY_POLICY_OPTIONS.includes(key));
    throw new ConfigurationError(
      unknown === undefined
        ? `options.keys names no key source; give one of ${KEY_SOURCES.join(', ')} (there is no default key)`
        : `Unknown option options.keys.${unknown}; options.keys takes one of ${KEY_SOURCES.join(', ')}, and ${KEY_POLICY_OPTIONS.join(', ')}`,
    );
  }
  const parsed = parseOptions(keysSchemaFor(source), keys, 'options.keys') as Record<
    string,
    unknown
  > &
    NonNullable<ModuleKeyRingOptions['keys']>;
  // The key ring reads its policies (retry, maxItemsPerDataKey, rotation) from the parsed keys as given.
  return { source: { source, options: parsed[source] } as ResolvedKeySource, policies: parsed };
}

type ParsedStorage = z.output<typeof moduleOptionsSchema>['storage'];

/** Defaults of the storage options, and the storage layer's own checks on names and URLs. */
function resolveStorage(storage: ParsedStorage, hostDataSourceNamed: boolean): ResolvedStorage {
  if (hostDataSourceNamed && storage !== undefined && storage.type !== 'hostDataSource') {
    throw new ConfigurationError(
      "options.storage and dataSourceName both say where sessions go; give only one: dataSourceName for a host TypeORM DataSource (its table prefix in storage: { type: 'hostDataSource', tablePrefix }), or options.storage for a store of the module's own",
    );
  }
  if (storage?.type === 'hostDataSource' && !hostDataSourceNamed) {
    throw new ConfigurationError(
      "options.storage type 'hostDataSource' needs dataSourceName beside the options (forRoot({ ...options, dataSourceName }) or forRootAsync({ dataSourceName, useFactory })): 'default' for the unnamed TypeORM DataSource, or its name",
    );
  }
  const given =
    storage ??
    (hostDataSourceNamed ? { type: 'hostDataSource' as const } : { type: 'sqlite' as const });
  if (given.type === undefined) return { type: 'instance', instance: given.instance };
  switch (given.type) {
    case 'memory':
      return given;
    case 'redis':
      if (given.keyPrefix !== undefined) validateRedisKeyPrefix(given.keyPrefix);
      return given;
    case 'sqlite':
      return {
        ...given,
        ...sqlTables(given),
        path: given.path ?? DEFAULT_SQLITE_PATH,
        synchronous: given.synchronous ?? 'FULL',
      };
    case 'hostDataSource':
      return { ...given, ...sqlTables(given) };
  }
  // A database server: postgres, mysql or mariadb.
  checkSqlServerOptions({ ...given, type: given.type === 'postgres' ? 'postgres' : 'mysql' });
  return { ...given, ...sqlTables(given) };
}

function sqlTables(options: { tablePrefix?: string; runMigrations?: boolean }): SqlTables {
  const tablePrefix = options.tablePrefix ?? DEFAULT_TABLE_PREFIX;
  tableNamesFor(tablePrefix);
  return { tablePrefix, runMigrations: options.runMigrations ?? true };
}

/** Plain data (object literals, arrays), as opposed to a host's own instances. */
const isPlainData = (value: unknown): value is object =>
  Array.isArray(value) ||
  (isPlainObject(value) &&
    [Object.prototype, null].includes(Object.getPrototypeOf(value) as object | null));

/** Freezes plain data all the way down; a host's own objects (a provider, a storage) stay as they are. */
function deepFreeze<T>(value: T): T {
  if (isPlainData(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
