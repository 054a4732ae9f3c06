import { IntegrityError } from '../../errors/index.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  DataKeyRecord,
  DataKeyState,
  HistoryOperationRecord,
  SessionRecord,
  SessionRef,
  StoredAuditRecord,
  StoredCheckpoint,
  StoredItem,
} from '../storage.records.js';

/*
 * Binary encodings of what the Redis adapter stores. Items are ZSET members, data keys and
 * history operations are hash values; all are written and read as Buffers so ciphertext and
 * wrapped keys survive byte for byte. Malformed bytes raise IntegrityError: they were not
 * written by this module, or were altered.
 */

/** Every data-key id is a UUID string: 36 ASCII bytes (`char(36)` in the SQL schema). */
export const DEK_ID_BYTES = 36;
/** seq (8) + dekId (36) + expiresAt (8) + createdAt (8), then the ciphertext. */
export const ITEM_HEADER_BYTES = 8 + DEK_ID_BYTES + 8 + 8;

const DATA_KEY_FORMAT = 1;
const OPERATION_FORMAT = 1;
const STATE_CODES: readonly DataKeyState[] = ['active', 'retiring', 'destroyed'];
const HAS_SUBJECT = 1;
const HAS_DESTROYED_AT = 2;
const TWO_TO_32 = 2 ** 32;

/**
 * How messages name the owner of a stored value: the session id (or a data key id), never a
 * stored value, which may be anything a writer put there.
 */
export function redisSessionLabel(ref: SessionRef): string {
  return `session '${ref.sessionId}'`;
}

/** Owner named when a caller (a test or benchmark tool) has no session at hand. */
const UNNAMED_OWNER = 'a session';

/** What to do about a damaged session value. */
const SESSION_REMEDY = 'Nothing was deleted; restore it from a backup or clear the session';
/** What to do about a damaged audit value: clearing a session does not reach the audit trail. */
const AUDIT_REMEDY =
  'Nothing was written; verify the audit chain and restore its keys from a backup';

/** The IntegrityError for a damaged stored value: names its owner and field, never the value. */
export function malformed(
  owner: string,
  what: string,
  reason: string,
  remedy = SESSION_REMEDY,
): IntegrityError {
  return new IntegrityError(
    `A stored ${what} of ${owner} in Redis is damaged (${reason}): it was not written by this module or was altered outside it. ${remedy}`,
  );
}

/** The IntegrityError for a damaged audit record, head or index entry. */
export function malformedAudit(owner: string, what: string, reason: string): IntegrityError {
  return malformed(owner, what, reason, AUDIT_REMEDY);
}

/** Largest value of the high 32-bit word that keeps a uint64 within Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_HIGH_WORD = Math.floor(Number.MAX_SAFE_INTEGER / TWO_TO_32);

function writeUint64(target: Buffer, offset: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${field} must be a non-negative safe integer to be stored in Redis`);
  }
  target.writeUInt32BE(Math.floor(value / TWO_TO_32), offset);
  target.writeUInt32BE(value % TWO_TO_32, offset + 4);
}

/** A stored uint64, or undefined when it is beyond 2^53 - 1 (no number holds it exactly). */
function readUint64(source: Buffer, offset: number): number | undefined {
  const high = source.readUInt32BE(offset);
  if (high > MAX_SAFE_HIGH_WORD) return undefined;
  const value = high * TWO_TO_32 + source.readUInt32BE(offset + 4);
  return Number.isSafeInteger(value) ? value : undefined;
}

const PRINTABLE_DEK_ID = /^[\x20-\x7e]{36}$/;

/** Throws unless `dekId` fits the fixed-width field of a packed item: 36 ASCII characters. */
export function assertDataKeyId(dekId: string): void {
  if (typeof dekId !== 'string' || !PRINTABLE_DEK_ID.test(dekId)) {
    throw new Error(`A data key id must be ${DEK_ID_BYTES} ASCII characters (a UUID)`);
  }
}

function dekIdBytes(dekId: string): Buffer {
  assertDataKeyId(dekId);
  return Buffer.from(dekId, 'latin1');
}

/** Packs an item as its ZSET member (the seq leads, so members of two positions never collide). */
export function packItem(item: StoredItem): Buffer {
  const member = Buffer.allocUnsafe(ITEM_HEADER_BYTES + item.ciphertext.length);
  writeUint64(member, 0, item.seq, 'seq');
  dekIdBytes(item.dekId).copy(member, 8);
  // 0 stands for "never expires": no real expiry is the epoch itself.
  writeUint64(member, 44, item.expiresAt ?? 0, 'expiresAt');
  writeUint64(member, 52, item.createdAt, 'createdAt');
  item.ciphertext.copy(member, ITEM_HEADER_BYTES);
  return member;
}

/**
 * Unpacks a ZSET member written by {@link packItem}; the ciphertext is a copy. `owner` names the
 * session in the IntegrityError raised for a damaged member.
 */
export function unpackItem(member: Buffer, owner = UNNAMED_OWNER): StoredItem {
  if (member.length < ITEM_HEADER_BYTES) throw malformed(owner, 'item', 'shorter than its header');
  const field = (offset: number, name: string): number => {
    const value = readUint64(member, offset);
    if (value === undefined) throw malformed(owner, 'item', `${name} beyond 2^53`);
    return value;
  };
  const seq = field(0, 'seq');
  if (seq < 1) throw malformed(owner, 'item', 'seq below 1');
  const dekId = member.toString('latin1', 8, 44);
  if (!PRINTABLE_DEK_ID.test(dekId)) throw malformed(owner, 'item', 'dek_id not a key id');
  const expiresAt = field(44, 'expires_at');
  return {
    seq,
    dekId,
    expiresAt: expiresAt === 0 ? null : expiresAt,
    createdAt: field(52, 'created_at'),
    ciphertext: Buffer.from(member.subarray(ITEM_HEADER_BYTES)),
  };
}

/** Appends length-prefixed (u32) UTF-8 strings and raw bytes. */
class ByteWriter {
  private readonly parts: Buffer[] = [];

  bytes(value: Buffer): this {
    this.parts.push(value);
    return this;
  }

  uint8(value: number): this {
    return this.bytes(Buffer.of(value));
  }

  uint32(value: number): this {
    const part = Buffer.allocUnsafe(4);
    part.writeUInt32BE(value);
    return this.bytes(part);
  }

  uint64(value: number, field: string): this {
    const part = Buffer.allocUnsafe(8);
    writeUint64(part, 0, value, field);
    return this.bytes(part);
  }

  text(value: string): this {
    return this.blob(Buffer.from(value, 'utf8'));
  }

  /** Length-prefixed (u32) bytes. */
  blob(value: Buffer): this {
    return this.uint32(value.length).bytes(value);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

// ignoreBOM: a leading U+FEFF is part of the id or body, not a marker to strip.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Reads what {@link ByteWriter} wrote, failing with IntegrityError past the end. */
class ByteReader {
  private offset = 0;

  constructor(
    private readonly source: Buffer,
    private readonly owner: string,
    private readonly what: string,
    private readonly raise: typeof malformed = malformed,
  ) {}

  damaged(reason: string): IntegrityError {
    return this.raise(this.owner, this.what, reason);
  }

  private take(length: number): Buffer {
    if (this.offset + length > this.source.length) throw this.damaged('truncated');
    const part = this.source.subarray(this.offset, this.offset + length);
    this.offset += length;
    return part;
  }

  uint8(): number {
    return this.take(1)[0];
  }

  uint32(): number {
    return this.take(4).readUInt32BE();
  }

  uint64(field: string): number {
    const value = readUint64(this.take(8), 0);
    if (value === undefined) throw this.damaged(`${field} beyond 2^53`);
    return value;
  }

  text(field: string): string {
    try {
      return UTF8.decode(this.take(this.uint32()));
    } catch (error) {
      if (error instanceof IntegrityError) throw error;
      throw this.damaged(`${field} not UTF-8`);
    }
  }

  dataKeyId(field: string): string {
    const id = this.take(DEK_ID_BYTES).toString('latin1');
    if (!PRINTABLE_DEK_ID.test(id)) throw this.damaged(`${field} not a key id`);
    return id;
  }

  rest(): Buffer {
    return Buffer.from(this.take(this.source.length - this.offset));
  }

  /** A copy of length-prefixed bytes written by {@link ByteWriter.blob}. */
  blob(): Buffer {
    return Buffer.from(this.take(this.uint32()));
  }

  /** Throws unless every byte was read: trailing bytes were not written by this module. */
  end(): void {
    if (this.offset !== this.source.length) throw this.damaged('trailing bytes');
  }
}

/**
 * Packs a data-key record as its hash value: format, state, flags, generation, firstSeq,
 * createdAt, destroyedAt, tenant, session, subject, kekId, then the wrapped key. The dekId is
 * the hash field. Tenant and session stay in the record: the key ring compares them with the
 * reader's session to catch an item copied across sessions.
 */
export function packDataKey(record: DataKeyRecord): Buffer {
  const state = STATE_CODES.indexOf(record.state);
  if (state < 0) throw new Error(`Unknown data key state '${record.state}'`);
  const flags =
    (record.subjectId === null ? 0 : HAS_SUBJECT) |
    (record.destroyedAt === null ? 0 : HAS_DESTROYED_AT);
  const writer = new ByteWriter()
    .uint8(DATA_KEY_FORMAT)
    .uint8(state)
    .uint8(flags)
    .uint64(record.generation, 'generation')
    .uint64(record.firstSeq, 'firstSeq')
    .uint64(record.createdAt, 'createdAt')
    .uint64(record.destroyedAt ?? 0, 'destroyedAt')
    .text(record.tenantId)
    .text(record.sessionId);
  if (record.subjectId !== null) writer.text(record.subjectId);
  return writer.text(record.kekId).bytes(record.wrappedKey).toBuffer();
}

/** Unpacks a hash value written by {@link packDataKey}; `owner` names it in errors. */
export function unpackDataKey(dekId: string, packed: Buffer, owner = UNNAMED_OWNER): DataKeyRecord {
  const reader = new ByteReader(packed, owner, 'data key');
  if (!PRINTABLE_DEK_ID.test(dekId)) throw reader.damaged('hash field not a key id');
  if (reader.uint8() !== DATA_KEY_FORMAT) throw reader.damaged('unknown format');
  const state = STATE_CODES[reader.uint8()];
  if (!state) throw reader.damaged('unknown state');
  const flags = reader.uint8();
  if ((flags & ~(HAS_SUBJECT | HAS_DESTROYED_AT)) !== 0) throw reader.damaged('unknown flags');
  const generation = reader.uint64('generation');
  if (generation < 1) throw reader.damaged('generation below 1');
  const firstSeq = reader.uint64('first_seq');
  const createdAt = reader.uint64('created_at');
  const destroyedAt = reader.uint64('destroyed_at');
  const tenantId = reader.text('tenant_id');
  const sessionId = reader.text('session_id');
  const subjectId = flags & HAS_SUBJECT ? reader.text('subject_id') : null;
  const kekId = reader.text('kek_id');
  return {
    dekId,
    tenantId,
    sessionId,
    subjectId,
    generation,
    firstSeq,
    kekId,
    wrappedKey: reader.rest(),
    state,
    createdAt,
    destroyedAt: flags & HAS_DESTROYED_AT ? destroyedAt : null,
  };
}

/** Packs a history-operation record as its hash value: format, createdAt, dekId, digest. */
export function packOperation(record: HistoryOperationRecord): Buffer {
  return new ByteWriter()
    .uint8(OPERATION_FORMAT)
    .uint64(record.createdAt, 'createdAt')
    .bytes(dekIdBytes(record.dekId))
    .bytes(record.digest)
    .toBuffer();
}

/** Length of an operation's digest (HMAC-SHA256). */
const OPERATION_DIGEST_BYTES = 32;

/** Unpacks a hash value written by {@link packOperation}; `owner` names it in errors. */
export function unpackOperation(
  operationId: string,
  packed: Buffer,
  owner: string,
): HistoryOperationRecord {
  const reader = new ByteReader(packed, owner, 'history operation');
  if (reader.uint8() !== OPERATION_FORMAT) throw reader.damaged('unknown format');
  const createdAt = reader.uint64('created_at');
  const dekId = reader.dataKeyId('dek_id');
  const digest = reader.rest();
  if (digest.length !== OPERATION_DIGEST_BYTES) throw reader.damaged('digest length');
  return { operationId, dekId, digest, createdAt };
}

/** Field names of the session hash. */
export const SESSION_FIELDS = {
  tenantId: 'tenant_id',
  sessionId: 'session_id',
  subjectId: 'subject_id',
  createdAt: 'created_at',
  lastActivityAt: 'last_activity_at',
  nextSeq: 'next_seq',
  itemTtlSeconds: 'item_ttl_seconds',
  legalHold: 'legal_hold',
  /** Bumped by every commit: the compare-and-set of optimistic units of work. */
  version: 'version',
  /**
   * Ids of the latest commits (space-separated, newest first), to recognise a commit sent again
   * after its reply was lost.
   */
  recentCommits: 'recent_commits',
  /** Largest expiresAt of any item ever inserted (0: none). */
  maxExpiresAt: 'max_expires_at',
  /** '1' once an item without expiry was inserted: the session then never expires in Redis. */
  neverExpires: 'never_expires',
  /**
   * '1' once every item of the session is in its expiry index: set by the commit script when it
   * finds no items stored or clears them, or by the rebuild of a session written before the
   * index existed (absent: such a session; the expired-item scan rebuilds its index first).
   */
  expiryIndexed: 'expiry_indexed',
} as const;

/** The record's fields as hash values; null fields map to undefined (the field is removed). */
export function sessionRecordFields(record: SessionRecord): Record<string, string | undefined> {
  return {
    [SESSION_FIELDS.tenantId]: record.tenantId,
    [SESSION_FIELDS.sessionId]: record.sessionId,
    [SESSION_FIELDS.subjectId]: record.subjectId ?? undefined,
    [SESSION_FIELDS.createdAt]: String(record.createdAt),
    [SESSION_FIELDS.lastActivityAt]: String(record.lastActivityAt),
    [SESSION_FIELDS.nextSeq]: String(record.nextSeq),
    [SESSION_FIELDS.itemTtlSeconds]:
      record.itemTtlSeconds === null ? undefined : String(record.itemTtlSeconds),
    [SESSION_FIELDS.legalHold]: record.legalHold ? '1' : '0',
  };
}

const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

/**
 * A whole number >= `min` stored as decimal text in a session hash field, or `fallback` when the
 * field is absent and one is given. Anything else (text, '', '1e3', ' 1', beyond 2^53) is damage.
 */
export function sessionHashNumber(
  ref: SessionRef,
  hash: Record<string, string>,
  field: string,
  options: { min?: number; fallback?: number } = {},
): number {
  const text = hash[field];
  if (text === undefined && options.fallback !== undefined) return options.fallback;
  const value = text !== undefined && DECIMAL.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < (options.min ?? 0)) {
    throw malformed(redisSessionLabel(ref), 'session hash', `field ${field}`);
  }
  return value;
}

/** A '0'/'1' flag of the session hash (absent: false). */
export function sessionHashFlag(
  ref: SessionRef,
  hash: Record<string, string>,
  field: string,
): boolean {
  const text = hash[field];
  if (text === undefined || text === '0') return false;
  if (text === '1') return true;
  throw malformed(redisSessionLabel(ref), 'session hash', `field ${field}`);
}

/**
 * The session record in a session hash, or undefined when the hash holds none (missing, or
 * only the commit bookkeeping left by a unit of work that wrote keys before the session).
 * Every field is checked: a damaged one is an IntegrityError naming the session and field.
 */
export function sessionRecordFromHash(
  ref: SessionRef,
  hash: Record<string, string>,
): SessionRecord | undefined {
  if (hash[SESSION_FIELDS.tenantId] === undefined) return undefined;
  // The key is derived from the ids: a hash holding others was copied from another session.
  for (const [field, expected] of [
    [SESSION_FIELDS.tenantId, ref.tenantId],
    [SESSION_FIELDS.sessionId, ref.sessionId],
  ] as const) {
    if (hash[field] !== expected) {
      throw malformed(redisSessionLabel(ref), 'session hash', `field ${field}`);
    }
  }
  const number = (field: string, min = 0) => sessionHashNumber(ref, hash, field, { min });
  const ttl = hash[SESSION_FIELDS.itemTtlSeconds];
  return {
    tenantId: ref.tenantId,
    sessionId: ref.sessionId,
    subjectId: hash[SESSION_FIELDS.subjectId] ?? null,
    createdAt: number(SESSION_FIELDS.createdAt),
    lastActivityAt: number(SESSION_FIELDS.lastActivityAt),
    nextSeq: number(SESSION_FIELDS.nextSeq, 1),
    itemTtlSeconds: ttl === undefined ? null : number(SESSION_FIELDS.itemTtlSeconds),
    legalHold: sessionHashFlag(ref, hash, SESSION_FIELDS.legalHold),
  };
}

// ---------------------------------------------------------------------------------------------
// Audit chains. Records are ZSET members (score = seq), the head a STRING. Ids and the body are
// length-prefixed UTF-8 and MACs length-prefixed bytes, so any Unicode (U+2028 included) and
// any id of any length survive byte for byte.

const AUDIT_RECORD_FORMAT = 1;
const AUDIT_HEAD_FORMAT = 1;
const HAS_SESSION = 1;
const HAS_SUBJECT_REF = 2;

/**
 * UTF-8 cannot carry a lone surrogate: it would be stored as U+FFFD and read back as another
 * string than the one written. Refused before anything is stored.
 */
function wellFormed(value: string, field: string): string {
  if (!value.isWellFormed()) {
    throw new Error(`An audit ${field} must be well-formed Unicode (no lone surrogates)`);
  }
  return value;
}

/** How messages name an audit chain: its id, as the audit layer reports it too. */
export function redisAuditChainLabel(chain: { readonly chainId: string }): string {
  return `audit chain '${chain.chainId}'`;
}

/**
 * Packs an audit record as its ZSET member: format, flags, seq, time, prevMac, mac, then the
 * ids, action, outcome, actor, subject ref, MAC key id and body. The seq leads the variable
 * part, so two records of one chain never share a member.
 */
export function packAuditRecord(record: StoredAuditRecord): Buffer {
  const flags =
    (record.sessionId === null ? 0 : HAS_SESSION) |
    (record.subjectRef === null ? 0 : HAS_SUBJECT_REF);
  const writer = new ByteWriter()
    .uint8(AUDIT_RECORD_FORMAT)
    .uint8(flags)
    .uint64(record.seq, 'seq')
    .uint64(record.time, 'time')
    .blob(record.prevMac)
    .blob(record.mac)
    .text(wellFormed(record.chainId, 'chain id'))
    .text(wellFormed(record.tenantId, 'tenant id'));
  if (record.sessionId !== null) writer.text(wellFormed(record.sessionId, 'session id'));
  writer
    .text(wellFormed(record.eventId, 'event id'))
    .text(wellFormed(record.action, 'action'))
    .text(wellFormed(record.outcome, 'outcome'))
    .text(wellFormed(record.actorId, 'actor id'));
  if (record.subjectRef !== null) writer.text(wellFormed(record.subjectRef, 'subject ref'));
  return writer
    .text(wellFormed(record.macKeyId, 'MAC key id'))
    .text(wellFormed(record.body, 'body'))
    .toBuffer();
}

/**
 * Unpacks a ZSET member written by {@link packAuditRecord}, as stored: a record whose ids name
 * another chain is returned as it is, for the verifier to report (`wrong_chain`). `owner` names
 * the chain in the IntegrityError raised for a member that cannot be read.
 */
export function unpackAuditRecord(packed: Buffer, owner: string): StoredAuditRecord {
  const reader = new ByteReader(packed, owner, 'audit record', malformedAudit);
  if (reader.uint8() !== AUDIT_RECORD_FORMAT) throw reader.damaged('unknown format');
  const flags = reader.uint8();
  if ((flags & ~(HAS_SESSION | HAS_SUBJECT_REF)) !== 0) throw reader.damaged('unknown flags');
  const seq = reader.uint64('seq');
  if (seq < 1) throw reader.damaged('seq below 1');
  const time = reader.uint64('time');
  const prevMac = reader.blob();
  const mac = reader.blob();
  const chainId = reader.text('chain_id');
  const tenantId = reader.text('tenant_id');
  const sessionId = flags & HAS_SESSION ? reader.text('session_id') : null;
  const eventId = reader.text('event_id');
  const action = reader.text('action');
  const outcome = reader.text('outcome');
  const actorId = reader.text('actor_id');
  const subjectRef = flags & HAS_SUBJECT_REF ? reader.text('subject_ref') : null;
  const macKeyId = reader.text('mac_key_id');
  const body = reader.text('body');
  reader.end();
  return {
    chainId,
    seq,
    tenantId,
    sessionId,
    eventId,
    time,
    action,
    outcome,
    actorId,
    subjectRef,
    macKeyId,
    prevMac,
    mac,
    body,
  };
}

/**
 * Packs a chain head as its STRING: format, flags, seq, time, MAC, chain id, tenant and session.
 * The commit scripts compare it byte for byte with the head a unit read, so a head that moved
 * (or was edited) since fails the commit.
 */
export function packAuditHead(chain: AuditChainRef, last: StoredAuditRecord): Buffer {
  const writer = new ByteWriter()
    .uint8(AUDIT_HEAD_FORMAT)
    .uint8(chain.sessionId === null ? 0 : HAS_SESSION)
    .uint64(last.seq, 'seq')
    .uint64(last.time, 'time')
    .blob(last.mac)
    .text(wellFormed(chain.chainId, 'chain id'))
    .text(wellFormed(chain.tenantId, 'tenant id'));
  if (chain.sessionId !== null) writer.text(wellFormed(chain.sessionId, 'session id'));
  return writer.toBuffer();
}

/**
 * Unpacks a head written by {@link packAuditHead}. The key is derived from the chain: a head
 * naming another chain, tenant or session was copied there, and is damage.
 */
export function unpackAuditHead(packed: Buffer, chain: AuditChainRef): AuditChainHeadRecord {
  const reader = new ByteReader(
    packed,
    redisAuditChainLabel(chain),
    'audit chain head',
    malformedAudit,
  );
  if (reader.uint8() !== AUDIT_HEAD_FORMAT) throw reader.damaged('unknown format');
  const flags = reader.uint8();
  if ((flags & ~HAS_SESSION) !== 0) throw reader.damaged('unknown flags');
  const seq = reader.uint64('seq');
  if (seq < 1) throw reader.damaged('seq below 1');
  const time = reader.uint64('time');
  const mac = reader.blob();
  const chainId = reader.text('chain_id');
  const tenantId = reader.text('tenant_id');
  const sessionId = flags & HAS_SESSION ? reader.text('session_id') : null;
  reader.end();
  if (chainId !== chain.chainId) throw reader.damaged('chain_id of another chain');
  if (tenantId !== chain.tenantId) throw reader.damaged('tenant_id of another tenant');
  if (sessionId !== chain.sessionId) throw reader.damaged('session_id of another session');
  return { chainId, tenantId, seq, mac, time };
}

/** Where the index says a chain's keys live: `t` (the tenant's slot) or `s` and a session id. */
export function packAuditChainLocation(chain: AuditChainRef): Buffer {
  return chain.sessionId === null
    ? Buffer.from('t')
    : Buffer.concat([Buffer.from('s'), Buffer.from(wellFormed(chain.sessionId, 'session id'))]);
}

/** The chain a location written by {@link packAuditChainLocation} names. */
export function unpackAuditChainLocation(
  tenantId: string,
  chainId: string,
  packed: Buffer,
): AuditChainRef {
  const kind = packed.toString('latin1', 0, 1);
  if (kind === 't' && packed.length === 1) return { chainId, tenantId, sessionId: null };
  if (kind === 's') {
    try {
      return { chainId, tenantId, sessionId: UTF8.decode(packed.subarray(1)) };
    } catch {
      // Falls through to the damage below.
    }
  }
  throw malformedAudit(redisAuditChainLabel({ chainId }), 'audit chain index entry', 'location');
}

/** A chain id as the tenant's index holds it (a ZSET member of UTF-8 bytes). */
export function unpackAuditChainId(member: Buffer, tenantId: string): string {
  try {
    return UTF8.decode(member);
  } catch {
    throw malformedAudit(`tenant '${tenantId}'`, 'audit chain index entry', 'chain id not UTF-8');
  }
}

/** Hex digits of each half of an audit index member; 14 cover every safe integer. */
const INDEX_FIELD_DIGITS = 14;
const INDEX_MEMBER_PATTERN = /^[0-9a-f]{28}$/;

/**
 * An audit index member: the record's time, then its seq, each as fixed-width lowercase hex.
 * All members of an index have score 0, so byte order is (time, seq) order and ZRANGE BYLEX
 * bounds select a time range or resume after a record.
 */
export function packAuditIndexMember(time: number, seq: number): string {
  return auditIndexTime(time) + seq.toString(16).padStart(INDEX_FIELD_DIGITS, '0');
}

/**
 * The prefix of every index member at `time`: a BYLEX bound. `time` is clamped to the stored
 * range (a record's time is a uint64 within the safe integers).
 */
export function auditIndexTime(time: number): string {
  const clamped = Math.min(Math.max(time, 0), Number.MAX_SAFE_INTEGER);
  return clamped.toString(16).padStart(INDEX_FIELD_DIGITS, '0');
}

/** The time and seq of an index member; damage is an IntegrityError naming `owner`. */
export function unpackAuditIndexMember(
  member: Buffer,
  owner: string,
): { readonly time: number; readonly seq: number } {
  const text = member.toString('latin1');
  if (!INDEX_MEMBER_PATTERN.test(text)) {
    throw malformedAudit(owner, 'audit index entry', 'not a packed time and seq');
  }
  const time = Number.parseInt(text.slice(0, INDEX_FIELD_DIGITS), 16);
  const seq = Number.parseInt(text.slice(INDEX_FIELD_DIGITS), 16);
  if (!Number.isSafeInteger(time) || !Number.isSafeInteger(seq) || seq < 1) {
    throw malformedAudit(owner, 'audit index entry', 'time or seq out of range');
  }
  return { time, seq };
}

// ---------------------------------------------------------------------------------------------
// Audit checkpoints: ZSET members of the tenant's checkpoint set (score = seq).

const CHECKPOINT_FORMAT = 1;

/** What to do about a damaged checkpoint: the signed copies outside Redis are the backup. */
const CHECKPOINT_REMEDY =
  "Nothing was written; restore the tenant's checkpoints from a backup (the winston sink holds a signed copy of each), then verify the trail";

/** How messages name the owner of a tenant's checkpoints. */
export function redisCheckpointLabel(tenantId: string): string {
  return `the checkpoints of tenant '${tenantId}'`;
}

/** The IntegrityError for a damaged checkpoint of `tenantId`. */
export function malformedCheckpoint(tenantId: string, reason: string): IntegrityError {
  return malformed(redisCheckpointLabel(tenantId), 'checkpoint', reason, CHECKPOINT_REMEDY);
}

/**
 * Packs a checkpoint as its ZSET member: format, seq, time, then checkpoint id, tenant, the
 * signed checkpoint JSON and the heads JSON. The seq leads, so two checkpoints never share a
 * member.
 */
export function packCheckpoint(checkpoint: StoredCheckpoint): Buffer {
  return new ByteWriter()
    .uint8(CHECKPOINT_FORMAT)
    .uint64(checkpoint.seq, 'seq')
    .uint64(checkpoint.time, 'time')
    .text(wellFormed(checkpoint.checkpointId, 'checkpoint id'))
    .text(wellFormed(checkpoint.tenantId, 'tenant id'))
    .text(wellFormed(checkpoint.checkpoint, 'checkpoint'))
    .text(wellFormed(checkpoint.heads, 'checkpoint heads'))
    .toBuffer();
}

/**
 * Unpacks a member written by {@link packCheckpoint}, stored at `score` in the set of
 * `tenantId`. A member naming another tenant, or at a score that is not its seq, was copied or
 * moved there: damage.
 */
export function unpackCheckpoint(
  packed: Buffer,
  score: string,
  tenantId: string,
): StoredCheckpoint {
  const reader = new ByteReader(
    packed,
    redisCheckpointLabel(tenantId),
    'checkpoint',
    (owner, what, reason) => malformed(owner, what, reason, CHECKPOINT_REMEDY),
  );
  if (reader.uint8() !== CHECKPOINT_FORMAT) throw reader.damaged('unknown format');
  const seq = reader.uint64('seq');
  if (seq < 1) throw reader.damaged('seq below 1');
  const time = reader.uint64('time');
  const checkpointId = reader.text('checkpoint_id');
  const storedTenant = reader.text('tenant_id');
  const checkpoint = reader.text('checkpoint');
  const heads = reader.text('heads');
  reader.end();
  if (storedTenant !== tenantId) throw reader.damaged('tenant_id of another tenant');
  if (Number(score) !== seq) throw reader.damaged('score differs from its seq');
  return { tenantId, seq, checkpointId, time, checkpoint, heads };
}
