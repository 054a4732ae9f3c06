import { AsyncLocalStorage } from 'node:async_hooks';
import { Logger } from '@nestjs/common';
import { v7 as uuidv7, validate as isUuid } from 'uuid';
import {
  currentAuditContext,
  type AuditSubjectTarget,
  type AuditTrail,
  type PendingAuditEvent,
} from '../audit/index.js';
import { decodeItemPayload } from '../crypto/index.js';
import {
  ConfigurationError,
  IntegrityError,
  InvalidArgumentError,
  KeyDestroyedError,
} from '../errors/index.js';
import type { KeyRing } from '../keys/index.js';
import {
  LOCK_WITHOUT_ACTIVITY,
  type LegalHoldRecord,
  type LegalHoldStorage,
  type SessionRef,
  type SessionStorage,
} from '../storage/index.js';
import { envelopeItemCipher, itemBinding } from './item-cipher.js';
import { checkId } from './session-ids.js';
import { sessionsOfSubject } from './subject-sessions.js';

// Ids and counts only: never a matter reference's meaning, never content.
const logger = new Logger('LegalHolds');

/** Items per page when a held session is exported. */
const EXPORT_PAGE = 500;
/** Who released a hold whose placing failed part-way, as the holds table records it. */
const PLACING_FAILED = 'nest-encrypted-sessions:placing-failed';
/** The newest holds `listHolds` returns at most per call. */
const MAX_LIST_LIMIT = 1000;

/**
 * What {@link LegalHolds.place} takes: one tenant's session, or every session of one subject
 * in it (present and future), and the matter the hold is for.
 *
 * @publicApi
 */
export type PlaceHoldInput = {
  /** @default the module's `defaultTenantId` */
  readonly tenantId?: string;
  /** The host's reference of the matter (a case number); 1-191 characters, no control characters. */
  readonly matterRef: string;
} & (
  | { readonly sessionId: string; readonly subjectId?: undefined }
  | { readonly subjectId: string; readonly sessionId?: undefined }
);

/**
 * A legal hold, as {@link LegalHolds.place} and {@link LegalHolds.list} return it.
 *
 * @publicApi
 */
export type LegalHold = LegalHoldRecord;

/**
 * Options of {@link LegalHolds.list}.
 *
 * @publicApi
 */
export interface ListHoldsOptions {
  /** Only this tenant's holds. @default every tenant's */
  readonly tenantId?: string;
  /** Released holds too. @default false */
  readonly includeReleased?: boolean;
  /** The last hold id of the previous page. */
  readonly after?: string;
  /** @default 100, at most 1000 */
  readonly limit?: number;
}

/**
 * One line of a held target's export: an item of a held session, opened, with where it is;
 * or, for an item that does not open, the reason instead of the item.
 *
 * @publicApi
 */
export interface HeldItemExportLine {
  readonly holdId: string;
  readonly matterRef: string;
  readonly tenantId: string;
  readonly sessionId: string;
  readonly seq: number;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms; may be in the past: a hold keeps items past their TTL. */
  readonly expiresAt: number | null;
  /** The agent input item, as the session stored it. */
  readonly item?: unknown;
  /** Why the item is not included: its key was destroyed, or the row failed its check. */
  readonly error?: 'KEY_DESTROYED' | 'INTEGRITY';
}

/**
 * Legal holds: placing and releasing them (audited), listing them, and exporting what a hold
 * covers. A hold wins over every deleting path: the retention purge skips held sessions and
 * erasure refuses them with `LegalHoldError`. `EncryptedSessionService` exposes it.
 */
export class LegalHolds {
  constructor(
    private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    private readonly audit: AuditTrail | undefined,
    private readonly defaultTenantId: string,
  ) {}

  /**
   * Places a hold. It is in force when this resolves: every session it covers has been
   * locked once after the hold was stored, so a purge or erasure deciding on one of them
   * either finished before or sees the hold.
   *
   * @throws InvalidArgumentError for a bad id or matter reference, or both or neither target.
   * @throws AuditActorRequiredError when the trail requires an actor and there is none.
   */
  async place(input: PlaceHoldInput): Promise<LegalHold> {
    const holds = this.holdStorage();
    if (input === null || typeof input !== 'object') {
      throw new InvalidArgumentError(
        'placeHold takes { tenantId?, sessionId | subjectId, matterRef }',
      );
    }
    const tenantId = checkId(input.tenantId ?? this.defaultTenantId, 'tenantId');
    const hasSession = input.sessionId !== undefined;
    if (hasSession === (input.subjectId !== undefined)) {
      throw new InvalidArgumentError(
        'placeHold takes exactly one target: a sessionId or a subjectId (a subject hold covers all its sessions)',
      );
    }
    const sessionId = hasSession ? checkId(input.sessionId, 'sessionId') : null;
    const subjectId = hasSession ? null : checkId(input.subjectId, 'subjectId');
    const matterRef = checkId(input.matterRef, 'matterRef');
    const target: AuditSubjectTarget =
      sessionId === null ? { tenantId, subjectId } : { tenantId, sessionId };
    const event = await this.audit?.prepare('hold.apply', target);
    const placedAt = Date.now();
    const hold: LegalHoldRecord = {
      holdId: uuidv7({ msecs: placedAt }),
      tenantId,
      sessionId,
      subjectId,
      matterRef,
      placedAt,
      placedBy: actorIdOf(event),
      releasedAt: null,
      releasedBy: null,
    };
    await holds.insert(hold).catch(async (error: unknown) => {
      await event?.failed(error);
      throw error;
    });
    let sessions: number;
    try {
      sessions = await this.lockCoveredSessions(hold);
      await event?.succeededAlone({ recordId: hold.holdId, count: sessions });
    } catch (error) {
      // Fail closed: a hold is not left in force without its event on record (should this
      // release fail too, the hold stays: keeping data is the safe side).
      await holds.release(hold.holdId, Date.now(), PLACING_FAILED);
      await event?.failed(error);
      throw error;
    }
    logger.log(
      `Placed legal hold ${hold.holdId} on ${sessionId === null ? 'a subject' : `session '${sessionId}'`} of tenant '${tenantId}' (${sessions} session(s) now)`,
    );
    return hold;
  }

  /**
   * Releases an active hold. Its event is recorded before the release takes effect; should the
   * release then fail, a failure event follows and the hold stays in force. Releasing a hold
   * that is already released returns it unchanged.
   *
   * @throws InvalidArgumentError when there is no hold with that id.
   */
  async release(holdId: string): Promise<LegalHold> {
    const holds = this.holdStorage();
    if (typeof holdId !== 'string' || !isUuid(holdId)) {
      throw new InvalidArgumentError('releaseHold takes the holdId that placeHold returned');
    }
    const found = await holds.find(holdId);
    if (!found) {
      throw new InvalidArgumentError(
        `There is no legal hold '${holdId}'; list them with listHolds()`,
      );
    }
    if (found.releasedAt !== null) return found;
    const event = await this.audit?.prepare('hold.release', targetOf(found));
    await event?.succeededAlone({ recordId: holdId });
    try {
      const released = await holds.release(holdId, Date.now(), actorIdOf(event));
      logger.log(`Released legal hold ${holdId} of tenant '${found.tenantId}'`);
      return released ?? found;
    } catch (error) {
      await event?.failed(error);
      throw error;
    }
  }

  /** One page of holds, by hold id (placing order). */
  async list(options: ListHoldsOptions = {}): Promise<LegalHold[]> {
    const holds = this.holdStorage();
    const limit = options.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new InvalidArgumentError(`listHolds: limit must be a whole number 1-${MAX_LIST_LIMIT}`);
    }
    return holds.list({
      tenantId: options.tenantId === undefined ? undefined : checkId(options.tenantId, 'tenantId'),
      activeOnly: options.includeReleased !== true,
      afterHoldId: options.after ?? '',
      limit,
    });
  }

  /** The active holds covering the session (on it or on its subject). */
  async covering(ref: SessionRef, subjectId: string | null): Promise<LegalHold[]> {
    return this.holdStorage().activeCovering(ref.tenantId, ref.sessionId, subjectId);
  }

  /** Every active hold of a tenant, read page by page. */
  async activeInTenant(tenantId: string): Promise<LegalHold[]> {
    const holds = this.holdStorage();
    const all: LegalHold[] = [];
    for (let after = ''; ;) {
      const page = await holds.list({ tenantId, activeOnly: true, afterHoldId: after, limit: 500 });
      all.push(...page);
      if (page.length < 500) return all;
      after = page.at(-1)!.holdId;
    }
  }

  /** The active holds on a subject itself. */
  async onSubject(tenantId: string, subjectId: string): Promise<LegalHold[]> {
    return this.holdStorage().activeOnSubject(tenantId, subjectId);
  }

  /**
   * Every item the hold covers, past its TTL too, as JSON lines for the matter: one
   * `hold.export` event per session, recorded before any of its items is yielded.
   *
   * @throws InvalidArgumentError when there is no such hold, or it is released.
   */
  export(holdId: string): AsyncGenerator<string> {
    // The lines are pulled later, outside the caller's runAs: each step runs in the context
    // the call was made in, so the export's events name the caller.
    const inCallerContext = AsyncLocalStorage.snapshot();
    const lines = this.exportLines(holdId);
    const bound: AsyncGenerator<string> = {
      next: () => inCallerContext(() => lines.next()),
      return: (value) => inCallerContext(() => lines.return(value)),
      throw: (error) => inCallerContext(() => lines.throw(error)),
      [Symbol.asyncIterator]: () => bound,
    };
    return bound;
  }

  private async *exportLines(holdId: string): AsyncGenerator<string> {
    const holds = this.holdStorage();
    const hold =
      typeof holdId === 'string' && isUuid(holdId) ? await holds.find(holdId) : undefined;
    if (!hold) {
      throw new InvalidArgumentError(
        'There is no legal hold with that id; list them with listHolds()',
      );
    }
    if (hold.releasedAt !== null) {
      throw new InvalidArgumentError(
        `Legal hold ${holdId} was released; only an active hold's target is exported`,
      );
    }
    for await (const ref of this.sessionsOf(hold)) yield* this.exportSession(hold, ref);
  }

  /**
   * Locks each session the hold covers once; returns how many there are. The lock records no
   * activity: a hold is not the session's use, and its idle clock (`sessionIdleDays`) keeps
   * counting from the last real activity, so a released session is purged on time.
   */
  private async lockCoveredSessions(hold: LegalHoldRecord): Promise<number> {
    let count = 0;
    for await (const ref of this.sessionsOf(hold)) {
      const locked = await this.storage.transaction(ref, (scope) =>
        scope.session.lockForWrite(LOCK_WITHOUT_ACTIVITY),
      );
      if (locked) {
        count++;
      }
    }
    return count;
  }

  /** The sessions a hold covers: its session, or every session of its subject now. */
  private async *sessionsOf(hold: LegalHoldRecord): AsyncGenerator<SessionRef> {
    if (hold.sessionId !== null) {
      yield { tenantId: hold.tenantId, sessionId: hold.sessionId };
      return;
    }
    for await (const session of sessionsOfSubject(
      this.storage,
      hold.tenantId,
      hold.subjectId!,
      "a subject's hold cannot be placed or exported on it; hold the sessions one by one",
    )) {
      yield { tenantId: session.tenantId, sessionId: session.sessionId };
    }
  }

  private async *exportSession(hold: LegalHoldRecord, ref: SessionRef): AsyncGenerator<string> {
    const row = await this.storage.read(ref, (scope) => scope.session.find());
    if (!row) return;
    const newest = await this.storage.read(ref, (scope) => scope.items.listVisible(0, 1));
    const throughSeq = newest[0]?.seq ?? 0;
    const event = await this.audit?.prepare('hold.export', { ...ref, subjectId: row.subjectId });
    // Recorded before a single item leaves.
    await event?.succeededAlone({ recordId: hold.holdId });
    for (let afterSeq = 0; afterSeq < throughSeq;) {
      const page = await this.storage.read(ref, (scope) =>
        scope.items.listVisiblePage(0, afterSeq, throughSeq, EXPORT_PAGE),
      );
      if (page.length === 0) break;
      for (const stored of page) {
        const line: HeldItemExportLine = {
          holdId: hold.holdId,
          matterRef: hold.matterRef,
          tenantId: ref.tenantId,
          sessionId: ref.sessionId,
          seq: stored.seq,
          createdAt: stored.createdAt,
          expiresAt: stored.expiresAt,
          ...(await this.openForExport(ref, stored)),
        };
        yield `${JSON.stringify(line)}\n`;
      }
      afterSeq = page.at(-1)!.seq;
    }
  }

  private async openForExport(
    ref: SessionRef,
    stored: { seq: number; dekId: string; expiresAt: number | null; ciphertext: Buffer },
  ): Promise<Pick<HeldItemExportLine, 'item' | 'error'>> {
    try {
      const key = await this.keyRing.keyForRead(ref, stored.dekId);
      const payload = envelopeItemCipher.open(
        key,
        itemBinding(ref, stored.seq, stored.expiresAt),
        stored.ciphertext,
      );
      try {
        return { item: decodeItemPayload(payload) };
      } finally {
        payload.fill(0);
      }
    } catch (error) {
      if (error instanceof KeyDestroyedError) return { error: 'KEY_DESTROYED' };
      if (error instanceof IntegrityError) {
        await this.audit?.recordEvent('session.integrity_failure', ref, 'failure', {
          reason: 'INTEGRITY',
          count: 1,
        });
        return { error: 'INTEGRITY' };
      }
      throw error;
    }
  }

  private holdStorage(): LegalHoldStorage {
    if (!this.storage.holds) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' keeps no legal holds; use one of the module's stores`,
      );
    }
    return this.storage.holds;
  }
}

/** The audit target of a stored hold: its session, or its subject on the tenant's chain. */
function targetOf(hold: LegalHoldRecord): AuditSubjectTarget {
  return hold.sessionId === null
    ? { tenantId: hold.tenantId, subjectId: hold.subjectId }
    : { tenantId: hold.tenantId, sessionId: hold.sessionId };
}

/** Who is doing it: the event's actor, else the context's, else the module unnamed. */
function actorIdOf(event: PendingAuditEvent | undefined): string {
  return event?.actor.id ?? currentAuditContext()?.actor.id ?? 'unattributed';
}
