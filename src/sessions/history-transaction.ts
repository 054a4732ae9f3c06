import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AgentInputItem, SessionHistoryTransactionArgs } from '@openai/agents-core';
import { decodeItemPayload, deriveSubkey, encodeItemPayload } from '../crypto/index.js';
import { InvalidArgumentError } from '../errors/index.js';

/** A validated history transaction with its items encoded once. */
export type HistoryTransactionSnapshot =
  | { type: 'append_items'; items: Buffer[] }
  | { type: 'replace_suffix'; expectedSuffix: Buffer[]; replacement: Buffer[] };

/** Longest operation id the operations table stores. */
export const MAX_OPERATION_ID_LENGTH = 191;

function hasExactKeys(record: object, keys: string[]): boolean {
  const own = Object.keys(record);
  return own.length === keys.length && keys.every((key) => Object.hasOwn(record, key));
}

function encodeItems(value: unknown, field: string): Buffer[] {
  if (!Array.isArray(value)) {
    throw new InvalidArgumentError(
      `History transaction field '${field}' must be an array of items`,
    );
  }
  return value.map((item) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      throw new InvalidArgumentError(
        `History transaction field '${field}' holds a value that is not an item object`,
      );
    }
    return encodeItemPayload(item);
  });
}

/**
 * Validates `applyHistoryTransaction` arguments the way agents-core's MemorySession does, before
 * anything changes: non-empty operation id, a known transaction type with exactly its fields,
 * items that can be stored and compared.
 */
export function snapshotHistoryTransaction(args: SessionHistoryTransactionArgs): {
  operationId: string;
  transaction: HistoryTransactionSnapshot;
} {
  if (!args || typeof args !== 'object') {
    throw new InvalidArgumentError('applyHistoryTransaction needs { operationId, transaction }');
  }
  const { operationId, transaction } = args;
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
  if (transaction.type === 'append_items') {
    if (!hasExactKeys(transaction, ['type', 'items'])) {
      throw new InvalidArgumentError(
        "An 'append_items' transaction has exactly the fields type and items",
      );
    }
    return {
      operationId,
      transaction: { type: 'append_items', items: encodeItems(transaction.items, 'items') },
    };
  }
  if (transaction.type === 'replace_suffix') {
    if (!hasExactKeys(transaction, ['type', 'expectedSuffix', 'replacement'])) {
      throw new InvalidArgumentError(
        "A 'replace_suffix' transaction has exactly the fields type, expectedSuffix and replacement",
      );
    }
    return {
      operationId,
      transaction: {
        type: 'replace_suffix',
        expectedSuffix: encodeItems(transaction.expectedSuffix, 'expectedSuffix'),
        replacement: encodeItems(transaction.replacement, 'replacement'),
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
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalItemJson(record[key])}`).join(',')}}`;
  }
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
