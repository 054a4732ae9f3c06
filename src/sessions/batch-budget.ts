/**
 * The batches a job's run may still commit (`maxBatchesPerRun`), shared by the units of work
 * it runs side by side. A unit takes one before its batch and gives it back when the batch
 * committed nothing, so units running at once never commit more than the limit together.
 */
export class BatchBudget {
  private remaining: number;

  constructor(limit: number) {
    this.remaining = limit;
  }

  /** The batches not taken yet. */
  get left(): number {
    return this.remaining;
  }

  /** Whether every batch has been taken. */
  get exhausted(): boolean {
    return this.remaining === 0;
  }

  /** Takes one batch for the unit about to run; false when none is left. */
  take(): boolean {
    return this.takeUpTo(1) === 1;
  }

  /** Takes up to `count` batches for units about to run: how many it took. */
  takeUpTo(count: number): number {
    const taken = Math.min(count, this.left);
    this.remaining -= taken;
    return taken;
  }

  /** Returns a batch taken for a unit that committed nothing. */
  giveBack(): void {
    this.remaining++;
  }
}
