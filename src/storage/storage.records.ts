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
  /**
   * A host's own hold flag: while true, the purge keeps the session and erasure refuses it, as
   * under a hold of `placeHold` (which lives in {@link LegalHoldRecord}s, not here).
   */
  legalHold: boolean;
}

/**
 * An item sealed again under another data key (re-encryption): its position, the new key, and
 * the new envelope. Its expiry and creation time do not change.
 *
 * @publicApi
 */
export interface ResealedItem {
  readonly seq: number;
  readonly dekId: string;
  readonly ciphertext: Buffer;
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

/**
 * A copy of an item whose ciphertext buffer is not shared with the original. Every field is
 * written out: on Node 20 a spread followed by more properties costs about a microsecond per
 * object, and this runs per item.
 */
export const copyStoredItem = (item: StoredItem): StoredItem => ({
  seq: item.seq,
  dekId: item.dekId,
  expiresAt: item.expiresAt,
  createdAt: item.createdAt,
  ciphertext: Buffer.from(item.ciphertext),
});

/** A copy of a data key record whose wrapped key buffer is not shared with the original. */
export const copyDataKeyRecord = (key: DataKeyRecord): DataKeyRecord => ({
  ...key,
  wrappedKey: Buffer.from(key.wrappedKey),
});

/**
 * Where one audit chain stands: its last record's sequence number and MAC.
 *
 * @publicApi
 */
export interface AuditChainHeadRecord {
  chainId: string;
  tenantId: string;
  /** The last record's seq: 1 for a chain of one record. */
  seq: number;
  /** The last record's MAC (32 bytes). */
  mac: Buffer;
  /** The last record's time, epoch ms. */
  time: number;
}

/**
 * One audit record as stored. The audit layer seals it; storage keeps its bytes and indexes it
 * by the clear columns, which repeat fields of `body` (the canonical JSON the MAC covers) so an
 * access report needs no JSON parsing. Nothing here is content, key material or a raw subject id.
 *
 * @publicApi
 */
export interface StoredAuditRecord {
  chainId: string;
  seq: number;
  tenantId: string;
  /** The session of a session chain; null on a tenant's control chain. */
  sessionId: string | null;
  /** UUIDv7 of the event. */
  eventId: string;
  /** Epoch ms. */
  time: number;
  action: string;
  outcome: string;
  actorId: string;
  /** Keyed pseudonym of the subject, base64url; null when the event names none. */
  subjectRef: string | null;
  macKeyId: string;
  /** The previous record's MAC (32 zero bytes for a chain's first). */
  prevMac: Buffer;
  mac: Buffer;
  /** The event's canonical JSON without its chain fields, exactly as the MAC covers it. */
  body: string;
}

/**
 * What a verifier reads of a stored record: its place in the chain, its MACs and its body.
 *
 * @publicApi
 */
export type StoredChainLink = Pick<
  StoredAuditRecord,
  'seq' | 'macKeyId' | 'prevMac' | 'mac' | 'body'
>;

/**
 * The chain an audit unit of work appends to: a session's, or the tenant's control chain
 * (`sessionId` null). Adapters keep a session chain beside the session (Redis: in its slot).
 *
 * @publicApi
 */
export interface AuditChainRef {
  readonly chainId: string;
  readonly tenantId: string;
  readonly sessionId: string | null;
}

/** A copy of an audit record whose buffers are not shared with the original. */
export const copyAuditRecord = (record: StoredAuditRecord): StoredAuditRecord => ({
  ...record,
  prevMac: Buffer.from(record.prevMac),
  mac: Buffer.from(record.mac),
});

/**
 * Which records an access report lists: one tenant's, about one session, one subject (by its
 * reference) or one actor, with `fromTime <= time < toTime`, in (time, chain id, seq) order,
 * after `after` (the last record of the previous page).
 *
 * @publicApi
 */
export interface AuditRecordQuery {
  readonly tenantId: string;
  readonly by:
    { readonly sessionId: string } | { readonly subjectRef: string } | { readonly actorId: string };
  readonly fromTime: number;
  readonly toTime: number;
  readonly after?: { readonly time: number; readonly chainId: string; readonly seq: number };
  readonly limit: number;
}

/**
 * A signed checkpoint of one tenant's trail as stored: the checkpoint itself (canonical JSON,
 * with its Ed25519 signature) and the chain heads it covers, so a verifier can check each
 * chain against it and the heads against its signed Merkle root.
 *
 * @publicApi
 */
export interface StoredCheckpoint {
  tenantId: string;
  /** 1 for the tenant's first checkpoint, then one more for each. */
  seq: number;
  checkpointId: string;
  /** Epoch ms. */
  time: number;
  /** The signed checkpoint, as JSON. */
  checkpoint: string;
  /** JSON of `[chainId, seq, headMac base64url][]`, by chain id bytes. */
  heads: string;
}

/**
 * An item whose expiry has passed, found by a retention scan, with the session it belongs to.
 * Its expiry column decided only that it was found: the purge opens it to check the expiry
 * sealed in its envelope before it deletes anything.
 *
 * @publicApi
 */
export interface ExpiredItemRecord {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly item: StoredItem;
}

/**
 * A job's lease as stored: whoever holds the newest token may act for the job.
 *
 * @publicApi
 */
export interface JobLease {
  readonly job: string;
  readonly owner: string;
  /** Rises by one each time the lease is taken afresh (never when renewed); never reused. */
  readonly token: number;
  /** Epoch ms, by the storage's own clock, when the lease lapses unless renewed. */
  readonly expiresAt: number;
}

/**
 * A legal hold as stored: while active (`releasedAt` null) nothing of the sessions it covers
 * may be purged or erased. It covers one session (`sessionId`) or every session, present and
 * future, of one subject (`subjectId`) in its tenant: exactly one of the two is set. Released
 * holds are kept, for the record.
 *
 * @publicApi
 */
export interface LegalHoldRecord {
  /** UUIDv7. */
  readonly holdId: string;
  readonly tenantId: string;
  readonly sessionId: string | null;
  readonly subjectId: string | null;
  /** The host's reference of the matter (a case number), as given; at most 191 characters. */
  readonly matterRef: string;
  /** Epoch ms. */
  readonly placedAt: number;
  /** Id of the actor that placed it. */
  readonly placedBy: string;
  readonly releasedAt: number | null;
  readonly releasedBy: string | null;
}

/**
 * Which holds {@link LegalHoldStorage.list} returns: optionally one tenant's, optionally only
 * active ones, in hold id order (UUIDv7: placing order), after `afterHoldId`.
 *
 * @publicApi
 */
export interface LegalHoldQuery {
  readonly tenantId?: string;
  /** Only holds not released. @default false */
  readonly activeOnly?: boolean;
  /** The last hold id of the previous page; '' or absent for the first. */
  readonly afterHoldId?: string;
  readonly limit: number;
}

/**
 * One entry of the erasure ledger: what an erasure destroyed, so that a restored backup can be
 * erased again. Written as `pending` (the sessions it will erase) before any key is destroyed,
 * then completed with the signed receipt. Holds a keyed reference of the subject, never its id.
 *
 * @publicApi
 */
export interface ErasureLedgerRecord {
  /** UUIDv7; the receipt's id. */
  readonly erasureId: string;
  readonly tenantId: string;
  readonly scope: 'subject' | 'session';
  /** Keyed pseudonym of the subject (base64url); null for a session erased on its own. */
  readonly subjectRef: string | null;
  /** JSON array of the session ids the erasure covers. */
  readonly sessionIds: string;
  /** Epoch ms when it was recorded. */
  readonly createdAt: number;
  /** Epoch ms when every key was destroyed; null while pending. */
  readonly completedAt: number | null;
  /** The signed receipt, as JSON; null while pending. */
  readonly receipt: string | null;
}
