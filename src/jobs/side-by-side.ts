// p-limit (7.x, Node 20+, ESM, one tiny dependency) caps the units in flight; what to do when one
// fails or the budget runs out is this module's own rule, below.
import pLimit from 'p-limit';
import { supportsMaintenance, type SessionStorage } from '../storage/index.js';

/** How many units of a job run side by side on `storage`: what it runs to advantage, else 1. */
export function jobConcurrencyOf(storage: SessionStorage): number {
  return (supportsMaintenance(storage) && storage.maintenance.jobConcurrency?.()) || 1;
}

/**
 * Runs `work` for each unit, at most `concurrency` at once, starting them in order. A unit whose
 * `work` returns false (the run's batch budget ran out), or throws, stops further units from
 * starting; every started unit is waited for, then the first error is thrown. With a
 * concurrency of 1 it is a plain loop.
 */
export async function runSideBySide<T>(
  units: readonly T[],
  concurrency: number,
  work: (unit: T) => Promise<boolean>,
): Promise<void> {
  const limit = pLimit(concurrency);
  let stopped = false;
  let failure: { readonly error: unknown } | undefined;
  await Promise.all(
    units.map((unit) =>
      limit(async () => {
        if (stopped) return;
        try {
          if (!(await work(unit))) stopped = true;
        } catch (error) {
          stopped = true;
          failure ??= { error };
        }
      }),
    ),
  );
  if (failure) throw failure.error;
}
