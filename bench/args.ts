import { parseArgs } from 'node:util';

/** The storage backends the benchmark runs on. */
export const BACKENDS = ['sqlite', 'postgres', 'mysql', 'redis'] as const;

/** A storage backend of the benchmark (aliases already normalized). */
export type BenchBackend = (typeof BACKENDS)[number];

/** The backends that are servers on this machine (everything but the embedded SQLite). */
export type ServerBackend = Exclude<BenchBackend, 'sqlite'>;

/** Other spellings `--backend` accepts, and the name each stands for. */
const BACKEND_ALIASES: Readonly<Record<string, BenchBackend>> = {
  postgresql: 'postgres',
  mariadb: 'mysql',
};

/** Command-line options of `npm run bench`. */
export interface BenchArgs {
  /** Print one JSON object on stdout instead of the table. */
  readonly json: boolean;
  /** Items written per variant (default 20,000). */
  readonly items: number;
  /** Storage backend, normalized (`postgresql` -> `postgres`, `mariadb` -> `mysql`). */
  readonly backend: BenchBackend;
  /** Processes of the many-writer phase; 0 skips it (default 4). */
  readonly writers: number;
  /** Print the per-layer cost breakdown instead of running the benchmark. */
  readonly layers: boolean;
  /** Run the key-provider benchmark (`keys.ts`) instead of the storage benchmark. */
  readonly keys: boolean;
  /** Run the audit-trail benchmark (`audit.ts`) instead of the storage benchmark. */
  readonly audit: boolean;
  /** Run the scheduled-jobs benchmark (`jobs.ts`) instead of the storage benchmark. */
  readonly jobs: boolean;
  /** Run the data key rotation benchmark (`rotation.ts`) instead of the storage benchmark. */
  readonly rotation: boolean;
}

/** Default `--items`. */
export const DEFAULT_ITEMS = 20_000;
/** Default `--backend`. */
export const DEFAULT_BACKEND: BenchBackend = 'sqlite';
/** Smallest `--items` that leaves expired history behind the newest 20 items. */
export const MIN_ITEMS = 100;
/** Default processes of the many-writer phase. */
export const DEFAULT_WRITERS = 4;
/** Most processes `--writers` starts. */
export const MAX_WRITERS = 32;

/** A usage problem; the runner prints the message and exits with status 2. */
export class UsageError extends Error {}

export const USAGE = `Usage: npm run bench -- [--backend sqlite|postgres|mysql|redis] [--json] [--items N]
                        [--writers N] [--layers]
       npm run bench -- --keys [--json]
       npm run bench -- --audit [--json]
       npm run bench -- --jobs [--json]
       npm run bench -- --rotation [--json]

  --backend NAME  storage backend (default sqlite):
                    sqlite    the embedded store, a temp file per variant
                    postgres  (or postgresql) a throwaway database on the server at
                              $NES_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres)
                    mysql     (or mariadb) a throwaway database on the server at
                              $NES_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test)
                    redis     a throwaway key prefix on the server at
                              $NES_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0)
                  Every variant gets a fresh store, removed again afterwards.
  --json          print exactly one JSON object on stdout (progress goes to stderr)
  --items N       items per variant (default 20000 on every backend; at least ${MIN_ITEMS})
  --writers N     processes of the many-writer phase: N processes append items/2 items in all
                  (batches of 5) to one shared session at once (default ${DEFAULT_WRITERS}; 0 skips it)
  --layers        sqlite only: instead of the benchmark, time each layer of a read and an add on
                  its own (SQLite, TypeORM, storage adapter, key ring, cipher, JSON decode)
  --keys          instead of the benchmark, the key providers: for each of env, aws-kms,
                  vault-transit and vault-kv (the last three against the loopback KMS and Vault
                  test servers), 1,000 sessions x 20 items written to in-memory storage, then
                  read cold (key cache cleared) and warm: provider calls and items/s. A fixed
                  workload: combines with --json only.
  --audit         instead of the benchmark, the audit trail on SQLite: adds, getItems(20) alone
                  and from 16 overlapping callers, each with the trail off and on, then a
                  1,000,000-record chain verified from the file (records/s, peak RSS). A fixed
                  workload: combines with --json only.
  --jobs          instead of the benchmark, the retention purge with the audit trail on:
                  200,000 expired items in 1,000 sessions purged on SQLite and on Postgres
                  (items/s), and getItems(20) calls/s on SQLite alone and beside a purge.
                  A fixed workload: combines with --json only.
  --rotation      instead of the benchmark, staged data key rotation with the audit trail on:
                  200,000 items in 1,000 sessions, every session's key rotated, then the
                  retiring keys' items re-encrypted on SQLite and on Postgres (items/s), and
                  getItems(20) calls/s on SQLite alone and beside a re-encryption run.
                  A fixed workload: combines with --json only.
`;

const isBackend = (name: string): name is BenchBackend =>
  (BACKENDS as readonly string[]).includes(name);

function normalizeBackend(raw: string): BenchBackend {
  const name = raw.toLowerCase();
  const backend = BACKEND_ALIASES[name] ?? name;
  if (!isBackend(backend)) {
    throw new UsageError(
      `Unknown --backend '${raw}'. Use one of: sqlite, postgres (or postgresql), mysql (or mariadb), redis.`,
    );
  }
  return backend;
}

/**
 * Parses `process.argv`-style arguments.
 *
 * @throws UsageError for unknown options, a bad item or writer count, an unknown backend,
 *   `--layers` with a backend other than sqlite, or `--keys` with `--layers`, a backend other
 *   than the default, `--items` or `--writers`.
 */
export function parseBenchArgs(argv: readonly string[]): BenchArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        json: { type: 'boolean', default: false },
        // No defaults here for the options --keys refuses, so a given one can be told apart.
        items: { type: 'string' },
        backend: { type: 'string' },
        writers: { type: 'string' },
        layers: { type: 'boolean', default: false },
        keys: { type: 'boolean', default: false },
        audit: { type: 'boolean', default: false },
        jobs: { type: 'boolean', default: false },
        rotation: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${USAGE}`);
  }
  if (values.help) return 'help';
  const rawItems = values.items ?? String(DEFAULT_ITEMS);
  const items = Number(rawItems);
  if (!Number.isSafeInteger(items) || items < MIN_ITEMS) {
    throw new UsageError(`--items must be a whole number >= ${MIN_ITEMS}; got '${rawItems}'`);
  }
  const rawWriters = values.writers ?? String(DEFAULT_WRITERS);
  const writers = Number(rawWriters);
  if (!Number.isSafeInteger(writers) || writers < 0 || writers > MAX_WRITERS) {
    throw new UsageError(
      `--writers must be a whole number from 0 (skip the many-writer phase) to ${MAX_WRITERS}; got '${rawWriters}'`,
    );
  }
  const backend = normalizeBackend(values.backend ?? DEFAULT_BACKEND);
  if (values.keys) {
    if (values.layers) {
      throw new UsageError('--keys and --layers are separate modes; give one of them');
    }
    if (backend !== DEFAULT_BACKEND) {
      throw new UsageError(
        `--keys measures the key providers on in-memory storage; it does not take --backend ${values.backend}`,
      );
    }
    const ignored = (['items', 'writers'] as const).filter((name) => values[name] !== undefined);
    if (ignored.length > 0) {
      throw new UsageError(
        `--keys runs a fixed workload (1,000 sessions x 20 items); drop ${ignored.map((name) => `--${name}`).join(' and ')}`,
      );
    }
  }
  if (values.audit) {
    const others = (['items', 'writers', 'backend'] as const).filter(
      (name) => values[name] !== undefined,
    );
    if (values.keys || values.layers || others.length > 0) {
      throw new UsageError('--audit runs a fixed workload on SQLite; it combines with --json only');
    }
  }
  if (values.jobs) {
    const others = (['items', 'writers', 'backend'] as const).filter(
      (name) => values[name] !== undefined,
    );
    if (values.keys || values.layers || values.audit || others.length > 0) {
      throw new UsageError(
        '--jobs runs a fixed workload on SQLite and Postgres; it combines with --json only',
      );
    }
  }
  if (values.rotation) {
    const others = (['items', 'writers', 'backend'] as const).filter(
      (name) => values[name] !== undefined,
    );
    if (values.keys || values.layers || values.audit || values.jobs || others.length > 0) {
      throw new UsageError(
        '--rotation runs a fixed workload on SQLite and Postgres; it combines with --json only',
      );
    }
  }
  if (values.layers && values.json) {
    throw new UsageError('--layers prints a table; it does not combine with --json');
  }
  if (values.layers && backend !== 'sqlite') {
    throw new UsageError(
      `--layers breaks down the embedded SQLite store only (its timings call better-sqlite3 directly); drop --backend ${values.backend} or use --backend sqlite`,
    );
  }
  return {
    json: values.json,
    items,
    backend,
    writers,
    layers: values.layers,
    keys: values.keys,
    audit: values.audit,
    jobs: values.jobs,
    rotation: values.rotation,
  };
}
