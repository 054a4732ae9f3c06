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
    ['null', null],
    ['a string', 'row'],
    ['a number', 7],
    ['sequence number 0', row({ seq: 0 })],
    ['a negative sequence number', row({ seq: -1 })],
    ['a text sequence number', row({ seq: '1' })],
    ['a fractional sequence number', row({ seq: 1.5 })],
    ['a sequence number of 2^53', row({ seq: 2 ** 53 })],
    ['a text expiry', row({ expiresAt: '5' })],
    ['an expiry of 2^53', row({ expiresAt: 2 ** 53 })],
    ['a missing creation time', row({ createdAt: undefined })],
    ['a text creation time', row({ createdAt: '1' })],
    ['a numeric data key id', row({ dekId: 5 })],
    ['an empty data key id', row({ dekId: '' })],
    ['a text ciphertext', row({ ciphertext: 'c' })],
    ['a Uint8Array ciphertext', row({ ciphertext: new Uint8Array(1) })],
  ])('refuses %s as IntegrityError', (_what, value) => {
    expect(() => checkStoredItem(ref, value)).toThrow(IntegrityError);
  });
});

describe('checkStoredItems', () => {
  it('passes rows in range and order, up to the limit', () => {
    const rows = [row({ seq: 3 }), row({ seq: 4 })];
    expect(checkStoredItems(ref, rows, { limit: 2, afterSeq: 2, throughSeq: 4 })).toBe(rows);
    expect(checkStoredItems(ref, [row({ seq: 2 ** 40 })], { limit: 1 })).toHaveLength(1);
  });

  it.each([
    ['no list', undefined, { limit: 5 }],
    ['an object for a list', { 0: row() }, { limit: 5 }],
    ['more rows than the limit', [row({ seq: 1 }), row({ seq: 2 })], { limit: 1 }],
    ['a repeated sequence number', [row({ seq: 1 }), row({ seq: 1 })], { limit: 5 }],
    ['descending sequence numbers', [row({ seq: 2 }), row({ seq: 1 })], { limit: 5 }],
    ['a row at afterSeq', [row({ seq: 5 })], { limit: 5, afterSeq: 5 }],
    ['a row below afterSeq', [row({ seq: 3 })], { limit: 5, afterSeq: 5 }],
    ['a row above throughSeq', [row({ seq: 6 })], { limit: 5, throughSeq: 5 }],
    ['a damaged row', [row({ seq: 'x' })], { limit: 5 }],
  ])('refuses %s as IntegrityError', (_what, rows, bounds) => {
    expect(() => checkStoredItems(ref, rows, bounds)).toThrow(IntegrityError);
  });
});

describe('checkOperationRecord', () => {
  it('passes a well-formed record, and nothing found, through unchanged', () => {
    const found = record();
    expect(checkOperationRecord(ref, found as never)).toBe(found);
    expect(checkOperationRecord(ref, undefined)).toBeUndefined();
  });

  it.each([
    ['null', null],
    ['a string', 'op'],
    ['a numeric operation id', record({ operationId: 5 })],
    ['a numeric data key id', record({ dekId: 5 })],
    ['an empty data key id', record({ dekId: '' })],
    ['a text digest', record({ digest: 'abc' })],
    ['a text creation time', record({ createdAt: '1' })],
    ['a creation time of 2^53', record({ createdAt: 2 ** 53 })],
  ])('refuses %s as IntegrityError', (_what, value) => {
    expect(() => checkOperationRecord(ref, value as never)).toThrow(IntegrityError);
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
