/**
 * A point where a call the test holds stops: `reached` resolves once the call got there, and
 * the call goes on when the test calls `open()`. For checking what happens while work is in
 * flight (shutdown, races).
 */
export class Gate {
  /** Resolves once a call arrived at {@link pass}. */
  readonly reached: Promise<void>;
  private readonly opened: Promise<void>;
  private arrive!: () => void;
  private release!: () => void;

  constructor() {
    this.reached = new Promise<void>((resolve) => {
      this.arrive = resolve;
    });
    this.opened = new Promise<void>((resolve) => {
      this.release = resolve;
    });
  }

  /** Called by the held code: marks it arrived and waits until the test opens the gate. */
  async pass(): Promise<void> {
    this.arrive();
    await this.opened;
  }

  /** Lets every held call go on. */
  open(): void {
    this.release();
  }
}
