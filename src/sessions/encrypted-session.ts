import type {
  AgentInputItem,
  RunContext,
  RunContextAwareSession,
  SessionHistoryTransactionArgs,
  SessionHistoryTransactionAwareSession,
} from '@openai/agents-core';
import { InvalidArgumentError } from '../errors/index.js';
import type { AuditTrail } from '../audit/index.js';
import type { KeyRing } from '../keys/index.js';
import type { SessionRef, SessionStorage, WorkInFlight } from '../storage/index.js';
import { encodeSessionItems, snapshotHistoryTransaction } from './history-transaction.js';
import { itemCipherFor } from './item-cipher.js';
import { SessionReader } from './session-reader.js';
import { SessionWriter } from './session-writer.js';

/** What an {@link EncryptedSession} is built from; `EncryptedSessionService.open` fills it in. */
export interface EncryptedSessionContext {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly subjectId: string | null;
  /** Items appended through this handle expire this many seconds after writing; null = never. */
  readonly itemTtlSeconds: number | null;
  readonly storage: SessionStorage;
  readonly keyRing: KeyRing;
  /** Largest encoded size of one item in bytes; larger ones are refused. @default 4 MiB */
  readonly maxItemBytes?: number;
  /** Epoch ms now. @default Date.now */
  readonly clock?: () => number;
  /**
   * Counts this handle's calls so that shutdown waits for them and refuses new ones
   * (`EncryptedSessionService` passes its own). @default not counted
   */
  readonly calls?: WorkInFlight;
  /** The module's audit trail: every call is recorded in the session's chain. @default off */
  readonly audit?: AuditTrail;
}

/**
 * An `@openai/agents` `Session` whose items are encrypted at rest: each item is sealed with
 * AES-256-GCM under the session's data key and bound to its tenant, session, position and
 * expiry. Pass it wherever a Session is accepted: `run(agent, input, { session })`.
 *
 * Reads fail closed and never delete: an item that does not authenticate raises
 * `IntegrityError`, a destroyed key `KeyDestroyedError`, an unreachable provider
 * `KeyProviderUnavailableError`. Expired items are invisible at once.
 *
 * @publicApi
 */
export class EncryptedSession
  implements SessionHistoryTransactionAwareSession, RunContextAwareSession
{
  /**
   * The agents Runner passes each call its run context: the audit trail records the actor
   * `options.audit.actorFromRunContext` maps it to.
   */
  readonly acceptsRunContext = true;
  private readonly ref: SessionRef;
  private readonly audit: AuditTrail | undefined;
  private readonly maxItemBytes: number | undefined;
  // Arguments are checked here; the reader and the writer get them checked and encoded.
  private readonly reader: SessionReader;
  private readonly writer: SessionWriter;
  private readonly calls: WorkInFlight | undefined;

  constructor(context: EncryptedSessionContext) {
    this.ref = { tenantId: context.tenantId, sessionId: context.sessionId };
    this.maxItemBytes = context.maxItemBytes;
    this.calls = context.calls;
    this.audit = context.audit;
    const shared = {
      ref: this.ref,
      storage: context.storage,
      keyRing: context.keyRing,
      cipher: itemCipherFor(context),
      now: context.clock ?? Date.now,
      subjectId: context.subjectId,
      audit: context.audit,
    };
    this.reader = new SessionReader(shared);
    this.writer = new SessionWriter(
      { ...shared, itemTtlSeconds: context.itemTtlSeconds },
      this.reader,
    );
  }

  /** The session id given to `open`. */
  async getSessionId(): Promise<string> {
    return this.ref.sessionId;
  }

  /** The tenant the session belongs to. */
  get tenantId(): string {
    return this.ref.tenantId;
  }

  /**
   * The newest `limit` visible items in chronological order.
   *
   * @param limit `undefined` returns every visible item; `0` returns none; a positive integer
   *   returns at most that many (the newest). Anything else throws `InvalidArgumentError`.
   *   Cost depends on `limit`, not on how much older history has expired.
   */
  async getItems(limit?: number, runContext?: RunContext): Promise<AgentInputItem[]> {
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new InvalidArgumentError(
        `getItems(limit) takes a non-negative integer or nothing (all items); got ${String(limit)}`,
      );
    }
    if (limit === 0) return [];
    return this.counted(() => this.reader.getItems(limit), runContext);
  }

  /**
   * Appends items in one transaction with one batched insert. Nothing is stored if any item
   * could not be returned exactly as given or is over `maxItemBytes` (`InvalidArgumentError`).
   */
  async addItems(items: AgentInputItem[], runContext?: RunContext): Promise<void> {
    const encoded = encodeSessionItems(items, 'addItems', this.maxItemBytes);
    await this.counted(() => this.writer.addItems(encoded), runContext);
  }

  /**
   * Removes and returns the newest visible item, or undefined when there is none. An item
   * that cannot be opened is neither returned nor deleted: the error is thrown.
   */
  async popItem(runContext?: RunContext): Promise<AgentInputItem | undefined> {
    return this.counted(() => this.writer.popItem(), runContext);
  }

  /**
   * Deletes every item and applied-operation record of the session and destroys its data keys,
   * so no copy of an old ciphertext can ever be opened again. The next write starts a new key.
   */
  async clearSession(runContext?: RunContext): Promise<void> {
    await this.counted(() => this.writer.clearSession(), runContext);
  }

  /**
   * Applies an agents-core history transaction atomically and at most once per operation id:
   * repeating an id with the same transaction succeeds without applying it again; reusing it
   * with a different transaction, or a suffix that no longer matches, throws
   * `HistoryConflictError` and changes nothing.
   */
  async applyHistoryTransaction(args: SessionHistoryTransactionArgs): Promise<void> {
    const { operationId, transaction } = snapshotHistoryTransaction(args, this.maxItemBytes);
    await this.counted(() => this.writer.applyHistoryTransaction(operationId, transaction));
  }

  /**
   * Runs a call that reaches keys or storage: counted for shutdown when a counter was given, and
   * as the actor of the agent run that made it, when one is known.
   */
  private counted<T>(call: () => Promise<T>, runContext?: RunContext): Promise<T> {
    const asActor = this.audit ? () => this.audit!.withRunContext(runContext, call) : call;
    return this.calls ? this.calls.run(asActor) : asActor();
  }
}
