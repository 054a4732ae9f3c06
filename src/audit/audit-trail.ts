import type { KeyObject } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { AuditActorRequiredError, EncryptedSessionError, IntegrityError } from '../errors/index.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  AuditChainWrites,
  AuditStorage,
  StoredAuditRecord,
} from '../storage/index.js';
import {
  AUDIT_MAC_LENGTH,
  GENESIS_PREV_MAC,
  bodyDigest,
  bodyJsonOf,
  chainMac,
  sessionChainId,
  tenantChainId,
} from './audit-chain.js';
import { currentAuditContext, runAs } from './audit-context.js';
import {
  AUDIT_REASONS,
  buildAuditEvent,
  type AuditAction,
  type AuditActor,
  type AuditEvent,
  type AuditEventBody,
  type AuditKeys,
  type AuditOutcome,
  type AuditReason,
  type AuditSource,
} from './audit-event.js';
import type { AuditKeyring, AuditMacKey } from './audit-keys.js';
import type { CheckpointSigner } from './checkpoints.js';
import { subjectRef } from './subject-ref.js';

// Ids, counts and codes only: never an event body's identifiers beyond the chain id.
const logger = new Logger('AuditTrail');

/**
 * How the trail records reads: every read's event committed before the read returns, concurrent
 * reads of a session sharing one commit (`'group-commit'`), or at most one event per actor,
 * session and window of that many seconds (`{ dedupeWindowSeconds }`).
 *
 * @publicApi
 */
export type AuditReadsPolicy = 'group-commit' | { readonly dedupeWindowSeconds: number };

/** What {@link AuditTrail} is configured with. */
export interface AuditTrailOptions {
  /** Refuse an operation that runs with no actor, before it touches anything. */
  readonly requireActor: boolean;
  readonly reads: AuditReadsPolicy;
  /** Sessions whose read de-duplication is remembered, per process. @default 10_000 */
  readonly dedupeMaxEntries?: number;
  /** Maps a request to the actor of what it does (`AuditActorMiddleware`). */
  readonly actorFromRequest?: (request: unknown) => AuditActor | undefined;
  /** Signs checkpoints; without it there are none. */
  readonly checkpointSigner?: CheckpointSigner;
  /** Maps an agent run's `runContext.context` to the actor of the run's session calls. */
  readonly actorFromRunContext?: (context: unknown) => AuditActor | undefined;
}

/** What an event is about: a session (its chain) or, with no session, the tenant's control chain. */
export interface AuditSubjectTarget {
  readonly tenantId: string;
  readonly sessionId?: string;
  /** The raw subject id; only its keyed reference reaches the trail. */
  readonly subjectId?: string | null;
}

/** Injection token of the module's {@link AuditTrail}; absent when the trail is off. */
export const AUDIT_TRAIL = Symbol('AUDIT_TRAIL');

/** The actor recorded when none is known and none is required: the module itself, unnamed. */
const UNATTRIBUTED_ACTOR_ID = 'unattributed';

/** The reason code of a failure: the module's own error code, or `UNEXPECTED`. */
export function auditReasonOf(error: unknown): AuditReason {
  if (error instanceof AuditActorRequiredError) return 'ACTOR_REQUIRED';
  if (error instanceof EncryptedSessionError) {
    const code = error.code as string;
    if ((AUDIT_REASONS as readonly string[]).includes(code)) return code as AuditReason;
  }
  return 'UNEXPECTED';
}

/** The chain an event about `target` joins. */
export function auditChainOf(target: AuditSubjectTarget): AuditChainRef {
  return target.sessionId === undefined
    ? { chainId: tenantChainId(target.tenantId), tenantId: target.tenantId, sessionId: null }
    : {
        chainId: sessionChainId(target.tenantId, target.sessionId),
        tenantId: target.tenantId,
        sessionId: target.sessionId,
      };
}

/** An event sealed for storage: the record as stored and the event as sinks receive it. */
interface SealedEvent {
  readonly stored: StoredAuditRecord;
  readonly event: AuditEvent;
}

/**
 * Seals `body` as the record after `head` on `chain`: the MAC over the exact canonical JSON
 * that is stored, so a verifier hashes the stored bytes and nothing is canonicalised twice.
 */
function sealAfter(
  body: AuditEventBody,
  chain: AuditChainRef,
  head: Pick<AuditChainHeadRecord, 'seq' | 'mac'> | undefined,
  macKey: AuditMacKey,
): SealedEvent {
  const bodyJson = bodyJsonOf(body);
  const seq = (head?.seq ?? 0) + 1;
  const prevMac = head?.mac ?? GENESIS_PREV_MAC;
  if (prevMac.length !== AUDIT_MAC_LENGTH) {
    throw new IntegrityError(
      `The head of audit chain '${chain.chainId}' holds a MAC of the wrong length: it was edited outside the module. Verify the audit trail; nothing was changed`,
    );
  }
  const mac = chainMac(macKey.key, {
    chainId: chain.chainId,
    seq,
    prevMac,
    macKeyId: macKey.keyId,
    eventDigest: bodyDigest(bodyJson),
  });
  return {
    stored: {
      chainId: chain.chainId,
      seq,
      tenantId: chain.tenantId,
      sessionId: chain.sessionId,
      eventId: body.eventId,
      time: body.time,
      action: body.action,
      outcome: body.outcome,
      actorId: body.actor.id,
      subjectRef: body.target.subjectRef ?? null,
      macKeyId: macKey.keyId,
      prevMac: Buffer.from(prevMac),
      mac,
      body: bodyJson,
    },
    event: {
      ...body,
      chain: {
        chainId: chain.chainId,
        seq,
        prevMac: Buffer.from(prevMac).toString('base64url'),
        macKeyId: macKey.keyId,
        mac: mac.toString('base64url'),
      },
    },
  };
}

/** Appends sealed bodies after the chain's head inside a unit of work; returns the events. */
async function appendAll(
  writes: AuditChainWrites,
  chain: AuditChainRef,
  entries: ReadonlyArray<{ readonly body: AuditEventBody; readonly macKey: AuditMacKey }>,
): Promise<AuditEvent[]> {
  let head: Pick<AuditChainHeadRecord, 'seq' | 'mac'> | undefined = await writes.lockHead(
    chain.chainId,
  );
  const sealed = entries.map(({ body, macKey }) => {
    const next = sealAfter(body, chain, head, macKey);
    head = next.stored;
    return next;
  });
  await writes.append(sealed.map((entry) => entry.stored));
  return sealed.map((entry) => entry.event);
}

/** Reads waiting for one chain's next commit. */
interface ChainBatch {
  readonly chain: AuditChainRef;
  waiting: Array<{
    readonly body: AuditEventBody;
    readonly macKey: AuditMacKey;
    readonly settle: (error?: unknown) => void;
  }>;
}

/**
 * An operation's audit event, prepared before the operation touches anything: the actor is
 * known (or the operation was refused), the subject pseudonymised and the MAC key loaded, so
 * sealing it inside the unit of work needs no await but the chain head.
 */
export class PendingAuditEvent {
  private sealedEvents: AuditEvent[] = [];

  /** @internal */
  constructor(
    private readonly trail: AuditTrail,
    readonly action: AuditAction,
    readonly chain: AuditChainRef,
    readonly actor: AuditActor,
    private readonly source: AuditSource | undefined,
    private subjectReference: string | undefined,
    readonly macKey: AuditMacKey,
    /** Present when the subject is learned inside the unit (`prepare`'s `subjectFromUnit`). */
    private readonly pseudonymKey?: KeyObject,
  ) {}

  /**
   * Names the subject as the unit's own read of the session's row found it (under the
   * session's lock, so it is the subject the change applies to). Only for an event prepared
   * with `subjectFromUnit`; synchronous, so the unit awaits nothing for it.
   */
  setSubject(subjectId: string | null | undefined): void {
    if (!this.pseudonymKey) {
      throw new Error('setSubject: the event was not prepared with subjectFromUnit');
    }
    this.subjectReference =
      subjectId === undefined || subjectId === null
        ? undefined
        : subjectRef(this.pseudonymKey, this.chain.tenantId, subjectId);
  }

  /** The event's body with its outcome, built now (its time and id are the commit's). */
  body(
    outcome: AuditOutcome,
    details: {
      readonly action?: AuditAction;
      readonly reason?: AuditReason;
      readonly count?: number;
      readonly keys?: AuditKeys;
      readonly recordId?: string;
    } = {},
  ): AuditEventBody {
    return buildAuditEvent({
      action: details.action ?? this.action,
      outcome,
      reason: details.reason,
      actor: this.actor,
      source: this.source,
      target: {
        tenantId: this.chain.tenantId,
        sessionId: this.chain.sessionId ?? undefined,
        subjectRef: this.subjectReference,
        count: details.count,
        recordId: details.recordId,
      },
      keys: details.keys,
    });
  }

  /**
   * Seals the success event at the chain's head inside the operation's own unit of work, so it
   * commits with the change or not at all. Run again when the unit runs again (Redis).
   */
  async appendIn(
    writes: AuditChainWrites | undefined,
    details: {
      readonly count?: number;
      readonly keys?: AuditKeys;
      readonly recordId?: string;
    } = {},
    /** Events of the same unit that follow this one (e.g. the keys a clear destroyed). */
    followedBy: ReadonlyArray<{
      readonly action: AuditAction;
      readonly count?: number;
      readonly keys?: AuditKeys;
    }> = [],
  ): Promise<void> {
    if (!writes) {
      throw new Error('The session storage keeps no audit trail, yet the audit trail is on');
    }
    this.sealedEvents = await appendAll(writes, this.chain, [
      { body: this.body('success', details), macKey: this.macKey },
      ...followedBy.map((next) => ({ body: this.body('success', next), macKey: this.macKey })),
    ]);
  }

  /**
   * Commits the success event in a transaction of its own, for an operation whose change is
   * stored apart from any chain (a legal hold, the erasure ledger).
   *
   * @throws the storage's error when the event cannot be written.
   */
  async succeededAlone(
    details: {
      readonly count?: number;
      readonly keys?: AuditKeys;
      readonly recordId?: string;
    } = {},
  ): Promise<void> {
    await this.trail.commitAlone(this.chain, this.body('success', details), this.macKey);
  }

  /** Hands the events of the committed unit to the sinks. Call once the unit committed. */
  committed(): void {
    this.trail.publish(this.sealedEvents);
    this.sealedEvents = [];
  }

  /**
   * Records that the operation failed or was refused, in a transaction of its own (the
   * operation changed nothing). An item that did not open is recorded as an integrity failure.
   * A failure to record it is logged; the operation's own error is what the caller sees.
   */
  async failed(error: unknown): Promise<void> {
    await this.recordAlone(
      this.body('failure', {
        action: error instanceof IntegrityError ? 'session.integrity_failure' : undefined,
        reason: auditReasonOf(error),
      }),
    );
  }

  /** Records that the operation was refused (it changed nothing), in a transaction of its own. */
  async denied(reason: AuditReason, action?: AuditAction): Promise<void> {
    await this.recordAlone(this.body('denied', { action, reason }));
  }

  private async recordAlone(body: AuditEventBody): Promise<void> {
    await this.trail.commitAlone(this.chain, body, this.macKey).catch((recordError: unknown) => {
      logger.error(
        `The audit event of a failed or refused ${this.action} could not be written to chain '${this.chain.chainId}' (${auditReasonOf(recordError)})`,
      );
    });
  }
}

/**
 * The audit trail at work: prepares each operation's event (refusing one with no actor when
 * actors are required), seals events into their chain inside the operation's unit of work, and
 * commits reads', refused and failed attempts' events in units of their own, concurrent ones
 * on a chain together.
 */
export class AuditTrail {
  private readonly batches = new Map<string, ChainBatch>();
  /** Chain and actor -> the dedupe window a read event was last committed in. */
  private readonly readsRecorded: LRUCache<string, number> | undefined;
  private readonly listeners: Array<(events: readonly AuditEvent[]) => void> = [];

  constructor(
    readonly storage: AuditStorage,
    readonly keyring: AuditKeyring,
    readonly options: AuditTrailOptions,
  ) {
    this.readsRecorded =
      typeof options.reads === 'object'
        ? new LRUCache({ max: options.dedupeMaxEntries ?? 10_000 })
        : undefined;
  }

  /**
   * The event of an operation about to start. With no actor in context and actors required,
   * records the refusal (in a transaction of its own) and throws before anything is touched.
   *
   * @throws AuditActorRequiredError
   */
  async prepare(
    action: AuditAction,
    target: AuditSubjectTarget,
    options: {
      /**
       * The subject is read inside the operation's unit (`PendingAuditEvent.setSubject`), not
       * before it: `target.subjectId` is ignored and the pseudonymisation key loaded now.
       */
      readonly subjectFromUnit?: boolean;
    } = {},
  ): Promise<PendingAuditEvent> {
    const pending = await this.unrefusedEvent(
      action,
      options.subjectFromUnit ? { ...target, subjectId: undefined } : target,
      options.subjectFromUnit === true,
    );
    if (!currentAuditContext() && this.options.requireActor) {
      const refusal = new AuditActorRequiredError(
        `${action} was refused: it ran with no actor, and the audit trail requires one. Run it inside runAs(actor, ...), or enable the module's actor middleware for requests`,
      );
      await this.commitAlone(
        pending.chain,
        pending.body('denied', { action: 'access.denied', reason: 'ACTOR_REQUIRED' }),
        pending.macKey,
      );
      throw refusal;
    }
    return pending;
  }

  /** An event of `action` about `target`, as the context's actor or the unattributed one. */
  private async unrefusedEvent(
    action: AuditAction,
    target: AuditSubjectTarget,
    subjectFromUnit = false,
  ): Promise<PendingAuditEvent> {
    const context = currentAuditContext();
    const chain = auditChainOf(target);
    const macKey = await this.keyring.currentMacKey();
    const reference =
      target.subjectId === undefined || target.subjectId === null
        ? undefined
        : subjectRef(await this.keyring.pseudonymKey(), target.tenantId, target.subjectId);
    const actor: AuditActor = context?.actor ?? {
      type: 'system',
      id: UNATTRIBUTED_ACTOR_ID,
      tenantId: target.tenantId,
    };
    return new PendingAuditEvent(
      this,
      action,
      chain,
      actor,
      context?.source,
      reference,
      macKey,
      subjectFromUnit ? await this.keyring.pseudonymKey() : undefined,
    );
  }

  /**
   * Records an event the module itself notices (a provider outage, a rewrap batch) in a unit of
   * its own: never refused for want of an actor (the context's, else the unattributed system
   * actor).
   */
  async recordEvent(
    action: AuditAction,
    target: AuditSubjectTarget,
    outcome: AuditOutcome,
    details: {
      readonly reason?: AuditReason;
      readonly count?: number;
      readonly keys?: AuditKeys;
      readonly recordId?: string;
    } = {},
  ): Promise<void> {
    const pending = await this.unrefusedEvent(action, target);
    await this.commitAlone(pending.chain, pending.body(outcome, details), pending.macKey);
  }

  /**
   * Records a read before its data is returned: committed together with the other reads of the
   * chain waiting at that moment (group commit), or skipped when the same actor's read of the
   * session is already recorded in the current de-duplication window.
   */
  async recordRead(pending: PendingAuditEvent, count: number): Promise<void> {
    // Only reads are de-duplicated: a pop that found nothing is always on record.
    const dedupeKey =
      this.readsRecorded && pending.action === 'session.read'
        ? this.dedupeKeyOf(pending)
        : undefined;
    const window = this.currentWindow();
    if (dedupeKey !== undefined && this.readsRecorded!.get(dedupeKey) === window) return;
    await this.commitAlone(pending.chain, pending.body('success', { count }), pending.macKey);
    if (dedupeKey !== undefined) this.readsRecorded!.set(dedupeKey, window);
  }

  /**
   * Commits one event in a unit of its own, with whatever other events of the chain are
   * waiting: the first caller starts a commit, callers arriving meanwhile join the next one.
   */
  commitAlone(chain: AuditChainRef, body: AuditEventBody, macKey: AuditMacKey): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: unknown) => (error === undefined ? resolve() : reject(error));
      const batch = this.batches.get(chain.chainId);
      if (batch) {
        batch.waiting.push({ body, macKey, settle });
        return;
      }
      const started: ChainBatch = { chain, waiting: [{ body, macKey, settle }] };
      this.batches.set(chain.chainId, started);
      void this.drain(started);
    });
  }

  /**
   * Runs `work` as the actor an agent run's context names (`options.actorFromRunContext`), or
   * as it is when there is no run context, no resolver, or the resolver names no one.
   */
  withRunContext<T>(runContext: { readonly context: unknown } | undefined, work: () => T): T {
    const resolve = this.options.actorFromRunContext;
    if (!runContext || !resolve) return work();
    const actor = resolve(runContext.context);
    return actor ? runAs(actor, work, currentAuditContext()?.source) : work();
  }

  /** Subscribes to committed events (the sinks). */
  onCommitted(listener: (events: readonly AuditEvent[]) => void): void {
    this.listeners.push(listener);
  }

  /** Tenants with events committed since {@link takeTenantsSeen} last ran. */
  private tenantsSeen = new Set<string>();

  /** The tenants whose trail changed since the last call (for timed checkpoints). */
  takeTenantsSeen(): string[] {
    const seen = [...this.tenantsSeen];
    this.tenantsSeen = new Set();
    return seen;
  }

  /** @internal Hands committed events to the sinks; a failing sink never fails the caller. */
  publish(events: readonly AuditEvent[]): void {
    if (events.length === 0) return;
    for (const event of events) this.tenantsSeen.add(event.target.tenantId);
    for (const listener of this.listeners) {
      try {
        listener(events);
      } catch {
        logger.warn('An audit sink threw while receiving committed events; they stay stored');
      }
    }
  }

  /** Commits the batch's waiting events, then those that arrived meanwhile, until none wait. */
  private async drain(batch: ChainBatch): Promise<void> {
    while (batch.waiting.length > 0) {
      const taken = batch.waiting;
      batch.waiting = [];
      try {
        const events = await this.storage.transaction(batch.chain, (writes) =>
          appendAll(writes, batch.chain, taken),
        );
        for (const entry of taken) entry.settle();
        this.publish(events);
      } catch (error) {
        for (const entry of taken) entry.settle(error ?? new Error('audit commit failed'));
      }
    }
    this.batches.delete(batch.chain.chainId);
  }

  private dedupeKeyOf(pending: PendingAuditEvent): string {
    const { actor } = pending;
    return JSON.stringify([pending.chain.chainId, actor.type, actor.id, actor.onBehalfOf ?? null]);
  }

  private currentWindow(): number {
    const reads = this.options.reads;
    return typeof reads === 'object'
      ? Math.floor(Date.now() / (reads.dedupeWindowSeconds * 1000))
      : 0;
  }
}
