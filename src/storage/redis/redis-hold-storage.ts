import { InvalidArgumentError } from '../../errors/index.js';
import type { ErasureLedgerStorage, LegalHoldStorage } from '../storage.ports.js';
import type { ErasureLedgerRecord, LegalHoldQuery, LegalHoldRecord } from '../storage.records.js';
import {
  INSERT_ERASURE_SCRIPT,
  INSERT_HOLD_SCRIPT,
  READ_HOLD_SETS_SCRIPT,
  READ_PAGE_SCRIPT,
  RECORD_REPLY,
  RELEASE_HOLD_SCRIPT,
  REPLACE_RECORD_SCRIPT,
} from './redis-hold-scripts.js';
import { malformed } from './redis-record-codec.js';
import type { RedisSessionReads } from './redis-session-reads.js';

/*
 * Legal holds and the erasure ledger on Redis. Every key of the holds shares the hash tag
 * 'holds', every key of the ledger 'erasures' (see RedisKeyLayout), so each call is one script
 * on one slot, on a Cluster too. Records are JSON arrays (every string survives, whatever its
 * characters); ids are hash fields and ZSET members as their UTF-8 bytes, so the ZSETs (score
 * 0) list them by their bytes, and base64url in key names, so no two ids share a key.
 */

/** Names of the scripts on the client; namespaced, as a host client may define its own. */
const INSERT_HOLD_COMMAND = 'nesInsertLegalHold';
const RELEASE_HOLD_COMMAND = 'nesReleaseLegalHold';
const READ_SETS_COMMAND = 'nesReadLegalHoldSets';
const READ_PAGE_COMMAND = 'nesReadRecordPage';
const INSERT_ERASURE_COMMAND = 'nesInsertErasure';
const REPLACE_RECORD_COMMAND = 'nesReplaceRecord';

/** How many times a change re-reads a record another writer changed meanwhile. */
const MAX_CHANGE_ATTEMPTS = 100;

const HOLD_FORMAT = 1;
const ERASURE_FORMAT = 1;

type ScriptCommand = (...args: Array<string | number>) => Promise<unknown>;

/** What to do about a damaged hold or ledger entry. */
const RECORD_REMEDY = 'Nothing was written; restore it from a backup';

/** Ids and texts that UTF-8 stores byte for byte (no lone surrogates). */
function wellFormedText(value: unknown): value is string {
  return typeof value === 'string' && value.isWellFormed();
}

const isTime = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

const isTextOrNull = (value: unknown): value is string | null =>
  value === null || wellFormedText(value);

const isTimeOrNull = (value: unknown): value is number | null => value === null || isTime(value);

/** Checks the texts and times of a record before it is stored. */
function checkFields(
  what: string,
  texts: Record<string, unknown>,
  times: Record<string, unknown>,
): void {
  for (const [field, value] of Object.entries(texts)) {
    if (!isTextOrNull(value)) {
      throw new InvalidArgumentError(
        `The ${field} of ${what} must be a string of well-formed Unicode (no lone surrogates)`,
      );
    }
  }
  for (const [field, value] of Object.entries(times)) {
    if (!isTimeOrNull(value)) {
      throw new InvalidArgumentError(
        `The ${field} of ${what} must be a whole number of epoch ms >= 0`,
      );
    }
  }
}

/** The ZRANGEBYLEX start after `after` ('' or absent: from the first member). */
const lexAfter = (after: string | undefined): string => (after ? `(${after}` : '-');

/** Byte order of UTF-8 ids. */
const compareIds = (a: string, b: string): number =>
  Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** A page size as a caller passed it; 0 for none (no rows). */
function pageLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit <= 0) return 0;
  return limit;
}

// ---------------------------------------------------------------------------------------------
// Holds

export function packHold(hold: LegalHoldRecord): string {
  return JSON.stringify([
    HOLD_FORMAT,
    hold.holdId,
    hold.tenantId,
    hold.sessionId,
    hold.subjectId,
    hold.matterRef,
    hold.placedAt,
    hold.placedBy,
    hold.releasedAt,
    hold.releasedBy,
  ]);
}

export function unpackHold(holdId: string, packed: string): LegalHoldRecord {
  const damaged = (reason: string) =>
    malformed(`legal hold '${holdId}'`, 'legal hold', reason, RECORD_REMEDY);
  let fields: unknown;
  try {
    fields = JSON.parse(packed);
  } catch {
    throw damaged('not JSON');
  }
  if (!Array.isArray(fields) || fields.length !== 10 || fields[0] !== HOLD_FORMAT) {
    throw damaged('unknown format');
  }
  const [, id, tenantId, sessionId, subjectId, matterRef, placedAt, placedBy, releasedAt, by] =
    fields as unknown[];
  if (id !== holdId) throw damaged('hold_id of another hold');
  if (
    !wellFormedText(tenantId) ||
    !isTextOrNull(sessionId) ||
    !isTextOrNull(subjectId) ||
    !wellFormedText(matterRef) ||
    !isTime(placedAt) ||
    !wellFormedText(placedBy) ||
    !isTimeOrNull(releasedAt) ||
    !isTextOrNull(by)
  ) {
    throw damaged('a field of the wrong type');
  }
  return {
    holdId,
    tenantId,
    sessionId,
    subjectId,
    matterRef,
    placedAt,
    placedBy,
    releasedAt,
    releasedBy: by,
  };
}

/**
 * Legal holds on Redis. A HASH holds every hold by id; ZSETs list all ids and the active ones,
 * store-wide and per tenant; a SET per session and per subject holds the ids of the active holds
 * on it, so the holds covering a session are one read of two sets.
 */
export class RedisLegalHoldStorage implements LegalHoldStorage {
  constructor(private readonly reads: RedisSessionReads) {
    const { client } = reads;
    client.defineCommand(INSERT_HOLD_COMMAND, { numberOfKeys: 6, lua: INSERT_HOLD_SCRIPT });
    client.defineCommand(RELEASE_HOLD_COMMAND, { numberOfKeys: 4, lua: RELEASE_HOLD_SCRIPT });
    client.defineCommand(READ_SETS_COMMAND, { lua: READ_HOLD_SETS_SCRIPT });
    client.defineCommand(READ_PAGE_COMMAND, { numberOfKeys: 2, lua: READ_PAGE_SCRIPT });
  }

  private get keys() {
    return this.reads.layout.holds();
  }

  /** The active set of the hold's target: its session's, or its subject's. */
  private targetSet(hold: LegalHoldRecord): string {
    return hold.sessionId !== null
      ? this.keys.onSession(hold.tenantId, hold.sessionId)
      : this.keys.onSubject(hold.tenantId, hold.subjectId!);
  }

  async insert(hold: LegalHoldRecord): Promise<void> {
    const what = `legal hold '${hold.holdId}'`;
    checkFields(
      what,
      {
        holdId: hold.holdId,
        tenantId: hold.tenantId,
        sessionId: hold.sessionId,
        subjectId: hold.subjectId,
        matterRef: hold.matterRef,
        placedBy: hold.placedBy,
        releasedBy: hold.releasedBy,
      },
      { placedAt: hold.placedAt, releasedAt: hold.releasedAt },
    );
    if (hold.holdId === null || hold.tenantId === null || hold.matterRef === null) {
      throw new InvalidArgumentError(`The ids and matter reference of ${what} must be strings`);
    }
    if ((hold.sessionId === null) === (hold.subjectId === null)) {
      throw new InvalidArgumentError(
        `A legal hold covers one session or one subject: set exactly one of sessionId and subjectId of ${what}`,
      );
    }
    const keys = this.keys;
    const stored = await this.run(INSERT_HOLD_COMMAND, [
      keys.records,
      keys.all,
      keys.active,
      keys.ofTenant(hold.tenantId),
      keys.activeOfTenant(hold.tenantId),
      this.targetSet(hold),
      hold.holdId,
      packHold(hold),
      hold.releasedAt === null ? '1' : '0',
    ]);
    if (Number(stored) !== 1) {
      throw new InvalidArgumentError(`A legal hold with id '${hold.holdId}' exists already`);
    }
  }

  async release(
    holdId: string,
    releasedAt: number,
    releasedBy: string,
  ): Promise<LegalHoldRecord | undefined> {
    if (!wellFormedText(holdId)) return undefined;
    checkFields(`legal hold '${holdId}'`, { releasedBy }, { releasedAt });
    let packed = await this.readPacked(holdId);
    for (let attempt = 0; attempt < MAX_CHANGE_ATTEMPTS; attempt++) {
      if (packed === undefined) return undefined;
      const hold = unpackHold(holdId, packed);
      if (hold.releasedAt !== null) return hold;
      const released = { ...hold, releasedAt, releasedBy };
      const reply = (await this.run(RELEASE_HOLD_COMMAND, [
        this.keys.records,
        this.keys.active,
        this.keys.activeOfTenant(hold.tenantId),
        this.targetSet(hold),
        holdId,
        packed,
        packHold(released),
      ])) as unknown[];
      const status = Number(reply[0]);
      if (status === RECORD_REPLY.none) return undefined;
      if (status === RECORD_REPLY.written) return released;
      packed = String(reply[1]);
    }
    throw new Error(`Releasing legal hold '${holdId}' kept conflicting with other writers`);
  }

  async find(holdId: string): Promise<LegalHoldRecord | undefined> {
    if (!wellFormedText(holdId)) return undefined;
    const packed = await this.readPacked(holdId);
    return packed === undefined ? undefined : unpackHold(holdId, packed);
  }

  async list(query: LegalHoldQuery): Promise<LegalHoldRecord[]> {
    const limit = pageLimit(query.limit);
    const { tenantId, afterHoldId } = query;
    if (limit === 0) return [];
    if (tenantId !== undefined && !wellFormedText(tenantId)) return [];
    if (afterHoldId !== undefined && !wellFormedText(afterHoldId)) return [];
    const keys = this.keys;
    const ids =
      tenantId === undefined
        ? query.activeOnly
          ? keys.active
          : keys.all
        : query.activeOnly
          ? keys.activeOfTenant(tenantId)
          : keys.ofTenant(tenantId);
    const reply = (await this.run(READ_PAGE_COMMAND, [
      keys.records,
      ids,
      lexAfter(afterHoldId),
      limit,
    ])) as [string[], Array<string | null>];
    return this.unpackAll(reply).filter(
      (hold) =>
        (tenantId === undefined || hold.tenantId === tenantId) &&
        (!query.activeOnly || hold.releasedAt === null),
    );
  }

  activeCovering(
    tenantId: string,
    sessionId: string,
    subjectId: string | null,
  ): Promise<LegalHoldRecord[]> {
    if (!wellFormedText(tenantId) || !wellFormedText(sessionId)) return Promise.resolve([]);
    const sets = [this.keys.onSession(tenantId, sessionId)];
    if (subjectId !== null && wellFormedText(subjectId)) {
      sets.push(this.keys.onSubject(tenantId, subjectId));
    }
    return this.activeIn(
      sets,
      (hold) =>
        hold.tenantId === tenantId &&
        (hold.sessionId === sessionId || (subjectId !== null && hold.subjectId === subjectId)),
    );
  }

  activeOnSubject(tenantId: string, subjectId: string): Promise<LegalHoldRecord[]> {
    if (!wellFormedText(tenantId) || !wellFormedText(subjectId)) return Promise.resolve([]);
    return this.activeIn(
      [this.keys.onSubject(tenantId, subjectId)],
      (hold) => hold.tenantId === tenantId && hold.subjectId === subjectId,
    );
  }

  /** The active holds listed in `sets` that `covers` accepts, by hold id bytes. */
  private async activeIn(
    sets: readonly string[],
    covers: (hold: LegalHoldRecord) => boolean,
  ): Promise<LegalHoldRecord[]> {
    const reply = (await this.run(READ_SETS_COMMAND, [
      1 + sets.length,
      this.keys.records,
      ...sets,
    ])) as [string[], Array<string | null>];
    return this.unpackAll(reply)
      .filter((hold) => hold.releasedAt === null && covers(hold))
      .toSorted((a, b) => compareIds(a.holdId, b.holdId));
  }

  private unpackAll([ids, packed]: [string[], Array<string | null>]): LegalHoldRecord[] {
    const holds: LegalHoldRecord[] = [];
    ids.forEach((id, index) => {
      // An id whose record is missing was listed by a writer other than this module.
      const record = packed[index];
      if (record !== null && record !== undefined) holds.push(unpackHold(id, record));
    });
    return holds;
  }

  private async readPacked(holdId: string): Promise<string | undefined> {
    const packed = await this.reads.call(() => this.reads.client.hget(this.keys.records, holdId));
    return packed ?? undefined;
  }

  private run(command: string, args: Array<string | number>): Promise<unknown> {
    const client = this.reads.client;
    const script = (client as unknown as Record<string, ScriptCommand>)[command];
    return this.reads.call(() => script.call(client, ...args));
  }
}

// ---------------------------------------------------------------------------------------------
// The erasure ledger

export function packErasure(entry: ErasureLedgerRecord): string {
  return JSON.stringify([
    ERASURE_FORMAT,
    entry.erasureId,
    entry.tenantId,
    entry.scope,
    entry.subjectRef,
    entry.sessionIds,
    entry.createdAt,
    entry.completedAt,
    entry.receipt,
  ]);
}

export function unpackErasure(erasureId: string, packed: string): ErasureLedgerRecord {
  const damaged = (reason: string) =>
    malformed(`erasure '${erasureId}'`, 'erasure ledger entry', reason, RECORD_REMEDY);
  let fields: unknown;
  try {
    fields = JSON.parse(packed);
  } catch {
    throw damaged('not JSON');
  }
  if (!Array.isArray(fields) || fields.length !== 9 || fields[0] !== ERASURE_FORMAT) {
    throw damaged('unknown format');
  }
  const [, id, tenantId, scope, subjectRef, sessionIds, createdAt, completedAt, receipt] =
    fields as unknown[];
  if (id !== erasureId) throw damaged('erasure_id of another entry');
  if (
    !wellFormedText(tenantId) ||
    (scope !== 'subject' && scope !== 'session') ||
    !isTextOrNull(subjectRef) ||
    !wellFormedText(sessionIds) ||
    !isTime(createdAt) ||
    !isTimeOrNull(completedAt) ||
    !isTextOrNull(receipt)
  ) {
    throw damaged('a field of the wrong type');
  }
  return { erasureId, tenantId, scope, subjectRef, sessionIds, createdAt, completedAt, receipt };
}

/**
 * The erasure ledger on Redis: a HASH of entries by id and a ZSET of the ids (score 0), both
 * under the hash tag 'erasures'.
 */
export class RedisErasureLedgerStorage implements ErasureLedgerStorage {
  constructor(private readonly reads: RedisSessionReads) {
    const { client } = reads;
    client.defineCommand(INSERT_ERASURE_COMMAND, { numberOfKeys: 2, lua: INSERT_ERASURE_SCRIPT });
    client.defineCommand(REPLACE_RECORD_COMMAND, { numberOfKeys: 1, lua: REPLACE_RECORD_SCRIPT });
    client.defineCommand(READ_PAGE_COMMAND, { numberOfKeys: 2, lua: READ_PAGE_SCRIPT });
  }

  private get keys() {
    return this.reads.layout.erasureLedger();
  }

  async insert(entry: ErasureLedgerRecord): Promise<void> {
    const what = `erasure '${entry.erasureId}'`;
    checkFields(
      what,
      {
        erasureId: entry.erasureId,
        tenantId: entry.tenantId,
        subjectRef: entry.subjectRef,
        sessionIds: entry.sessionIds,
        receipt: entry.receipt,
      },
      { createdAt: entry.createdAt, completedAt: entry.completedAt },
    );
    if (entry.erasureId === null || entry.tenantId === null || entry.sessionIds === null) {
      throw new InvalidArgumentError(`The ids of ${what} must be strings`);
    }
    if (entry.scope !== 'subject' && entry.scope !== 'session') {
      throw new InvalidArgumentError(`The scope of ${what} must be 'subject' or 'session'`);
    }
    const stored = await this.run(INSERT_ERASURE_COMMAND, [
      this.keys.records,
      this.keys.ids,
      entry.erasureId,
      packErasure(entry),
    ]);
    if (Number(stored) !== 1) {
      throw new InvalidArgumentError(
        `An erasure ledger entry with id '${entry.erasureId}' exists already`,
      );
    }
  }

  async complete(erasureId: string, completedAt: number, receipt: string): Promise<boolean> {
    if (!wellFormedText(erasureId)) return false;
    checkFields(`erasure '${erasureId}'`, { receipt }, { completedAt });
    let packed = await this.readPacked(erasureId);
    for (let attempt = 0; attempt < MAX_CHANGE_ATTEMPTS; attempt++) {
      if (packed === undefined) return false;
      const entry = unpackErasure(erasureId, packed);
      if (entry.completedAt !== null) return false;
      const reply = (await this.run(REPLACE_RECORD_COMMAND, [
        this.keys.records,
        erasureId,
        packed,
        packErasure({ ...entry, completedAt, receipt }),
      ])) as unknown[];
      const status = Number(reply[0]);
      if (status === RECORD_REPLY.none) return false;
      if (status === RECORD_REPLY.written) return true;
      packed = String(reply[1]);
    }
    throw new Error(`Completing erasure '${erasureId}' kept conflicting with other writers`);
  }

  async find(erasureId: string): Promise<ErasureLedgerRecord | undefined> {
    if (!wellFormedText(erasureId)) return undefined;
    const packed = await this.readPacked(erasureId);
    return packed === undefined ? undefined : unpackErasure(erasureId, packed);
  }

  async list(afterErasureId: string, limit: number): Promise<ErasureLedgerRecord[]> {
    const count = pageLimit(limit);
    if (count === 0 || !wellFormedText(afterErasureId)) return [];
    const [ids, packed] = (await this.run(READ_PAGE_COMMAND, [
      this.keys.records,
      this.keys.ids,
      lexAfter(afterErasureId),
      count,
    ])) as [string[], Array<string | null>];
    const entries: ErasureLedgerRecord[] = [];
    ids.forEach((id, index) => {
      const record = packed[index];
      if (record !== null && record !== undefined) entries.push(unpackErasure(id, record));
    });
    return entries;
  }

  private async readPacked(erasureId: string): Promise<string | undefined> {
    const packed = await this.reads.call(() =>
      this.reads.client.hget(this.keys.records, erasureId),
    );
    return packed ?? undefined;
  }

  private run(command: string, args: Array<string | number>): Promise<unknown> {
    const client = this.reads.client;
    const script = (client as unknown as Record<string, ScriptCommand>)[command];
    return this.reads.call(() => script.call(client, ...args));
  }
}
