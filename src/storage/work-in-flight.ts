/**
 * Counts calls in flight so that shutdown can wait for them: {@link WorkInFlight.run} refuses
 * new work once {@link WorkInFlight.close} was called, and `close` resolves when the last call
 * that was let in has settled. One instance per thing that closes (storage, sessions, jobs).
 */
export class WorkInFlight {
  private running = 0;
  private closing = false;
  private idle: (() => void) | undefined;
  private drained: Promise<void> | undefined;

  /** @param refusal builds the error a call gets once closing has begun. */
  constructor(private readonly refusal: () => Error) {}

  /** True once {@link close} was called. */
  get isClosing(): boolean {
    return this.closing;
  }

  /**
   * Runs `work`, counted until it settles.
   *
   * @throws the refusal error, without running `work`, once closing has begun.
   */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.closing) throw this.refusal();
    this.running++;
    try {
      return await work();
    } finally {
      this.running--;
      if (this.running === 0) this.idle?.();
    }
  }

  /** Refuses new work from now on and resolves once the work already let in settled. Idempotent. */
  close(): Promise<void> {
    this.closing = true;
    this.drained ??=
      this.running === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.idle = resolve;
          });
    return this.drained;
  }
}
