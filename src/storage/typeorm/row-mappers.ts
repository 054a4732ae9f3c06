import type {
  AuditChainHeadRecord,
  DataKeyRecord,
  ErasureLedgerRecord,
  ExpiredItemRecord,
  HistoryOperationRecord,
  JobLease,
  LegalHoldRecord,
  SessionRecord,
  SessionRef,
  StoredAuditRecord,
  StoredChainLink,
  StoredCheckpoint,
  StoredItem,
} from '../storage.records.js';
import type { Row } from './pool-reader.js';
import { RowValues } from './row-values.js';

/*
 * Rows of the session tables as the storage ports' records. Every value is read through
 * RowValues, so a damaged or edited row is an IntegrityError naming the row, never a wrong record.
 */

/** Names a session in an error message. */
export const sessionLabel = (ref: SessionRef) => () =>
  `session '${ref.sessionId}' of tenant '${ref.tenantId}'`;

/** A row's id column as text for a message, as far as it is readable. */
const labelText = (value: unknown) =>
  typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : '?';

/** Names a row's session by its id columns, as far as those are readable. */
const rowSessionLabel = (row: Row): string =>
  `session '${labelText(row.session_id)}' of tenant '${labelText(row.tenant_id)}'`;

/** Names a data key row by its id and session, as far as those columns are readable. */
export function dataKeyLabel(row: Row): string {
  return `data key '${labelText(row.dek_id)}' of ${rowSessionLabel(row)}`;
}

/** Maps a row of the sessions table read for `ref`. */
export function toSessionRecord(row: Row, ref: SessionRef): SessionRecord {
  return sessionRecord(new RowValues(row, sessionLabel(ref)));
}

/** Maps a row of the sessions table found by a cross-session lookup (named by its own ids). */
export function toListedSessionRecord(row: Row): SessionRecord {
  return sessionRecord(new RowValues(row, () => rowSessionLabel(row)));
}

function sessionRecord(values: RowValues): SessionRecord {
  return {
    tenantId: values.text('tenant_id'),
    sessionId: values.text('session_id'),
    subjectId: values.nullableText('subject_id'),
    createdAt: values.integer('created_at'),
    lastActivityAt: values.integer('last_activity_at'),
    nextSeq: values.integer('next_seq'),
    itemTtlSeconds: values.nullableInteger('item_ttl_seconds'),
    legalHold: values.boolean('legal_hold'),
  };
}

/** Maps item rows; `base64` when the ciphertext was selected through Postgres' encode(). */
export function toStoredItems(rows: Row[], ref: SessionRef, base64: boolean): StoredItem[] {
  const label = sessionLabel(ref);
  return rows.map((row) => storedItem(new RowValues(row, () => `an item of ${label()}`), base64));
}

/** The item columns of a row, checked as every item read checks them. */
function storedItem(values: RowValues, base64: boolean): StoredItem {
  return {
    seq: values.integer('seq', 1),
    dekId: values.text('dek_id'),
    expiresAt: values.nullableInteger('expires_at'),
    createdAt: values.integer('created_at'),
    ciphertext: base64 ? values.base64Bytes('ciphertext') : values.bytes('ciphertext'),
  };
}

/** Maps a row of the retention scan: an item with its tenant and session. */
export function toExpiredItemRecord(row: Row, base64: boolean): ExpiredItemRecord {
  const values = new RowValues(row, () => `an expired item of ${rowSessionLabel(row)}`);
  return {
    tenantId: values.text('tenant_id'),
    sessionId: values.text('session_id'),
    item: storedItem(values, base64),
  };
}

/** Maps a row of the data keys table; `label` names it in an error message. */
export function toDataKeyRecord(row: Row, label: () => string): DataKeyRecord {
  const values = new RowValues(row, label);
  return {
    dekId: values.text('dek_id'),
    tenantId: values.text('tenant_id'),
    sessionId: values.text('session_id'),
    subjectId: values.nullableText('subject_id'),
    generation: values.integer('generation'),
    firstSeq: values.integer('first_seq'),
    kekId: values.text('kek_id'),
    wrappedKey: values.bytes('wrapped_key'),
    state: values.dataKeyState('state'),
    createdAt: values.integer('created_at'),
    destroyedAt: values.nullableInteger('destroyed_at'),
  };
}

/** Maps a row of the history operations table. */
export function toOperationRecord(row: Row, ref: SessionRef): HistoryOperationRecord {
  const values = new RowValues(row, () => `a history operation of ${sessionLabel(ref)()}`);
  return {
    operationId: values.text('operation_id'),
    dekId: values.text('dek_id'),
    digest: values.bytes('digest'),
    createdAt: values.integer('created_at'),
  };
}

/** Maps a row of the audit records table. */
export function toAuditRecord(row: Row, chainId: string): StoredAuditRecord {
  const values = new RowValues(row, () => `an audit record of chain '${chainId}'`);
  return {
    chainId: values.text('chain_id'),
    seq: values.integer('seq', 1),
    tenantId: values.text('tenant_id'),
    sessionId: values.nullableText('session_id'),
    eventId: values.text('event_id'),
    time: values.integer('event_time'),
    action: values.text('action'),
    outcome: values.text('outcome'),
    actorId: values.text('actor_id'),
    subjectRef: values.nullableText('subject_ref'),
    macKeyId: values.text('mac_key_id'),
    prevMac: values.bytes('prev_mac'),
    mac: values.bytes('mac'),
    body: values.text('body'),
  };
}

/** Maps a row of `readAuditChainLinks`: what a verifier reads of a record. */
export function toChainLink(row: Row, chainId: string): StoredChainLink {
  const values = new RowValues(row, () => `an audit record of chain '${chainId}'`);
  return {
    seq: values.integer('seq', 1),
    macKeyId: values.text('mac_key_id'),
    prevMac: values.hexOrBytes('prev_mac'),
    mac: values.hexOrBytes('mac'),
    body: values.text('body'),
  };
}

/** Maps a row of the audit heads table; undefined for a chain with no record yet (seq 0). */
export function toAuditHead(row: Row): AuditChainHeadRecord | undefined {
  const values = new RowValues(row, () => `the head of an audit chain`);
  const seq = values.integer('seq');
  if (seq === 0) return undefined;
  return {
    chainId: values.text('chain_id'),
    tenantId: values.text('tenant_id'),
    seq,
    mac: values.bytes('mac'),
    time: values.integer('last_time'),
  };
}

/** Maps a row of the checkpoints table. */
export function toStoredCheckpoint(row: Row, tenantId: string): StoredCheckpoint {
  const values = new RowValues(row, () => `a checkpoint of tenant '${tenantId}'`);
  return {
    tenantId: values.text('tenant_id'),
    seq: values.integer('seq', 1),
    checkpointId: values.text('checkpoint_id'),
    time: values.integer('checkpoint_time'),
    checkpoint: values.text('checkpoint'),
    heads: values.text('heads'),
  };
}

/**
 * Maps a row of the job leases table; undefined for a job whose lease was never taken (the row
 * acquire inserts first, token 0).
 */
export function toJobLease(row: Row, job: string): JobLease | undefined {
  const values = new RowValues(row, () => `the lease of job '${job}'`);
  const token = values.integer('token');
  if (token === 0) return undefined;
  return {
    job: values.text('job'),
    owner: values.text('owner'),
    token,
    expiresAt: values.integer('expires_at'),
  };
}

/** Maps a row of the legal holds table. */
export function toLegalHoldRecord(row: Row): LegalHoldRecord {
  const values = new RowValues(row, () => `legal hold '${labelText(row.hold_id)}'`);
  return {
    holdId: values.text('hold_id'),
    tenantId: values.text('tenant_id'),
    sessionId: values.nullableText('session_id'),
    subjectId: values.nullableText('subject_id'),
    matterRef: values.text('matter_ref'),
    placedAt: values.integer('placed_at'),
    placedBy: values.text('placed_by'),
    releasedAt: values.nullableInteger('released_at'),
    releasedBy: values.nullableText('released_by'),
  };
}

/** Maps a row of the erasure ledger. */
export function toErasureLedgerRecord(row: Row): ErasureLedgerRecord {
  const values = new RowValues(row, () => `erasure ledger entry '${labelText(row.erasure_id)}'`);
  return {
    erasureId: values.text('erasure_id'),
    tenantId: values.text('tenant_id'),
    scope: values.oneOf('scope', ['subject', 'session'] as const),
    subjectRef: values.nullableText('subject_ref'),
    sessionIds: values.text('session_ids'),
    createdAt: values.integer('created_at'),
    completedAt: values.nullableInteger('completed_at'),
    receipt: values.nullableText('receipt'),
  };
}
