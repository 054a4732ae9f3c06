import { Inject, Injectable, Optional } from '@nestjs/common';
import { AUDIT_TRAIL, AuditTrail } from '../audit/index.js';
import { InvalidArgumentError, ShuttingDownError } from '../errors/index.js';
import { KeyRing } from '../keys/index.js';
import { SESSION_STORAGE, WorkInFlight, type SessionStorage } from '../storage/index.js';
import { EncryptedSession } from './encrypted-session.js';
import {
  Erasure,
  type EraseOptions,
  type ErasureReplayReport,
  type ReplayErasureOptions,
} from './erasure.js';
import type { ErasureReceipt } from './erasure-receipt.js';
import {
  LegalHolds,
  type LegalHold,
  type ListHoldsOptions,
  type PlaceHoldInput,
} from './legal-holds.js';
import { checkId } from './session-ids.js';
import { sessionRowMissing, STORED_AT_ALL } from './stored-row-checks.js';
import {
  DEFAULT_SESSION_DEFAULTS,
  SESSION_DEFAULTS,
  type SessionDefaults,
} from './session-defaults.js';

/**
 * Options of {@link EncryptedSessionService.open}.
 *
 * @publicApi
 */
export interface OpenSessionOptions {
  /** Tenant that owns the session; every read and write is scoped by it. @default the module's `defaultTenantId` */
  tenantId?: string;
  /** The person the conversation is about, for erasure and access reports. */
  subjectId?: string;
  /**
   * Items appended through the returned session expire this many seconds after writing.
   * `null` keeps them until removed. @default the session's stored TTL, else the module's `itemTtlSeconds`
   */
  ttlSeconds?: number | null;
}

function checkTtl(value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(
      'ttlSeconds must be a positive whole number of seconds, or null for no expiry',
    );
  }
  return value;
}

/**
 * Opens encrypted agent sessions.
 *
 * @publicApi
 */
@Injectable()
export class EncryptedSessionService {
  private readonly defaults: SessionDefaults;
  private readonly holds: LegalHolds;
  private readonly erasure: Erasure;
  /** The module's audit trail; undefined when it is off. */
  private readonly audit: AuditTrail | undefined;
  /** Every `open` and every call of a session it returned, so shutdown can wait for them. */
  private readonly calls = new WorkInFlight(
    () =>
      new ShuttingDownError(
        'Encrypted sessions are closing because the app is shutting down; the call was refused and nothing was stored. Retry it on a running instance.',
      ),
  );

  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    @Optional() @Inject(SESSION_DEFAULTS) defaults?: SessionDefaults,
    @Optional() @Inject(AUDIT_TRAIL) audit?: AuditTrail | null,
  ) {
    this.defaults = { ...DEFAULT_SESSION_DEFAULTS, ...defaults };
    this.audit = audit ?? undefined;
    this.holds = new LegalHolds(storage, keyRing, this.audit, this.defaults.tenantId);
    this.erasure = new Erasure(storage, keyRing, this.audit, this.holds, this.defaults.tenantId);
  }

  /**
   * Erases every session of a subject in a tenant: their data keys destroyed (no copy of the
   * ciphertext, in a backup or a replica, opens again), their items deleted, the subject's id
   * removed from their rows; recorded in the erasure ledger and the audit trail. Returns the
   * receipt, signed with the audit checkpoint key when there is one (`verifyErasureReceipt`).
   * Keep receipts outside the database's backups: `replayErasureLedger({ receipts })` erases
   * again what a restore brings back.
   *
   * @throws LegalHoldError when a hold covers the subject or one of its sessions; nothing changed.
   * @throws InvalidArgumentError for a bad id or a reason outside `ERASURE_REASONS`.
   */
  eraseSubject(subjectId: string, options: EraseOptions): Promise<ErasureReceipt> {
    return this.calls.run(() => this.erasure.eraseSubject(subjectId, options));
  }

  /**
   * Erases one session, as {@link eraseSubject} erases each of a subject's.
   *
   * @throws SessionNotFoundError when the tenant has no such session.
   * @throws LegalHoldError when a hold covers it; nothing changed.
   */
  eraseSession(sessionId: string, options: EraseOptions): Promise<ErasureReceipt> {
    return this.calls.run(() => this.erasure.eraseSession(sessionId, options));
  }

  /**
   * Erases again whatever the erasure ledger (or the receipts given) says was erased, and
   * finishes erasures cut off part-way. Run it after restoring a backup, with the receipts kept
   * outside it.
   *
   * @throws IntegrityError for a receipt whose signature does not hold; the replay stops.
   */
  replayErasureLedger(options?: ReplayErasureOptions): Promise<ErasureReplayReport> {
    return this.calls.run(() => this.erasure.replayLedger(options));
  }

  /**
   * Places a legal hold on a session, or on every session of a subject (present and future).
   * In force when this resolves: the retention purge skips what it covers, erasure refuses it.
   */
  placeHold(input: PlaceHoldInput): Promise<LegalHold> {
    return this.calls.run(() => this.holds.place(input));
  }

  /** Releases a legal hold; releasing a released one returns it unchanged. */
  releaseHold(holdId: string): Promise<LegalHold> {
    return this.calls.run(() => this.holds.release(holdId));
  }

  /** One page of legal holds, active ones by default, in placing order. */
  listHolds(options?: ListHoldsOptions): Promise<LegalHold[]> {
    return this.calls.run(() => this.holds.list(options));
  }

  /**
   * Every item an active hold covers, past its TTL too, as JSON lines for the matter
   * (`HeldItemExportLine`); each session's export is audited before its first line.
   */
  exportHold(holdId: string): AsyncGenerator<string> {
    return this.holds.export(holdId);
  }

  /**
   * Opens a session, creating it on first use, and returns the `Session` to hand to
   * `@openai/agents`. Opening an existing session under a different subject is refused.
   *
   * @throws InvalidArgumentError for an empty or over-long id, a bad TTL, or a subject mismatch.
   */
  async open(sessionId: string, options: OpenSessionOptions = {}): Promise<EncryptedSession> {
    return this.calls.run(() => this.openCounted(sessionId, options));
  }

  /**
   * Refuses new `open` calls and session calls with `ShuttingDownError` and resolves once those
   * in flight have settled. The module's shutdown calls it before closing storage. Idempotent.
   *
   * @internal
   */
  drain(): Promise<void> {
    return this.calls.close();
  }

  private async openCounted(
    sessionId: string,
    options: OpenSessionOptions,
  ): Promise<EncryptedSession> {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('open(sessionId, options) takes an options object or nothing');
    }
    const ref = {
      // Only an absent tenantId means the default: null is a caller bug like any non-string.
      tenantId: checkId(
        options.tenantId === undefined ? this.defaults.tenantId : options.tenantId,
        'tenantId',
      ),
      sessionId: checkId(sessionId, 'sessionId'),
    };
    const subjectId =
      options.subjectId === undefined ? null : checkId(options.subjectId, 'subjectId');
    const requestedTtl =
      options.ttlSeconds === undefined ? undefined : checkTtl(options.ttlSeconds);
    // Prepared first: with no actor where one is required, nothing is touched.
    const event = await this.audit?.prepare('session.create', { ...ref, subjectId });
    const now = Date.now();
    // Most opens find the session: one read, and a write only the first time.
    let created = false;
    const record =
      (await this.storage.read(ref, (scope) => scope.session.find())) ??
      (await this.storage
        .transaction(ref, async (scope) => {
          // Items without a session row: the row was deleted behind the module's back. A fresh
          // row would restart the counter under them and every later write would collide.
          if (
            !(await scope.session.find()) &&
            (await scope.items.listVisible(STORED_AT_ALL, 1)).length > 0
          ) {
            throw sessionRowMissing(ref);
          }
          created = await scope.session.insertIfAbsent({
            ...ref,
            subjectId,
            createdAt: now,
            lastActivityAt: now,
            nextSeq: 1,
            itemTtlSeconds: requestedTtl ?? this.defaults.itemTtlSeconds,
            legalHold: false,
          });
          if (created) await event?.appendIn(scope.audit);
          return (await scope.session.find())!;
        })
        .catch(async (error: unknown) => {
          await event?.failed(error);
          throw error;
        }));
    if (created) event?.committed();
    if (subjectId !== null && record.subjectId !== null && record.subjectId !== subjectId) {
      await event?.denied('SUBJECT_MISMATCH', 'session.subject_mismatch');
      throw new InvalidArgumentError(
        `Session '${ref.sessionId}' belongs to another subject; open it with its own subjectId or use a new session id`,
      );
    }
    return new EncryptedSession({
      ...ref,
      subjectId: record.subjectId ?? subjectId,
      itemTtlSeconds: requestedTtl === undefined ? record.itemTtlSeconds : requestedTtl,
      storage: this.storage,
      keyRing: this.keyRing,
      maxItemBytes: this.defaults.maxItemBytes,
      calls: this.calls,
      audit: this.audit,
    });
  }
}
