/**
 * The batches a job's run may still commit (`maxBatchesPerRun`), shared by the units of work
 * it runs side by side. A unit takes one before its batch and gives it back when the batch
 * committed nothing, so units running at once never commit more than the limit together.
 */
export class BatchBudget {
  private left: number;

  constructor(limit: number) {
    this.left = limit;
  }

  /** Whether every batch has been taken. */
  get exhausted(): boolean {
    return this.left <= 0;
  }

  /** Takes one batch for the unit about to run; false when none is left. */
  take(): boolean {
    if (this.left <= 0) return false;
    this.left--;
    return true;
  }

  /** Returns a batch taken for a unit that committed nothing. */
  giveBack(): void {
    this.left++;
  }
}
