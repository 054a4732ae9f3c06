import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { subjectRef } from '../../src/audit/subject-ref.js';

describe('subjectRef', () => {
  const key = randomBytes(32);
  const subject = 'patient-canary-7f3a1c';

  it('is stable for one key, tenant and subject, and holds nothing of the id', () => {
    const ref = subjectRef(key, 't1', subject);
    expect(subjectRef(key, 't1', subject)).toBe(ref);
    expect(ref).toMatch(/^[A-Za-z0-9_-]{43}$/);
    for (const form of [
      subject,
      Buffer.from(subject).toString('base64'),
      Buffer.from(subject).toString('hex'),
    ]) {
      expect(ref).not.toContain(form);
    }
  });

  it('differs per tenant and per key, so references cannot be joined across them', () => {
    const ref = subjectRef(key, 't1', subject);
    expect(subjectRef(key, 't2', subject)).not.toBe(ref);
    expect(subjectRef(randomBytes(32), 't1', subject)).not.toBe(ref);
    expect(subjectRef(key, 't1s', 'ubject')).not.toBe(subjectRef(key, 't1', 'subject'));
  });

  it('refuses a key shorter than 32 bytes', () => {
    expect(() => subjectRef(randomBytes(16), 't1', subject)).toThrow(RangeError);
  });
});
