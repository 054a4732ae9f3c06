import { Logger } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import {
  currentAuditContext,
  subjectRef,
  type AuditTrail,
  type PendingAuditEvent,
} from '../audit/index.js';
import {
  ConfigurationError,
  IntegrityError,
  InvalidArgumentError,
  LegalHoldError,
  SessionNotFoundError,
} from '../errors/index.js';
import type { KeyRing } from '../keys/index.js';
import {
  type ErasureLedgerRecord,
  type ErasureLedgerStorage,
  type SessionRecord,
  type SessionRef,
  type SessionStorage,
  type SessionWriteScope,
} from '../storage/index.js';
import {
  checkErasureReason,
  ERASURE_RECEIPT_SCHEMA,
  signErasureReceipt,
  verifyErasureReceipt,
  type ErasureReason,
  type ErasureReceipt,
} from './erasure-receipt.js';
import type { LegalHolds } from './legal-holds.js';
import { checkId } from './session-ids.js';
import { sessionsOfSubject } from './subject-sessions.js';

// Ids and counts only: never a subject id, never content or key material.
const logger = new Logger('Erasure');

/** Ledger entries per page on a replay. */
const LEDGER_PAGE = 200;
/** Sessions erased at once. */
const ERASE_CONCURRENCY = 8;

/**
 * Options of an erasure.
 *
 * @publicApi
 */
export interface EraseOptions {
  /** @default the module's `defaultTenantId` */
  readonly tenantId?: string;
  /** Why: one of `ERASURE_REASONS`, kept in the receipt. */
  readonly reason: ErasureReason;
}

/**
 * Options of {@link Erasure.replayLedger}.
 *
 * @publicApi
 */
export interface ReplayErasureOptions {
  /**
   * Receipts to replay (or their JSON), kept outside the restored database: the module's
   * erasure ledger file, the receipts the erasures returned. @default the storage's own ledger
   */
  readonly receipts?: Iterable<ErasureReceipt | string> | AsyncIterable<ErasureReceipt | string>;
}

/**
 * What a replay did.
 *
 * @publicApi
 */
export interface ErasureReplayReport {
  /** Ledger entries or receipts read. */
  readonly entries: number;
  /** Sessions whose keys or items were found again and erased. */
  readonly sessionsErased: number;
  readonly keysDestroyed: number;
  readonly itemsDeleted: number;
  /** Pending entries (an erasure cut off part-way) finished and completed. */
  readonly completed: number;
}

/** What an erasure is asked to do. */
interface ErasureInput {
  readonly tenantId: string;
  readonly scope: 'subject' | 'session';
  readonly subjectRef: string | null;
  readonly refs: readonly SessionRef[];
  readonly reason: ErasureReason;
  readonly subjectId: string | null;
  readonly actor: { readonly type: string; readonly id: string };
}

/** What erasing one session did. */
interface SessionErased {
  readonly dekIds: string[];
  readonly items: number;
}

/**
 * Erasure: crypto-shreds a session or every session of a subject (their data keys destroyed,
 * so no copy of the ciphertext opens again), deletes their items and the subject's id from
 * their rows, records it in the erasure ledger and returns a signed receipt. A legal hold
 * refuses it. `EncryptedSessionService` exposes it.
 */
export class Erasure {
  constructor(
    private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    private readonly audit: AuditTrail | undefined,
    private readonly holds: LegalHolds,
    private readonly defaultTenantId: string,
  ) {}

  /**
   * Erases every session of a subject in a tenant.
   *
   * @throws LegalHoldError when a hold covers the subject or one of its sessions; nothing changed.
   */
  async eraseSubject(subjectId: string, options: EraseOptions): Promise<ErasureReceipt> {
    const ledger = this.ledgerStorage();
    const { tenantId, reason } = this.checkOptions(options);
    checkId(subjectId, 'subjectId');
    const event = await this.audit?.prepare('subject.erase', { tenantId, subjectId });
    const rows: SessionRecord[] = [];
    for await (const row of sessionsOfSubject(
      this.storage,
      tenantId,
      subjectId,
      'a subject cannot be erased on it; erase its sessions one by one',
    )) {
      rows.push(row);
    }
    const refs = rows.map((row) => ({ tenantId: row.tenantId, sessionId: row.sessionId }));
    const held = [
      ...(await this.holds.onSubject(tenantId, subjectId)),
      ...(await this.heldAmong(refs, subjectId)),
    ];
    const flagged = rows.find((row) => row.legalHold);
    if (held.length > 0 || flagged) {
      await event?.denied('LEGAL_HOLD');
      throw new LegalHoldError(
        `The subject cannot be erased in tenant '${tenantId}': ${held.length > 0 ? `legal hold ${held[0].holdId} covers it; release the hold first` : `session '${flagged!.sessionId}' is flagged legal_hold; clear the host's flag first`}. Nothing was erased`,
      );
    }
    const reference = await this.subjectRefOf(tenantId, subjectId);
    return this.erase(
      ledger,
      {
        tenantId,
        scope: 'subject',
        subjectRef: reference,
        refs,
        reason,
        subjectId,
        actor: actorOf(event),
      },
      event,
    );
  }

  /**
   * Erases one session.
   *
   * @throws SessionNotFoundError when the tenant has no such session.
   * @throws LegalHoldError when a hold covers it; nothing changed.
   */
  async eraseSession(sessionId: string, options: EraseOptions): Promise<ErasureReceipt> {
    const ledger = this.ledgerStorage();
    const { tenantId, reason } = this.checkOptions(options);
    const ref = { tenantId, sessionId: checkId(sessionId, 'sessionId') };
    const row = await this.storage.read(ref, (scope) => scope.session.find());
    if (!row) {
      throw new SessionNotFoundError(
        `Tenant '${tenantId}' has no session '${ref.sessionId}'; nothing was erased`,
      );
    }
    // Prepared first: with no actor where one is required, nothing is touched.
    const event = await this.audit?.prepare('session.erase', { ...ref, subjectId: row.subjectId });
    const held = await this.holds.covering(ref, row.subjectId);
    if (held.length > 0 || row.legalHold) {
      await event?.denied('LEGAL_HOLD');
      throw new LegalHoldError(
        `Session '${ref.sessionId}' cannot be erased: ${held.length > 0 ? `legal hold ${held[0].holdId} covers it; release the hold first` : "its row is flagged legal_hold; clear the host's flag first"}. Nothing was erased`,
      );
    }
    return this.erase(
      ledger,
      {
        tenantId,
        scope: 'session',
        subjectRef:
          row.subjectId === null ? null : await this.subjectRefOf(tenantId, row.subjectId),
        refs: [ref],
        reason,
        subjectId: row.subjectId,
        actor: actorOf(event),
      },
      undefined,
    );
  }

  /**
   * Erases again whatever the ledger says was erased: after a backup is restored, the keys
   * and items the restore brought back. Only the keys a receipt names are destroyed (a session
   * id reused since keeps its new keys), and items sealed under them deleted. Pending entries
   * (an erasure cut off part-way) are finished. Signed receipts are checked first against the
   * audit checkpoint key; a receipt that does not verify stops the replay before it changes
   * anything of it.
   *
   * @throws IntegrityError for a receipt whose signature does not hold.
   */
  async replayLedger(options: ReplayErasureOptions = {}): Promise<ErasureReplayReport> {
    const totals = {
      entries: 0,
      sessionsErased: 0,
      keysDestroyed: 0,
      itemsDeleted: 0,
      completed: 0,
    };
    const source = options.receipts
      ? this.checkedReceipts(options.receipts)
      : this.storedEntries(this.ledgerStorage());
    for await (const entry of source) {
      totals.entries++;
      if ('pending' in entry) {
        await this.finishPending(entry.pending, totals);
        continue;
      }
      const receipt = entry.receipt;
      for (const sessionId of receipt.sessionIds) {
        const ref = { tenantId: receipt.tenantId, sessionId };
        const erased = await this.storage.transaction(ref, (scope) =>
          this.destroyNamedKeys(scope, receipt.dekIds),
        );
        if (erased.keys + erased.items > 0) {
          this.keyRing.forgetSession(ref);
          totals.sessionsErased++;
          totals.keysDestroyed += erased.keys;
          totals.itemsDeleted += erased.items;
          await this.audit?.recordEvent('session.erase', ref, 'success', {
            recordId: receipt.receiptId,
            count: erased.keys,
          });
        }
      }
    }
    logger.log(
      `Erasure ledger replayed: ${totals.entries} entr(ies), ${totals.sessionsErased} session(s) erased again, ${totals.keysDestroyed} key(s) destroyed, ${totals.itemsDeleted} item(s) deleted, ${totals.completed} pending erasure(s) finished`,
    );
    return totals;
  }

  /**
   * Erases the sessions: in one transaction where the storage can span sessions (SQL, memory),
   * else session by session behind a pending ledger entry (Redis). `subjectEvent` is the
   * subject's `subject.erase` event, for a subject's erasure.
   */
  private async erase(
    ledger: ErasureLedgerStorage,
    input: ErasureInput,
    subjectEvent: PendingAuditEvent | undefined,
  ): Promise<ErasureReceipt> {
    const across = this.storage.transactionAcross?.bind(this.storage);
    if (across) return this.eraseInOneUnit(across, input, subjectEvent);
    const receipt = await this.eraseSessionBySession(ledger, input);
    // The sessions' events committed with their keys' destruction; this one sums them up.
    await subjectEvent
      ?.succeededAlone({ recordId: receipt.receiptId, count: receipt.sessions })
      .catch(() => {
        logger.error(
          `The subject.erase event of erasure ${receipt.receiptId} could not be written; each session's session.erase event is on record`,
        );
      });
    return receipt;
  }

  /**
   * Every session of the erasure in one transaction: each one's keys destroyed, items and
   * history marks deleted, subject forgotten and `session.erase` recorded; the subject's
   * `subject.erase` on the tenant's control chain; the ledger entry with the signed receipt.
   * A hold found on any session (after its lock) rolls all of it back: nothing is erased.
   */
  private async eraseInOneUnit(
    across: NonNullable<SessionStorage['transactionAcross']>,
    input: ErasureInput,
    subjectEvent: PendingAuditEvent | undefined,
  ): Promise<ErasureReceipt> {
    const erasureId = uuidv7();
    const audit = this.audit;
    const events: Array<PendingAuditEvent | undefined> = audit
      ? await Promise.all(
          input.refs.map((ref) =>
            audit.prepare('session.erase', { ...ref, subjectId: input.subjectId }),
          ),
        )
      : input.refs.map(() => undefined);
    let receipt: ErasureReceipt;
    try {
      receipt = await across(input.tenantId, input.refs, async (unit) => {
        const now = Date.now();
        const dekIds: string[] = [];
        let items = 0;
        for (const [index, scope] of unit.scopes.entries()) {
          const erased = await this.eraseInScope(scope, erasureId, now);
          if (!erased) continue;
          await events[index]?.appendIn(scope.audit, {
            recordId: erasureId,
            count: erased.dekIds.length,
            keys: { dekIds: erased.dekIds },
          });
          dekIds.push(...erased.dekIds);
          items += erased.items;
        }
        const signed = this.signedReceipt(input, erasureId, dekIds, items, now);
        await subjectEvent?.appendIn(unit.control, { recordId: erasureId, count: signed.sessions });
        if (!unit.erasureLedger) {
          throw new ConfigurationError(
            `The session storage '${this.storage.backend}' offers no erasure ledger inside its multi-session unit`,
          );
        }
        await unit.erasureLedger.insert({
          erasureId,
          tenantId: input.tenantId,
          scope: input.scope,
          subjectRef: input.subjectRef,
          sessionIds: JSON.stringify(input.refs.map((ref) => ref.sessionId)),
          createdAt: now,
          completedAt: now,
          receipt: JSON.stringify(signed),
        });
        return signed;
      });
    } catch (error) {
      const top = subjectEvent ?? events[0];
      if (error instanceof LegalHoldError) await top?.denied('LEGAL_HOLD');
      else await top?.failed(error);
      throw error;
    }
    for (const event of events) event?.committed();
    subjectEvent?.committed();
    for (const ref of input.refs) this.keyRing.forgetSession(ref);
    logger.log(
      `Erasure ${erasureId} (${input.scope}) of tenant '${input.tenantId}' in one transaction: ${receipt.sessions} session(s), ${receipt.keysDestroyed} key(s) destroyed, ${receipt.itemsDeleted} item(s) deleted`,
    );
    return receipt;
  }

  /**
   * Erases the scope's session inside its unit: lock, hold check, keys destroyed, items and
   * history marks deleted, subject forgotten. Undefined when the session is gone.
   *
   * @throws LegalHoldError when a hold covers it (the unit then changes nothing).
   */
  private async eraseInScope(
    scope: SessionWriteScope,
    erasureId: string,
    now: number,
  ): Promise<SessionErased | undefined> {
    if (!(await scope.session.lockForWrite(now))) return undefined;
    const row = await scope.session.find();
    const held = (await scope.holds?.covering()) ?? [];
    if (held.length > 0 || row?.legalHold) {
      throw new LegalHoldError(
        `Erasure ${erasureId} stopped at session '${scope.ref.sessionId}': ${held.length > 0 ? `legal hold ${held[0].holdId} covers it` : 'its row is flagged legal_hold'}; release the hold first`,
      );
    }
    requireErasureWrites(scope, this.storage.backend);
    const dekIds = (await scope.dataKeys.listAll!())
      .filter((key) => key.state !== 'destroyed')
      .map((key) => key.dekId);
    await scope.dataKeys.destroyAll(now);
    const items = await scope.items.deleteAll();
    await scope.historyOperations.deleteAll();
    await scope.session.forgetSubject!();
    return { dekIds, items };
  }

  /** The erasure's receipt, signed with the checkpoint key when there is one. */
  private signedReceipt(
    input: ErasureInput,
    erasureId: string,
    dekIds: string[],
    items: number,
    erasedAt: number,
  ): ErasureReceipt {
    const signer = this.audit?.options.checkpointSigner;
    return signErasureReceipt(
      {
        schema: ERASURE_RECEIPT_SCHEMA,
        receiptId: erasureId,
        tenantId: input.tenantId,
        scope: input.scope,
        subjectRef: input.subjectRef,
        reason: input.reason,
        sessionIds: input.refs.map((ref) => ref.sessionId),
        sessions: input.refs.length,
        keysDestroyed: dekIds.length,
        dekIds,
        itemsDeleted: items,
        erasedAt,
        actor: { type: input.actor.type, id: input.actor.id },
        signingKeyId: signer?.keyId ?? null,
      },
      signer?.privateKey,
    );
  }

  /** Session by session (a storage that cannot span sessions), behind a pending ledger entry. */
  private async eraseSessionBySession(
    ledger: ErasureLedgerStorage,
    input: ErasureInput,
  ): Promise<ErasureReceipt> {
    const erasureId = uuidv7();
    // The intent is on record before any key goes: an erasure cut off part-way is finished by
    // replayErasureLedger(), never forgotten.
    await ledger.insert({
      erasureId,
      tenantId: input.tenantId,
      scope: input.scope,
      subjectRef: input.subjectRef,
      sessionIds: JSON.stringify(input.refs.map((ref) => ref.sessionId)),
      createdAt: Date.now(),
      completedAt: null,
      receipt: null,
    });
    const dekIds: string[] = [];
    let items = 0;
    // Sessions are independent units (their own rows, their own audit chains): a few at a
    // time, so a server backend's round trips overlap. Results stay in session order.
    for (let start = 0; start < input.refs.length; start += ERASE_CONCURRENCY) {
      const erased = await Promise.all(
        input.refs
          .slice(start, start + ERASE_CONCURRENCY)
          .map((ref) => this.eraseOne(ref, erasureId, input.subjectId)),
      );
      for (const one of erased) {
        dekIds.push(...one.dekIds);
        items += one.items;
      }
    }
    const erasedAt = Date.now();
    const receipt = this.signedReceipt(input, erasureId, dekIds, items, erasedAt);
    await ledger.complete(erasureId, erasedAt, JSON.stringify(receipt));
    logger.log(
      `Erasure ${erasureId} (${input.scope}) of tenant '${input.tenantId}': ${receipt.sessions} session(s), ${receipt.keysDestroyed} key(s) destroyed, ${items} item(s) deleted`,
    );
    return receipt;
  }

  /**
   * Erases one session in one unit of work: its keys destroyed, its items and history marks
   * deleted, its subject forgotten, and its `session.erase` event, all or nothing. A hold
   * placed meanwhile is seen here (after the session lock) and stops the erasure.
   */
  private async eraseOne(
    ref: SessionRef,
    erasureId: string,
    subjectId: string | null,
  ): Promise<SessionErased> {
    const event = await this.audit?.prepare('session.erase', { ...ref, subjectId });
    try {
      const erased = await this.storage.transaction(ref, async (scope) => {
        const done = await this.eraseInScope(scope, erasureId, Date.now());
        if (!done) return { dekIds: [], items: 0 };
        await event?.appendIn(scope.audit, {
          recordId: erasureId,
          count: done.dekIds.length,
          keys: { dekIds: done.dekIds },
        });
        return done;
      });
      event?.committed();
      this.keyRing.forgetSession(ref);
      return erased;
    } catch (error) {
      await event?.failed(error);
      throw error;
    }
  }

  /** Destroys the named keys of the session still alive, and deletes the items sealed by them. */
  private async destroyNamedKeys(
    scope: SessionWriteScope,
    dekIds: readonly string[],
  ): Promise<{ keys: number; items: number }> {
    if (!(await scope.session.find())) return { keys: 0, items: 0 };
    const named = new Set(dekIds);
    requireErasureWrites(scope, this.storage.backend);
    const keys = await scope.dataKeys.destroyByIds!([...named], Date.now());
    const seqs: number[] = [];
    for (let afterSeq = 0; ;) {
      const page = await scope.items.listVisiblePage(0, afterSeq, Number.MAX_SAFE_INTEGER, 1000);
      for (const item of page) if (named.has(item.dekId)) seqs.push(item.seq);
      if (page.length < 1000) break;
      afterSeq = page.at(-1)!.seq;
    }
    const items = seqs.length > 0 ? await scope.items.deleteBySeq(seqs) : 0;
    // The restored rows name the subject again; they lose it unless the session lives on
    // under keys of its own made after the erasure.
    const live = (await scope.dataKeys.listAll!()).filter((key) => key.state !== 'destroyed');
    if (live.length === 0) await scope.session.forgetSubject!();
    return { keys, items };
  }

  /** Finishes an erasure cut off part-way: erases its sessions, then completes its entry. */
  private async finishPending(
    entry: ErasureLedgerRecord,
    totals: {
      sessionsErased: number;
      keysDestroyed: number;
      itemsDeleted: number;
      completed: number;
    },
  ): Promise<void> {
    const sessionIds = JSON.parse(entry.sessionIds) as string[];
    const refs = sessionIds.map((sessionId) => ({ tenantId: entry.tenantId, sessionId }));
    const dekIds: string[] = [];
    let items = 0;
    for (const ref of refs) {
      const erased = await this.eraseOne(ref, entry.erasureId, null);
      if (erased.dekIds.length + erased.items > 0) totals.sessionsErased++;
      dekIds.push(...erased.dekIds);
      items += erased.items;
    }
    totals.keysDestroyed += dekIds.length;
    totals.itemsDeleted += items;
    const erasedAt = Date.now();
    const receipt = this.signedReceipt(
      {
        tenantId: entry.tenantId,
        scope: entry.scope,
        subjectRef: entry.subjectRef,
        refs,
        reason: 'other',
        subjectId: null,
        actor: actorOf(undefined),
      },
      entry.erasureId,
      dekIds,
      items,
      erasedAt,
    );
    if (await this.ledgerStorage().complete(entry.erasureId, erasedAt, JSON.stringify(receipt))) {
      totals.completed++;
    }
  }

  /** The storage's own ledger: pending entries to finish, completed ones as receipts. */
  private async *storedEntries(
    ledger: ErasureLedgerStorage,
  ): AsyncGenerator<{ pending: ErasureLedgerRecord } | { receipt: ErasureReceipt }> {
    for (let after = ''; ;) {
      const page = await ledger.list(after, LEDGER_PAGE);
      for (const entry of page) {
        yield entry.receipt === null
          ? { pending: entry }
          : { receipt: this.checkedReceipt(JSON.parse(entry.receipt) as ErasureReceipt) };
      }
      if (page.length < LEDGER_PAGE) return;
      after = page.at(-1)!.erasureId;
    }
  }

  private async *checkedReceipts(
    receipts: Iterable<ErasureReceipt | string> | AsyncIterable<ErasureReceipt | string>,
  ): AsyncGenerator<{ receipt: ErasureReceipt }> {
    for await (const value of receipts) {
      const receipt = typeof value === 'string' ? parseReceipt(value) : value;
      yield { receipt: this.checkedReceipt(receipt) };
    }
  }

  /** The receipt when its shape holds and, where a key can tell, its signature too. */
  private checkedReceipt(receipt: ErasureReceipt): ErasureReceipt {
    if (
      receipt === null ||
      typeof receipt !== 'object' ||
      receipt.schema !== ERASURE_RECEIPT_SCHEMA ||
      typeof receipt.tenantId !== 'string' ||
      !Array.isArray(receipt.sessionIds) ||
      !Array.isArray(receipt.dekIds)
    ) {
      throw new InvalidArgumentError(
        `An erasure receipt to replay must be a ${ERASURE_RECEIPT_SCHEMA} receipt as eraseSubject() or eraseSession() returned it`,
      );
    }
    const publicKey = this.audit?.options.checkpointSigner?.publicKey;
    if (publicKey && (receipt.signature !== null || receipt.signingKeyId !== null)) {
      if (!verifyErasureReceipt(receipt, publicKey)) {
        throw new IntegrityError(
          `Erasure receipt ${receipt.receiptId} does not verify under the audit checkpoint key: it was altered or signed by another key. The replay stopped; nothing of that receipt was erased again`,
        );
      }
    }
    return receipt;
  }

  /** The tenant's active holds on any of `refs` (one read of the tenant's holds, not one each). */
  private async heldAmong(refs: readonly SessionRef[], subjectId: string) {
    if (refs.length === 0) return [];
    const sessionIds = new Set(refs.map((ref) => ref.sessionId));
    return (await this.holds.activeInTenant(refs[0].tenantId)).filter(
      (hold) =>
        (hold.sessionId !== null && sessionIds.has(hold.sessionId)) || hold.subjectId === subjectId,
    );
  }

  private async subjectRefOf(tenantId: string, subjectId: string): Promise<string | null> {
    if (!this.audit) return null;
    return subjectRef(await this.audit.keyring.pseudonymKey(), tenantId, subjectId);
  }

  private checkOptions(options: EraseOptions): { tenantId: string; reason: ErasureReason } {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError(
        "An erasure takes options { tenantId?, reason }, e.g. { reason: 'subject-request' }",
      );
    }
    return {
      tenantId: checkId(options.tenantId ?? this.defaultTenantId, 'tenantId'),
      reason: checkErasureReason(options.reason),
    };
  }

  private ledgerStorage(): ErasureLedgerStorage {
    if (!this.storage.erasureLedger) {
      throw new ConfigurationError(
        `The session storage '${this.storage.backend}' keeps no erasure ledger, so nothing can be erased on it with a receipt; use one of the module's stores`,
      );
    }
    return this.storage.erasureLedger;
  }
}

/** ConfigurationError naming the adapter, unless its units of work can erase. */
function requireErasureWrites(scope: SessionWriteScope, backend: string): void {
  if (!scope.session.forgetSubject || !scope.dataKeys.listAll || !scope.dataKeys.destroyByIds) {
    throw new ConfigurationError(
      `The session storage '${backend}' cannot erase (its units of work lack forgetSubject, listAll or destroyByIds); use one of the module's stores`,
    );
  }
}

/** Who erased: the event's actor, the context's, or the module itself. */
function actorOf(event: PendingAuditEvent | undefined): {
  readonly type: string;
  readonly id: string;
} {
  const actor = event?.actor ?? currentAuditContext()?.actor;
  return actor ? { type: actor.type, id: actor.id } : { type: 'system', id: 'unattributed' };
}

function parseReceipt(text: string): ErasureReceipt {
  try {
    return JSON.parse(text) as ErasureReceipt;
  } catch {
    throw new InvalidArgumentError(
      'An erasure receipt line is not JSON; pass the receipts as eraseSubject() returned them (one JSON object per line in a ledger file)',
    );
  }
}
