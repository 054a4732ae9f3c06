import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AgentInputItem, SessionHistoryTransactionArgs } from '@openai/agents-core';
import {
  decodeItemPayload,
  deriveSubkey,
  encodeItemPayload,
  readItemArray,
  readPlainObject,
} from '../crypto/index.js';
import { InvalidArgumentError } from '../errors/index.js';
import { DEFAULT_MAX_ITEM_BYTES } from './session-defaults.js';

/** A validated history transaction with its items encoded once. */
export type HistoryTransactionSnapshot =
  | { type: 'append_items'; items: Buffer[] }
  | { type: 'replace_suffix'; expectedSuffix: Buffer[]; replacement: Buffer[] };

/** Longest operation id the operations table stores. */
export const MAX_OPERATION_ID_LENGTH = 191;

function hasExactKeys(fields: Map<string, unknown>, keys: string[]): boolean {
  return fields.size === keys.length && keys.every((key) => fields.has(key));
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** `5.2 MiB (5452595 bytes)`: readable, and exact where rounding would hide the difference. */
export function describeByteSize(bytes: number): string {
  const unit =
    bytes >= MiB ? ([MiB, 'MiB'] as const) : bytes >= KiB ? ([KiB, 'KiB'] as const) : undefined;
  if (unit === undefined) return `${bytes} bytes`;
  const rounded = `${Number((bytes / unit[0]).toFixed(1))} ${unit[1]}`;
  return bytes % unit[0] === 0 ? rounded : `${rounded} (${bytes} bytes)`;
}

/**
 * Checks and encodes the items a caller hands to `addItems` or a history transaction: the
 * array itself must be plain and dense, each item must come back exactly as given (see
 * `encodeItemPayload`) and encode to at most `maxItemBytes`. Nothing is written before this
 * returns, so a refused item leaves the session and its operation ids untouched.
 *
 * @param what how messages name the array, e.g. `addItems` or `History transaction field 'items'`.
 * @param objectsOnly refuse items that are not objects (history transactions compare objects).
 */
export function encodeSessionItems(
  value: unknown,
  what: string,
  maxItemBytes: number = DEFAULT_MAX_ITEM_BYTES,
  objectsOnly = false,
): Buffer[] {
  const items = readItemArray(value, what);
  return items.map((item, index) => {
    const label = `${what} item ${index}`;
    if (objectsOnly && (item === null || typeof item !== 'object' || Array.isArray(item))) {
      throw new InvalidArgumentError(`${label} is not an item object`);
    }
    const payload = encodeItemPayload(item, label);
    if (payload.length > maxItemBytes) {
      throw new InvalidArgumentError(
        `${label} is ${describeByteSize(payload.length)} encoded; the limit is ${describeByteSize(maxItemBytes)} (maxItemBytes). Nothing was stored: split the content over several items, or raise the module option maxItemBytes within what the storage backend accepts.`,
      );
    }
    return payload;
  });
}

/**
 * Validates `applyHistoryTransaction` arguments the way agents-core's MemorySession does, before
 * anything changes: non-empty operation id, a known transaction type with exactly its fields,
 * items that can be stored exactly and compared. The arguments are read once; the transaction
 * is read without running any getter or proxy trap, and a throwing getter on the arguments is
 * reported without its text.
 */
export function snapshotHistoryTransaction(
  args: SessionHistoryTransactionArgs,
  maxItemBytes: number = DEFAULT_MAX_ITEM_BYTES,
): {
  operationId: string;
  transaction: HistoryTransactionSnapshot;
} {
  if (!args || typeof args !== 'object') {
    throw new InvalidArgumentError('applyHistoryTransaction needs { operationId, transaction }');
  }
  let operationId: unknown;
  let transaction: unknown;
  try {
    operationId = Reflect.get(args, 'operationId');
    transaction = Reflect.get(args, 'transaction');
  } catch {
    // The caller's error may quote content: it is not repeated.
    throw new InvalidArgumentError(
      'Reading applyHistoryTransaction arguments threw; pass a plain { operationId, transaction } object',
    );
  }
  if (typeof operationId !== 'string' || operationId.trim() === '') {
    throw new InvalidArgumentError('History transaction operationId must be a non-empty string');
  }
  if (operationId.length > MAX_OPERATION_ID_LENGTH || !operationId.isWellFormed()) {
    throw new InvalidArgumentError(
      `History transaction operationId must be well-formed text of at most ${MAX_OPERATION_ID_LENGTH} characters`,
    );
  }
  if (!transaction || typeof transaction !== 'object') {
    throw new InvalidArgumentError('History transaction must be an object');
  }
  const fields = readPlainObject(transaction, 'History transaction');
  const field = (name: string) =>
    encodeSessionItems(fields.get(name), `History transaction field '${name}'`, maxItemBytes, true);
  const type = fields.get('type');
  if (type === 'append_items') {
    if (!hasExactKeys(fields, ['type', 'items'])) {
      throw new InvalidArgumentError(
        "An 'append_items' transaction has exactly the fields type and items",
      );
    }
    return { operationId, transaction: { type: 'append_items', items: field('items') } };
  }
  if (type === 'replace_suffix') {
    if (!hasExactKeys(fields, ['type', 'expectedSuffix', 'replacement'])) {
      throw new InvalidArgumentError(
        "A 'replace_suffix' transaction has exactly the fields type, expectedSuffix and replacement",
      );
    }
    return {
      operationId,
      transaction: {
        type: 'replace_suffix',
        expectedSuffix: field('expectedSuffix'),
        replacement: field('replacement'),
      },
    };
  }
  throw new InvalidArgumentError(
    "Unsupported history transaction type; use 'append_items' or 'replace_suffix'",
  );
}

/**
 * JSON with object keys sorted at every level, so two items that are structurally equal (the
 * agents-core comparison: key order ignored, arrays ordered, bytes by value) encode alike.
 * Bytes are written as `{"$u8":...}`, so a plain object of that shape (or `$obj`) is wrapped
 * in `{"$obj":...}`, as the payload codec does: bytes and look-alike data never compare equal.
 * `-0` stays apart from `0`, as the codec keeps it.
 */
export function canonicalItemJson(value: unknown): string {
  if (value instanceof Uint8Array)
    return `{"$u8":${JSON.stringify(Buffer.from(value).toString('base64'))}}`;
  if (Array.isArray(value)) return `[${value.map(canonicalItemJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort();
    const json = `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalItemJson(record[key])}`).join(',')}}`;
    return keys.length === 1 && (keys[0] === '$u8' || keys[0] === '$obj')
      ? `{"$obj":${json}}`
      : json;
  }
  if (Object.is(value, -0)) return '-0';
  return JSON.stringify(value);
}

/** Canonical form of an encoded item, for structural comparison. */
export function canonicalPayload(payload: Uint8Array): string {
  return canonicalItemJson(decodeItemPayload(payload));
}

/**
 * Keyed digest of a transaction, stored with its operation id. Keyed by a subkey of the
 * session's data key, so the database holds nothing that confirms guessed content.
 */
export function digestHistoryTransaction(
  dataKey: Buffer,
  transaction: HistoryTransactionSnapshot,
): Buffer {
  const canonical =
    transaction.type === 'append_items'
      ? ['append_items', transaction.items.map(canonicalPayload)]
      : [
          'replace_suffix',
          transaction.expectedSuffix.map(canonicalPayload),
          transaction.replacement.map(canonicalPayload),
        ];
  return createHmac('sha256', deriveSubkey(dataKey, 'history-operation-digest'))
    .update(JSON.stringify(canonical))
    .digest();
}

/** Constant-time comparison of two digests. */
export function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The decoded items of a snapshot, in the shape the agents SDK gave them. */
export function decodeItems(payloads: readonly Buffer[]): AgentInputItem[] {
  return payloads.map((payload) => decodeItemPayload(payload) as AgentInputItem);
}
