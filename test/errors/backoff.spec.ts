import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  delayBeforeDeadline,
  type BackoffPolicy,
  type DeadlinePolicy,
} from '../../src/errors/backoff.js';

// The module's retry policies in one place (issue 9, point 7): backoff for calls, shared by the
// key ring's provider calls and the Redis conflict retry; a deadline schedule for the Vault
// token's background renewal and login.

const policy: BackoffPolicy = { firstDelayMs: 50, growth: 2, maxAttempts: 4 };
const highest = () => 0.999_999;

describe('backoffDelay', () => {
  it('grows the bound of each wait exponentially from the first', () => {
    expect(
      [1, 2, 3].map((attempt) => Math.round(backoffDelay(policy, attempt, 0, highest)!)),
    ).toEqual([50, 100, 200]);
  });

  it('draws each wait uniformly below its bound (full jitter)', () => {
    expect(backoffDelay(policy, 2, 0, () => 0.25)).toBe(25);
    expect(backoffDelay(policy, 2, 0, () => 0)).toBe(0);
  });

  it('stops once the attempts are used up', () => {
    expect(backoffDelay(policy, 4, 0, highest)).toBeUndefined();
  });

  it('caps the bound at maxDelayMs', () => {
    expect(Math.round(backoffDelay({ ...policy, maxDelayMs: 70 }, 3, 0, highest)!)).toBe(70);
  });

  it('stops when the wait would take the call past its budget', () => {
    const budgeted = { ...policy, budgetMs: 1000 };
    expect(backoffDelay(budgeted, 1, 960, highest)).toBeUndefined();
    expect(backoffDelay(budgeted, 1, 940, highest)).toBeGreaterThan(49);
  });
});

describe('delayBeforeDeadline', () => {
  const renewal: DeadlinePolicy = { shareOfTimeLeft: 1 / 3, minDelayMs: 1000, maxDelayMs: 30_000 };

  it('waits a share of the time left to the deadline', () => {
    expect(delayBeforeDeadline(renewal, 15_000, 0)).toBe(5000);
  });

  it('waits at least minDelayMs, also at or past the deadline', () => {
    expect(delayBeforeDeadline(renewal, 1500, 0)).toBe(1000);
    expect(delayBeforeDeadline(renewal, 0, 10_000)).toBe(1000);
  });

  it('waits at most maxDelayMs, and that long without a deadline', () => {
    expect(delayBeforeDeadline(renewal, 3_600_000, 0)).toBe(30_000);
    expect(delayBeforeDeadline(renewal, undefined)).toBe(30_000);
  });
});
