import cliProgress from 'cli-progress';

/** The counts a progress line shows. */
export interface ProgressCounts {
  /** Work found so far: the bar's total, which grows as pages arrive. */
  readonly found: number;
  /** Work handled so far: the bar's value. */
  readonly done: number;
  /** Named counts shown after the bar, e.g. `{ purged: 3 }`. */
  readonly details: Readonly<Record<string, number>>;
}

/** A progress line on a terminal, or nothing. Drawn from its creation until {@link stop}. */
export interface Progress {
  update(counts: ProgressCounts): void;
  /** Clears the line; the caller prints its summary after it. Idempotent. */
  stop(): void;
}

const NO_PROGRESS: Progress = { update() {}, stop() {} };

/**
 * A progress bar for `label` on `terminal` when it is a TTY; nothing otherwise (piped output,
 * `--json`, a host that gave no terminal), so no escape code reaches a file or a script.
 *
 * The total is not known up front (a scan finds work page by page): the bar shows handled of
 * found so far, and no percentage or ETA, which a growing total would make lie.
 */
export function progressOn(
  terminal: (NodeJS.WritableStream & { readonly isTTY?: boolean }) | undefined,
  label: string,
  detailNames: readonly string[],
): Progress {
  if (!terminal?.isTTY) return NO_PROGRESS;
  const details = detailNames.map((name) => `${name} {${name}}`).join(' | ');
  const bar = new cliProgress.SingleBar({
    stream: terminal,
    format: `${label} [{bar}] {value}/{total} | ${details} | {duration_formatted}`,
    barCompleteChar: '#',
    barIncompleteChar: '.',
    barsize: 24,
    // The line goes once the work ends; the command's summary replaces it.
    clearOnComplete: true,
    // Left visible: an interrupted run must not leave the operator's cursor hidden.
    hideCursor: false,
    // 0 of 0 is an empty bar, not a full one.
    emptyOnZero: true,
  });
  // Drawn from the start, 0 of 0, so a slow first page shows the run is alive.
  bar.start(0, 0, Object.fromEntries(detailNames.map((name) => [name, 0])));
  let active = true;
  return {
    update({ found, done, details: counts }) {
      if (!active) return;
      bar.setTotal(found);
      bar.update(done, counts);
    },
    stop() {
      if (!active) return;
      active = false;
      bar.stop();
    },
  };
}
