/** A benchmark result that is wrong (not slow): the run fails with exit status 1. */
export class VerificationError extends Error {
  override readonly name = 'VerificationError';
}

/** Throws a {@link VerificationError} with `message` unless `condition` holds. */
export function verify(condition: boolean, message: string): asserts condition {
  if (!condition) throw new VerificationError(message);
}
