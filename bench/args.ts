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
}

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
 * @throws UsageError for unknown options, a bad item or writer count, an unknown backend, or
 *   `--layers` with a backend other than sqlite.
 */
export function parseBenchArgs(argv: readonly string[]): BenchArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        json: { type: 'boolean', default: false },
        items: { type: 'string', default: '20000' },
        backend: { type: 'string', default: 'sqlite' },
        writers: { type: 'string', default: String(DEFAULT_WRITERS) },
        layers: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${USAGE}`);
  }
  if (values.help) return 'help';
  const items = Number(values.items);
  if (!Number.isSafeInteger(items) || items < MIN_ITEMS) {
    throw new UsageError(`--items must be a whole number >= ${MIN_ITEMS}; got '${values.items}'`);
  }
  const writers = Number(values.writers);
  if (!Number.isSafeInteger(writers) || writers < 0 || writers > MAX_WRITERS) {
    throw new UsageError(
      `--writers must be a whole number from 0 (skip the many-writer phase) to ${MAX_WRITERS}; got '${values.writers}'`,
    );
  }
  const backend = normalizeBackend(values.backend);
  if (values.layers && values.json) {
    throw new UsageError('--layers prints a table; it does not combine with --json');
  }
  if (values.layers && backend !== 'sqlite') {
    throw new UsageError(
      `--layers breaks down the embedded SQLite store only (its timings call better-sqlite3 directly); drop --backend ${values.backend} or use --backend sqlite`,
    );
  }
  return { json: values.json, items, backend, writers, layers: values.layers };
}
