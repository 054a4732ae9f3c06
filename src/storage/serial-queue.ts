/**
 * Runs async tasks one at a time in arrival order. SQLite has one connection per process and
 * TypeORM shares one query runner for it, so two interleaved transactions would nest and a reader
 * could see another's uncommitted batch; serializing here keeps each unit of work whole.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    // The chain must not reject, or one failure would poison every later task.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
