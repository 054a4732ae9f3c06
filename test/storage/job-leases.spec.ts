import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/index.js';
import {
  acquiredLease,
  checkJobLease,
  checkLeaseName,
  checkLeaseTtl,
  holdsLease,
} from '../../src/storage/job-leases.js';

// The lease math the in-memory adapter runs, and the argument checks every adapter shares.

const NOW = 1_767_000_000_000;
const held = { job: 'purge', owner: 'a', token: 4, expiresAt: NOW + 1 };

describe('acquiredLease', () => {
  it('takes a never-taken lease with token 1', () => {
    expect(acquiredLease(undefined, 'purge', 'a', 500, NOW)).toEqual({
      job: 'purge',
      owner: 'a',
      token: 1,
      expiresAt: NOW + 500,
    });
  });

  it('extends the holder, same token, and refuses anyone else while unexpired', () => {
    expect(acquiredLease(held, 'purge', 'a', 500, NOW)).toEqual({ ...held, expiresAt: NOW + 500 });
    expect(acquiredLease(held, 'purge', 'b', 500, NOW)).toBeUndefined();
  });

  it('takes a lease that lapsed at now afresh, for anyone, with the next token', () => {
    const lapsed = { ...held, expiresAt: NOW };
    expect(acquiredLease(lapsed, 'purge', 'b', 500, NOW)).toMatchObject({ owner: 'b', token: 5 });
    expect(acquiredLease(lapsed, 'purge', 'a', 500, NOW)).toMatchObject({ owner: 'a', token: 5 });
  });
});

describe('holdsLease', () => {
  it('holds only with the stored token and owner, before the expiry', () => {
    expect(holdsLease(held, held, NOW)).toBe(true);
    expect(holdsLease(held, { ...held, token: 3 }, NOW)).toBe(false);
    expect(holdsLease(held, { ...held, owner: 'b' }, NOW)).toBe(false);
    expect(holdsLease(held, held, NOW + 1)).toBe(false);
    expect(holdsLease(undefined, held, NOW)).toBe(false);
  });
});

describe('lease argument checks', () => {
  it('takes names of 1-191 UTF-8 bytes without control characters', () => {
    expect(checkLeaseName('x', 'job')).toBe('x');
    expect(checkLeaseName('\u00e9'.repeat(95) + 'x', 'owner')).toHaveLength(96);
    for (const bad of ['', '\u00e9'.repeat(96), 'a\u0000', 'a\u007f', '\ud800', 7, null]) {
      expect(() => checkLeaseName(bad, 'job')).toThrow(InvalidArgumentError);
    }
  });

  it('takes a ttl of 1 ms to a day', () => {
    expect(checkLeaseTtl(1)).toBe(1);
    expect(checkLeaseTtl(86_400_000)).toBe(86_400_000);
    for (const bad of [0, -1, 0.5, 86_400_001, Number.NaN, '100']) {
      expect(() => checkLeaseTtl(bad)).toThrow(/ttlMs must be a whole number/);
    }
  });

  it('takes a lease with a usable job, owner and token', () => {
    expect(checkJobLease(held)).toBe(held);
    for (const bad of [null, 'lease', { ...held, token: 0 }, { ...held, owner: '' }]) {
      expect(() => checkJobLease(bad)).toThrow(InvalidArgumentError);
    }
  });
});
