/** Encrypted and plaintext-baseline values of one measurement. */
export interface Pair {
  encrypted: number;
  plain: number;
}

/** The phases, in the order they are reported. */
export const PHASES = [
  'add',
  'addNormalSync',
  'readAll',
  'readLimit20',
  'readLimit20Expired',
] as const;

/** Name of a timed phase. */
export type PhaseName = (typeof PHASES)[number];

/** What `npm run bench -- --json` prints: exactly this shape, nothing more. */
export interface BenchResult {
  backend: 'sqlite';
  items: number;
  /** items/s for add, addNormalSync and readAll; calls/s for the readLimit phases. */
  phases: Record<PhaseName, Pair>;
  /** Database file growth per item (see `run.ts` for the method). */
  bytesPerItem: Pair;
  peakRssMb: number;
}

/** Figures only the human table shows. */
export interface BenchDetails {
  /** `SUM(LENGTH(ciphertext)) / items`: the item column alone, without row or index overhead. */
  columnBytesPerItem: Pair;
  /** Wall time of each timed phase in ms. */
  phaseMs: Record<PhaseName, Pair>;
  totalSeconds: number;
}

/** One target of the brief, judged against a result. */
export interface TargetCheck {
  readonly what: string;
  readonly target: string;
  readonly actual: string;
  readonly pass: boolean;
}

const int = (value: number) => Math.round(value).toLocaleString('en-US');
const ratio = (value: number) => `${value.toFixed(2)}x`;

/**
 * Judges the results against the targets (reported only: a miss never fails the process).
 */
export function checkTargets(result: BenchResult): TargetCheck[] {
  const { phases, bytesPerItem, peakRssMb } = result;
  const addRatio = phases.add.encrypted / phases.add.plain;
  const readRatio = phases.readAll.encrypted / phases.readAll.plain;
  const bytesRatio = bytesPerItem.encrypted / bytesPerItem.plain;
  return [
    {
      what: 'add, synchronous=FULL',
      target: 'encrypted >= 0.80x plain',
      actual: ratio(addRatio),
      pass: addRatio >= 0.8,
    },
    {
      what: 'add, synchronous=NORMAL',
      target: 'encrypted >= 20,000 items/s',
      actual: `${int(phases.addNormalSync.encrypted)} items/s`,
      pass: phases.addNormalSync.encrypted >= 20_000,
    },
    {
      what: 'full read',
      target: 'encrypted >= 70,000 items/s',
      actual: `${int(phases.readAll.encrypted)} items/s`,
      pass: phases.readAll.encrypted >= 70_000,
    },
    {
      what: 'full read',
      target: 'encrypted >= 0.45x plain',
      actual: ratio(readRatio),
      pass: readRatio >= 0.45,
    },
    {
      what: 'getItems(20)',
      target: 'encrypted >= 4,000 calls/s',
      actual: `${int(phases.readLimit20.encrypted)} calls/s`,
      pass: phases.readLimit20.encrypted >= 4_000,
    },
    {
      what: 'getItems(20), older expired',
      target: 'encrypted >= 4,000 calls/s',
      actual: `${int(phases.readLimit20Expired.encrypted)} calls/s`,
      pass: phases.readLimit20Expired.encrypted >= 4_000,
    },
    {
      what: 'bytes per item',
      target: 'encrypted <= 1.15x plain',
      actual: ratio(bytesRatio),
      pass: bytesRatio <= 1.15,
    },
    {
      what: 'peak RSS',
      target: '< 200 MB',
      actual: `${result.peakRssMb.toFixed(1)} MB`,
      pass: peakRssMb < 200,
    },
  ];
}

function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  rightFrom = 1,
): string {
  const widths = header.map((_, column) =>
    Math.max(...[header, ...rows].map((row) => row[column]!.length)),
  );
  const line = (row: readonly string[]) =>
    row
      .map((cell, column) =>
        column >= rightFrom ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!),
      )
      .join('  ')
      .trimEnd();
  return [
    line(header),
    widths.map((width) => '-'.repeat(width)).join('  '),
    ...rows.map(line),
  ].join('\n');
}

const PHASE_LABELS: Record<PhaseName, [string, string]> = {
  add: ['add (batches of 10), sync=FULL', 'items/s'],
  addNormalSync: ['add (batches of 10), sync=NORMAL', 'items/s'],
  readAll: ['getItems() full read', 'items/s'],
  readLimit20: ['getItems(20) x 1,000', 'calls/s'],
  readLimit20Expired: ['getItems(20) x 1,000, older expired', 'calls/s'],
};

/** The human-readable report: results, then targets with pass/fail. */
export function formatReport(result: BenchResult, details: BenchDetails): string {
  const results = table(
    ['phase', 'unit', 'encrypted', 'plain', 'enc/plain', 'enc ms', 'plain ms'],
    [
      ...PHASES.map((phase) => {
        const { encrypted, plain } = result.phases[phase];
        const ms = details.phaseMs[phase];
        const [label, unit] = PHASE_LABELS[phase];
        return [
          label,
          unit,
          int(encrypted),
          int(plain),
          ratio(encrypted / plain),
          int(ms.encrypted),
          int(ms.plain),
        ];
      }),
      [
        'stored bytes per item (file growth)',
        'bytes',
        result.bytesPerItem.encrypted.toFixed(1),
        result.bytesPerItem.plain.toFixed(1),
        ratio(result.bytesPerItem.encrypted / result.bytesPerItem.plain),
        '',
        '',
      ],
      [
        'ciphertext column per item',
        'bytes',
        details.columnBytesPerItem.encrypted.toFixed(1),
        details.columnBytesPerItem.plain.toFixed(1),
        ratio(details.columnBytesPerItem.encrypted / details.columnBytesPerItem.plain),
        '',
        '',
      ],
    ],
    2,
  );
  const checks = checkTargets(result);
  const targets = table(
    ['target', '', 'actual', 'result'],
    checks.map((check) => [check.what, check.target, check.actual, check.pass ? 'PASS' : 'MISS']),
    2,
  );
  const passed = checks.filter((check) => check.pass).length;
  return [
    `nest-encrypted-sessions benchmark: backend ${result.backend}, ${int(result.items)} items of ~1 KiB, one session`,
    '',
    results,
    '',
    `peak RSS ${result.peakRssMb.toFixed(1)} MB; total run time ${details.totalSeconds.toFixed(1)} s`,
    '',
    targets,
    '',
    `${passed}/${checks.length} targets met (targets are reported, not enforced).`,
    '',
  ].join('\n');
}
