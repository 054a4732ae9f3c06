import { IntegrityError } from '../../errors/index.js';
import type {
  DataKeyRecord,
  DataKeyState,
  HistoryOperationRecord,
  SessionRecord,
  SessionRef,
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

function malformed(what: string, reason: string): IntegrityError {
  return new IntegrityError(
    `A stored ${what} in Redis is malformed (${reason}): it was not written by this module or was altered. Nothing was deleted`,
  );
}

function writeUint64(target: Buffer, offset: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${field} must be a non-negative safe integer to be stored in Redis`);
  }
  target.writeUInt32BE(Math.floor(value / TWO_TO_32), offset);
  target.writeUInt32BE(value % TWO_TO_32, offset + 4);
}

function readUint64(source: Buffer, offset: number): number {
  return source.readUInt32BE(offset) * TWO_TO_32 + source.readUInt32BE(offset + 4);
}

/** Throws unless `dekId` fits the fixed-width field of a packed item: 36 ASCII characters. */
export function assertDataKeyId(dekId: string): void {
  if (typeof dekId !== 'string' || !/^[\x20-\x7e]{36}$/.test(dekId)) {
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

/** Unpacks a ZSET member written by {@link packItem}; the ciphertext is a copy. */
export function unpackItem(member: Buffer): StoredItem {
  if (member.length < ITEM_HEADER_BYTES) throw malformed('item', 'too short');
  const expiresAt = readUint64(member, 44);
  return {
    seq: readUint64(member, 0),
    dekId: member.toString('latin1', 8, 44),
    expiresAt: expiresAt === 0 ? null : expiresAt,
    createdAt: readUint64(member, 52),
    ciphertext: Buffer.from(member.subarray(ITEM_HEADER_BYTES)),
  };
}

/** Reads only the sequence number of a packed item. */
export function seqOfPackedItem(member: Buffer): number {
  if (member.length < ITEM_HEADER_BYTES) throw malformed('item', 'too short');
  return readUint64(member, 0);
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
    const encoded = Buffer.from(value, 'utf8');
    return this.uint32(encoded.length).bytes(encoded);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads what {@link ByteWriter} wrote, failing with IntegrityError past the end. */
class ByteReader {
  private offset = 0;

  constructor(
    private readonly source: Buffer,
    private readonly what: string,
  ) {}

  private take(length: number): Buffer {
    if (this.offset + length > this.source.length) throw malformed(this.what, 'truncated');
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

  uint64(): number {
    return readUint64(this.take(8), 0);
  }

  text(): string {
    return this.take(this.uint32()).toString('utf8');
  }

  latin1(length: number): string {
    return this.take(length).toString('latin1');
  }

  rest(): Buffer {
    return Buffer.from(this.take(this.source.length - this.offset));
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

/** Unpacks a hash value written by {@link packDataKey}. */
export function unpackDataKey(dekId: string, packed: Buffer): DataKeyRecord {
  const reader = new ByteReader(packed, 'data key');
  if (reader.uint8() !== DATA_KEY_FORMAT) throw malformed('data key', 'unknown format');
  const state = STATE_CODES[reader.uint8()];
  if (!state) throw malformed('data key', 'unknown state');
  const flags = reader.uint8();
  const generation = reader.uint64();
  const firstSeq = reader.uint64();
  const createdAt = reader.uint64();
  const destroyedAt = reader.uint64();
  const tenantId = reader.text();
  const sessionId = reader.text();
  const subjectId = flags & HAS_SUBJECT ? reader.text() : null;
  const kekId = reader.text();
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

/** Unpacks a hash value written by {@link packOperation}. */
export function unpackOperation(operationId: string, packed: Buffer): HistoryOperationRecord {
  const reader = new ByteReader(packed, 'history operation');
  if (reader.uint8() !== OPERATION_FORMAT) throw malformed('history operation', 'unknown format');
  const createdAt = reader.uint64();
  const dekId = reader.latin1(DEK_ID_BYTES);
  return { operationId, dekId, digest: reader.rest(), createdAt };
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

/**
 * The session record in a session hash, or undefined when the hash holds none (missing, or
 * only the commit bookkeeping left by a unit of work that wrote keys before the session).
 */
export function sessionRecordFromHash(
  ref: SessionRef,
  hash: Record<string, string>,
): SessionRecord | undefined {
  if (hash[SESSION_FIELDS.tenantId] === undefined) return undefined;
  const number = (field: string): number => {
    const value = Number(hash[field]);
    if (!Number.isSafeInteger(value)) throw malformed('session', `bad ${field}`);
    return value;
  };
  const ttl = hash[SESSION_FIELDS.itemTtlSeconds];
  return {
    tenantId: ref.tenantId,
    sessionId: ref.sessionId,
    subjectId: hash[SESSION_FIELDS.subjectId] ?? null,
    createdAt: number(SESSION_FIELDS.createdAt),
    lastActivityAt: number(SESSION_FIELDS.lastActivityAt),
    nextSeq: number(SESSION_FIELDS.nextSeq),
    itemTtlSeconds: ttl === undefined ? null : number(SESSION_FIELDS.itemTtlSeconds),
    legalHold: hash[SESSION_FIELDS.legalHold] === '1',
  };
}
