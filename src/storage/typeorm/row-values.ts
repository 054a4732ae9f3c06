import { isUtf8 } from 'node:buffer';
import { IntegrityError } from '../../errors/index.js';
import type { DataKeyState } from '../storage.records.js';
import type { Row } from './pool-reader.js';

/**
 * Typed reads of the values in a stored row. A value of the wrong type (SQLite stores any type
 * in any column; a bigint beyond 2^53) is damage or tampering: an {@link IntegrityError} that
 * names the row's session and the column, never the value (it may be anything).
 */
export class RowValues {
  /** @param describe names the row for a message, e.g. "session 'chat' of tenant 'acme'". */
  constructor(
    private readonly row: Row,
    private readonly describe: () => string,
  ) {}

  /** A whole number in min..2^53-1: a JS number (SQLite, int columns) or digits (bigint). */
  integer(column: string, min = 0): number {
    const value = this.row[column];
    if (typeof value === 'number') {
      if (Number.isSafeInteger(value) && value >= min) return value;
    } else if (typeof value === 'string' && DIGITS.test(value)) {
      const parsed = Number(value);
      if (Number.isSafeInteger(parsed) && parsed >= min) return parsed;
    }
    throw this.damaged(column, `a whole number from ${min} to 2^53-1`);
  }

  nullableInteger(column: string): number | null {
    return this.row[column] === null ? null : this.integer(column);
  }

  /** Text: a string, or UTF-8 bytes from MySQL's VARBINARY id columns. */
  text(column: string): string {
    const value = this.row[column];
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value) && isUtf8(value)) return value.toString('utf8');
    throw this.damaged(column, 'text');
  }

  nullableText(column: string): string | null {
    return this.row[column] === null ? null : this.text(column);
  }

  /** Bytes as the driver returns a binary column. */
  bytes(column: string): Buffer {
    const value = this.row[column];
    if (Buffer.isBuffer(value)) return value;
    throw this.damaged(column, 'binary data');
  }

  /** Bytes selected as hex text (SQLite `hex(column)`), or as the driver returns a binary column. */
  hexOrBytes(column: string): Buffer {
    const value = this.row[column];
    // hex() always gives hex digits, so a type check is all it needs.
    if (typeof value === 'string') return Buffer.from(value, 'hex');
    return this.bytes(column);
  }

  /** Bytes selected as base64 text (Postgres `encode(column, 'base64')`). */
  base64Bytes(column: string): Buffer {
    const value = this.row[column];
    // The column is bytea, so encode() always gives base64; a type check is all it needs.
    if (typeof value === 'string') return Buffer.from(value, 'base64');
    throw this.damaged(column, 'binary data');
  }

  /** A boolean column: true/false (Postgres) or 0/1 (SQLite, MySQL). */
  boolean(column: string): boolean {
    const value = this.row[column];
    if (value === true || value === 1 || value === '1') return true;
    if (value === false || value === 0 || value === '0') return false;
    throw this.damaged(column, 'a boolean');
  }

  dataKeyState(column: string): DataKeyState {
    const value = this.row[column];
    if (value === 'active' || value === 'retiring' || value === 'destroyed') return value;
    throw this.damaged(column, "one of 'active', 'retiring', 'destroyed'");
  }

  /** Text that is one of `allowed`. */
  oneOf<T extends string>(column: string, allowed: readonly T[]): T {
    const value = this.row[column];
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) {
      return value as T;
    }
    throw this.damaged(column, `one of ${allowed.map((text) => `'${text}'`).join(', ')}`);
  }

  private damaged(column: string, expected: string): IntegrityError {
    return new IntegrityError(
      `The stored '${column}' of ${this.describe()} is not ${expected}: the row was damaged or edited outside the module. Restore it from a backup; nothing was changed or deleted`,
    );
  }
}

const DIGITS = /^\d{1,16}$/;
