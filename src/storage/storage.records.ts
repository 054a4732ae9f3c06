/**
 * Identifies one session. Every storage call is scoped by tenant as well as session id.
 *
 * @publicApi
 */
export interface SessionRef {
  readonly tenantId: string;
  readonly sessionId: string;
}

/**
 * A session's row: ownership, activity and the sequence counter. Times are epoch ms.
 *
 * @publicApi
 */
export interface SessionRecord extends SessionRef {
  /** The person the conversation is about (for erasure and access reports); null if unknown. */
  subjectId: string | null;
  createdAt: number;
  lastActivityAt: number;
  /** The sequence number the next appended item will get; only ever grows. */
  nextSeq: number;
  /** Items appended to this session expire this many seconds after they are written. */
  itemTtlSeconds: number | null;
  /** While true, no purge or erasure path may delete anything of this session. */
  legalHold: boolean;
}

/**
 * One stored item: the envelope plus the clear columns that index it.
 *
 * @publicApi
 */
export interface StoredItem {
  seq: number;
  /** The data key that sealed it; also inside the authenticated header. */
  dekId: string;
  /** Epoch ms after which the item is invisible; bound into the envelope's AAD. */
  expiresAt: number | null;
  createdAt: number;
  ciphertext: Buffer;
}

/**
 * Lifecycle of a data key (NIST SP 800-57 states, reduced to what a data key needs):
 * `active` seals new items, `retiring` only opens old ones, `destroyed` has no key material left.
 *
 * @publicApi
 */
export type DataKeyState = 'active' | 'retiring' | 'destroyed';

/**
 * A session's data key as stored: wrapped by the root key, never in the clear.
 *
 * @publicApi
 */
export interface DataKeyRecord extends SessionRef {
  dekId: string;
  subjectId: string | null;
  /** 1 for the session's first key, then one more for each rotation. */
  generation: number;
  /** The session's next sequence number when this key was created: bounds items per key. */
  firstSeq: number;
  /** Which root key wrapped it (provider-specific id, including any version). */
  kekId: string;
  /** The wrapped key; empty once destroyed. */
  wrappedKey: Buffer;
  state: DataKeyState;
  createdAt: number;
  destroyedAt: number | null;
}

/**
 * Marks a history transaction as applied, so a retry with the same operation id is a no-op.
 *
 * @publicApi
 */
export interface HistoryOperationRecord {
  operationId: string;
  /** The data key whose derived MAC key produced `digest`. */
  dekId: string;
  /** Keyed digest of the transaction, to tell a retry from a different reuse of the id. */
  digest: Buffer;
  createdAt: number;
}

/** A copy of an item whose ciphertext buffer is not shared with the original. */
export const copyStoredItem = (item: StoredItem): StoredItem => ({
  ...item,
  ciphertext: Buffer.from(item.ciphertext),
});

/** A copy of a data key record whose wrapped key buffer is not shared with the original. */
export const copyDataKeyRecord = (key: DataKeyRecord): DataKeyRecord => ({
  ...key,
  wrappedKey: Buffer.from(key.wrappedKey),
});
