import { parseArgs } from 'node:util';

/** Command-line options of `npm run bench`. */
export interface BenchArgs {
  /** Print one JSON object on stdout instead of the table. */
  readonly json: boolean;
  /** Items written per variant (default 20,000). */
  readonly items: number;
  /** Storage backend; only `sqlite` exists so far. */
  readonly backend: 'sqlite';
  /** Print the per-layer cost breakdown instead of running the benchmark. */
  readonly layers: boolean;
}

/** Smallest `--items` that leaves expired history behind the newest 20 items. */
export const MIN_ITEMS = 100;

/** A usage problem; the runner prints the message and exits with status 2. */
export class UsageError extends Error {}

export const USAGE = `Usage: npm run bench -- [--json] [--items N] [--backend sqlite] [--layers]

  --json          print exactly one JSON object on stdout (progress goes to stderr)
  --items N       items per variant (default 20000; at least ${MIN_ITEMS})
  --backend NAME  storage backend (default sqlite; the only one so far)
  --layers        instead of the benchmark, time each layer of a read and an add on its own
                  (SQLite, TypeORM, storage adapter, key ring, cipher, JSON decode)
`;

/**
 * Parses `process.argv`-style arguments.
 *
 * @throws UsageError for unknown options, a bad item count or an unsupported backend.
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
  const backend = values.backend.toLowerCase();
  if (backend !== 'sqlite') {
    const known = ['postgres', 'postgresql', 'mysql', 'mariadb', 'redis'].includes(backend);
    throw new UsageError(
      known
        ? `--backend ${values.backend} is not available yet: the postgres, mysql and redis backends arrive with the production storage work. Use --backend sqlite (the default).`
        : `Unknown --backend '${values.backend}'. Only 'sqlite' is supported now; postgres, mysql and redis arrive with the production storage work.`,
    );
  }
  if (values.layers && values.json) {
    throw new UsageError('--layers prints a table; it does not combine with --json');
  }
  return { json: values.json, items, backend: 'sqlite', layers: values.layers };
}
