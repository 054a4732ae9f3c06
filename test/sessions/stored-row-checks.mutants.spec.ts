import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/index.js';
import {
  checkOperationRecord,
  checkStoredItem,
  checkStoredItems,
  counterBehindItems,
  sessionRowMissing,
} from '../../src/sessions/stored-row-checks.js';

// Tests that kill mutants StrykerJS found alive in stored-row-checks.ts (issue 8, point 14).
// The checks are exercised on every backend by test/storage/damaged-rows.spec.ts, which needs
// servers; these pin each check on its own, in process, so mutation runs see them too.

const ref = { tenantId: 't', sessionId: 's' };
const row = (overrides: Record<string, unknown> = {}) => ({
  seq: 1,
  dekId: 'k',
  expiresAt: null,
  createdAt: 1,
  ciphertext: Buffer.from('c'),
  ...overrides,
});
const record = (overrides: Record<string, unknown> = {}) => ({
  operationId: 'op',
  dekId: 'k',
  digest: Buffer.alloc(32),
  createdAt: 1,
  ...overrides,
});

describe('checkStoredItem', () => {
  it('passes a well-formed row through unchanged, with or without an expiry', () => {
    const plain = row();
    const expiring = row({ expiresAt: 2 ** 53 - 1 });
    expect(checkStoredItem(ref, plain)).toBe(plain);
    expect(checkStoredItem(ref, expiring)).toBe(expiring);
  });

  it.each([
    ['null', null, 'not a row'],
    ['a string', 'row', 'not a row'],
    ['a number', 7, 'not a row'],
    ['sequence number 0', row({ seq: 0 }), 'its sequence number'],
    ['a negative sequence number', row({ seq: -1 }), 'its sequence number'],
    ['a text sequence number', row({ seq: '1' }), 'its sequence number'],
    ['a fractional sequence number', row({ seq: 1.5 }), 'its sequence number'],
    ['a sequence number of 2^53', row({ seq: 2 ** 53 }), 'its sequence number'],
    ['a text expiry', row({ expiresAt: '5' }), 'its expiry'],
    ['an expiry of 2^53', row({ expiresAt: 2 ** 53 }), 'its expiry'],
    ['a missing creation time', row({ createdAt: undefined }), 'its creation time'],
    ['a text creation time', row({ createdAt: '1' }), 'its creation time'],
    ['a numeric data key id', row({ dekId: 5 }), 'its data key id'],
    ['an empty data key id', row({ dekId: '' }), 'its data key id'],
    ['a text ciphertext', row({ ciphertext: 'c' }), 'its ciphertext'],
    ['a Uint8Array ciphertext', row({ ciphertext: new Uint8Array(1) }), 'its ciphertext'],
  ])('refuses %s as IntegrityError naming the field', (_what, value, reason) => {
    expect(() => checkStoredItem(ref, value)).toThrow(IntegrityError);
    expect(() => checkStoredItem(ref, value)).toThrow(
      `A stored item of session 's' is damaged (${reason}`,
    );
  });
});

describe('checkStoredItems', () => {
  it('passes rows in range and order, up to the limit', () => {
    const rows = [row({ seq: 3 }), row({ seq: 4 })];
    expect(checkStoredItems(ref, rows, { limit: 2, afterSeq: 2, throughSeq: 4 })).toBe(rows);
    expect(checkStoredItems(ref, [row({ seq: 2 ** 40 })], { limit: 1 })).toHaveLength(1);
  });

  it.each([
    ['no list', undefined, { limit: 5 }, 'not a list'],
    ['an object for a list', { 0: row() }, { limit: 5 }, 'not a list'],
    [
      'more rows than the limit',
      [row({ seq: 1 }), row({ seq: 2 })],
      { limit: 1 },
      'more rows than asked for',
    ],
    [
      'a repeated sequence number',
      [row({ seq: 1 }), row({ seq: 1 })],
      { limit: 5 },
      'sequence numbers out of order or repeated',
    ],
    [
      'descending sequence numbers',
      [row({ seq: 2 }), row({ seq: 1 })],
      { limit: 5 },
      'sequence numbers out of order or repeated',
    ],
    [
      'a row at afterSeq',
      [row({ seq: 5 })],
      { limit: 5, afterSeq: 5 },
      'sequence numbers out of order or repeated',
    ],
    [
      'a row below afterSeq',
      [row({ seq: 3 })],
      { limit: 5, afterSeq: 5 },
      'sequence numbers out of order or repeated',
    ],
    [
      'a row above throughSeq',
      [row({ seq: 6 })],
      { limit: 5, throughSeq: 5 },
      'a sequence number outside the range asked for',
    ],
    ['a damaged row', [row({ seq: 'x' })], { limit: 5 }, 'its sequence number'],
  ])('refuses %s as IntegrityError naming the problem', (_what, rows, bounds, reason) => {
    // A damaged row is reported as such; a list problem, as one of the list.
    const what = reason.startsWith('its') ? 'item' : 'item list';
    expect(() => checkStoredItems(ref, rows, bounds)).toThrow(IntegrityError);
    expect(() => checkStoredItems(ref, rows, bounds)).toThrow(
      `A stored ${what} of session 's' is damaged (${reason}`,
    );
  });
});

describe('checkOperationRecord', () => {
  it('passes a well-formed record, and nothing found, through unchanged', () => {
    const found = record();
    expect(checkOperationRecord(ref, found as never)).toBe(found);
    expect(checkOperationRecord(ref, undefined)).toBeUndefined();
  });

  it.each([
    ['null', null, 'not a row'],
    ['a string', 'op', 'not a row'],
    ['a numeric operation id', record({ operationId: 5 }), 'its operation id'],
    ['a numeric data key id', record({ dekId: 5 }), 'its data key id'],
    ['an empty data key id', record({ dekId: '' }), 'its data key id'],
    ['a text digest', record({ digest: 'abc' }), 'its digest'],
    ['a text creation time', record({ createdAt: '1' }), 'its creation time'],
    ['a creation time of 2^53', record({ createdAt: 2 ** 53 }), 'its creation time'],
  ])('refuses %s as IntegrityError naming the field', (_what, value, reason) => {
    expect(() => checkOperationRecord(ref, value as never)).toThrow(IntegrityError);
    expect(() => checkOperationRecord(ref, value as never)).toThrow(
      `A stored history operation of session 's' is damaged (${reason}`,
    );
  });
});

describe('errors for a session row out of step with its items', () => {
  it.each([
    ['counterBehindItems', counterBehindItems],
    ['sessionRowMissing', sessionRowMissing],
  ])('%s is an IntegrityError naming the session', (_name, make) => {
    const error = make(ref);
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.message).toContain("'s'");
  });
});
