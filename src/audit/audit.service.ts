import type { KeyObject } from 'node:crypto';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import {
  ConfigurationError,
  EncryptedSessionError,
  InvalidArgumentError,
} from '../errors/index.js';
import { runAsBackgroundWork, type AuditChainRef } from '../storage/index.js';
import { parseChainId } from './audit-chain.js';
import { runAs } from './audit-context.js';
import { AUDIT_TRAIL, AuditTrail, auditChainOf } from './audit-trail.js';
import type { AuditCheckpoint, ChainHead } from './checkpoint.js';
import {
  chainRefOfId,
  checkedCheckpoint,
  takeCheckpoint,
  tenantHeads,
  type CheckpointCheck,
  type CheckpointSigner,
} from './checkpoints.js';
import { verifyChain, type ChainVerification } from './chain-verifier.js';
import { MacCheckPool } from './mac-check-pool.js';
import type { AuditActor, AuditEvent, AuditEventBody } from './audit-event.js';
import { auditRecordFromStored, chainPages } from './stored-records.js';
import { subjectRef } from './subject-ref.js';
import { AUDIT_SINK, type AuditSinkStats, type WinstonAuditSink } from './winston-sink.js';

/**
 * What {@link AuditService.verify} checks: one chain (`chainId`, optionally a seq range), or
 * every chain of a tenant (`tenantId`).
 *
 * @publicApi
 */
export interface AuditVerifyOptions {
  readonly chainId?: string;
  readonly tenantId?: string;
  /**
   * With `tenantId`: the tenant's latest checkpoint as a sink outside the database recorded it
   * (e.g. the last `nes.audit.checkpoint` line of the winston file). It catches what the
   * database alone cannot show: its newest checkpoints deleted, or its chains rewritten by
   * someone holding the MAC key. @default the database's latest checkpoint
   */
  readonly checkpoint?: AuditCheckpoint;
  /** First seq to verify (the record before it is trusted). @default 1 */
  readonly fromSeq?: number;
  /** Last seq to verify. @default the chain's end */
  readonly toSeq?: number;
}

/**
 * The outcome of {@link AuditService.verify}: `ok` when every chain verified, else the first
 * break of each broken chain.
 *
 * @publicApi
 */
export interface AuditVerification {
  readonly ok: boolean;
  readonly chains: readonly ChainVerification[];
  /**
   * With `tenantId` and checkpoints configured: the checkpoint the chains were measured
   * against (a chain shorter than its checkpointed head is `truncated`, a chain it lists that
   * has no records `missing`, one whose record at that head differs `checkpoint_mismatch`).
   */
  readonly checkpoint?: CheckpointCheck;
}

/**
 * What {@link AuditService.accessReport} lists: one tenant's events about exactly one of a
 * session, a subject (its raw id, turned into the trail's pseudonymous reference here) or an
 * actor, with `from <= time < to`.
 *
 * @publicApi
 */
export interface AccessReportQuery {
  readonly tenantId: string;
  readonly sessionId?: string;
  readonly subjectId?: string;
  readonly actorId?: string;
  readonly from: Date | number;
  readonly to: Date | number;
  /** Events per page, 1-1000. @default 100 */
  readonly limit?: number;
  /** `nextCursor` of the previous page. */
  readonly cursor?: string;
}

/**
 * One page of an access report, oldest first.
 *
 * @publicApi
 */
export interface AccessReportPage {
  readonly events: readonly AuditEvent[];
  /** Pass as `cursor` for the next page; absent on the last. */
  readonly nextCursor?: string;
}

const MAX_REPORT_PAGE = 1000;

// Tenant ids and error codes only.
const logger = new Logger('AuditService');

/**
 * The audit trail for hosts and operators: verification today (checkpoints, access reports and
 * the command line build on it). Injectable from `EncryptedSessionModule`.
 *
 * @publicApi
 */
@Injectable()
export class AuditService {
  private readonly trail: AuditTrail | undefined;

  private readonly sink: WinstonAuditSink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    @Optional() @Inject(AUDIT_TRAIL) trail?: AuditTrail | null,
    @Optional() @Inject(AUDIT_SINK) sink?: WinstonAuditSink | null,
  ) {
    this.trail = trail ?? undefined;
    this.sink = sink ?? undefined;
  }

  /**
   * How the winston copy of the trail has fared: events handed over, and transport failures
   * (counted, each also logged as a warning). Undefined when no winston sink is configured.
   */
  sinkStats(): AuditSinkStats | undefined {
    return this.sink?.stats();
  }

  /**
   * The actor `options.audit.actorFromRequest` names for a request, or undefined (no resolver,
   * no actor, or the trail is off).
   */
  actorOfRequest(request: unknown): AuditActor | undefined {
    return this.trail?.options.actorFromRequest?.(request);
  }

  /** Whether the module records an audit trail (`options.audit.enabled`). */
  get enabled(): boolean {
    return this.trail !== undefined;
  }

  /**
   * Verifies chains from storage, page by page in constant memory, and names the first break of
   * each: a gap (deleted record), a record that does not follow the one before it (inserted,
   * reordered, rewritten), an edited record (MAC mismatch), a record spliced from another
   * chain, or a MAC key the trail does not know. The verification itself is recorded
   * (`audit.verify`, on the tenant's control chain).
   *
   * @throws InvalidArgumentError for a chain id this module never writes, or neither id given.
   * @throws ConfigurationError when the audit trail is off.
   */
  async verify(options: AuditVerifyOptions): Promise<AuditVerification> {
    const trail = this.requireTrail();
    const chains = this.chainsToVerify(options);
    const event = await trail.prepare('audit.verify', { tenantId: chains.tenantId });
    const results: ChainVerification[] = [];
    let checkpoint: CheckpointCheck | undefined;
    const threads = new LazyMacCheckPool();
    try {
      const measured = await this.checkpointFor(options);
      checkpoint = measured?.check;
      const seen = new Set<string>();
      for await (const { chain, headSeq } of chains.refs) {
        seen.add(chain.chainId);
        const checkpointed = measured?.heads?.get(chain.chainId);
        results.push(await this.verifyOne(chain, options, threads, headSeq, checkpointed));
      }
      // Chains the checkpoint lists that storage no longer has a head for: deleted whole.
      for (const [chainId, head] of measured?.heads ?? []) {
        if (seen.has(chainId)) continue;
        const chain = chainRefOfId(chains.tenantId, chainId);
        results.push(await this.verifyOne(chain, options, threads, 0, head));
      }
    } catch (error) {
      await event.failed(error);
      throw error;
    } finally {
      await threads.close();
    }
    const ok = results.every((result) => result.ok) && (checkpoint?.ok ?? true);
    const body = event.body(ok ? 'success' : 'failure', {
      count: results.length,
      ...(ok ? {} : { reason: 'INTEGRITY' as const }),
    });
    await trail.commitAlone(event.chain, body, event.macKey);
    return checkpoint ? { ok, chains: results, checkpoint } : { ok, chains: results };
  }

  /**
   * Takes a signed checkpoint of the tenant's trail now (the Merkle root over every chain head,
   * linked to the previous checkpoint), stores it and hands a copy to the winston sink. Recorded
   * as `audit.checkpoint` on the tenant's control chain.
   *
   * @throws ConfigurationError when no `audit.checkpoints.privateKey` is configured, or the
   *   storage keeps no checkpoints.
   */
  async checkpoint(options: { readonly tenantId: string }): Promise<AuditCheckpoint> {
    const trail = this.requireTrail();
    const signer = this.requireSigner();
    if (typeof options?.tenantId !== 'string' || options.tenantId.length === 0) {
      throw new InvalidArgumentError('checkpoint: tenantId must be a non-empty string');
    }
    const event = await trail.prepare('audit.checkpoint', { tenantId: options.tenantId });
    let checkpoint: AuditCheckpoint;
    try {
      checkpoint = await takeCheckpoint(trail.storage, signer, options.tenantId);
    } catch (error) {
      await event.failed(error);
      throw error;
    }
    await trail.commitAlone(
      event.chain,
      event.body('success', { count: checkpoint.chains }),
      event.macKey,
    );
    this.sink?.writeCheckpoint(checkpoint);
    return checkpoint;
  }

  /**
   * The public key auditors verify checkpoints with, and its id, or undefined when checkpoints
   * are not configured. Hand it to them once; it verifies every checkpoint offline.
   */
  checkpointPublicKey(): { readonly keyId: string; readonly pem: string } | undefined {
    const signer = this.trail?.options.checkpointSigner;
    return (
      signer && {
        keyId: signer.keyId,
        pem: signer.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      }
    );
  }

  /**
   * Checkpoints every tenant whose trail changed since the last run, as the system actor: what
   * the module's timer (`audit.checkpoints.everySeconds`) runs, and a job a host schedules
   * itself can call. Failures are logged per tenant; the others go on.
   */
  async checkpointChangedTenants(): Promise<number> {
    const trail = this.requireTrail();
    let taken = 0;
    for (const tenantId of trail.takeTenantsSeen()) {
      try {
        await runAs({ type: 'system', id: 'nes-checkpoint', tenantId }, () =>
          this.checkpoint({ tenantId }),
        );
        taken++;
      } catch (error) {
        logger.error(
          `The checkpoint of tenant '${tenantId}' failed (${error instanceof EncryptedSessionError ? error.code : 'unexpected'}); the next run takes it`,
        );
      }
    }
    return taken;
  }

  /** Starts the checkpoint timer; the module's shutdown stops it. @internal */
  startCheckpointTimer(everyMs: number): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (this.running) return;
      // Background work: on SQLite it yields the connection to the app's calls.
      this.running = runAsBackgroundWork(() => this.checkpointChangedTenants())
        .catch(() => 0)
        .finally(() => (this.running = undefined));
    }, everyMs);
    this.timer.unref();
  }

  /** Stops the checkpoint timer and waits for a run in progress. @internal */
  async stopCheckpointTimer(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async checkpointFor(options: AuditVerifyOptions) {
    const signer = this.trail?.options.checkpointSigner;
    if (!signer || options.tenantId === undefined || options.fromSeq !== undefined)
      return undefined;
    const storage = this.requireTrail().storage;
    if (!storage.latestCheckpoint) return undefined;
    return checkedCheckpoint(storage, signer.publicKey, options.tenantId, options.checkpoint);
  }

  private requireSigner(): CheckpointSigner & { readonly privateKey: KeyObject } {
    const signer = this.trail?.options.checkpointSigner;
    if (!signer?.privateKey) {
      throw new ConfigurationError(
        'Audit checkpoints need a signing key: set options.audit.checkpoints.privateKey (an Ed25519 private key, PEM)',
      );
    }
    return { ...signer, privateKey: signer.privateKey };
  }

  /**
   * Who read or changed what, and when: a tenant's events about one session, subject or actor
   * in a time range, a page at a time, from the indexes of the audit tables.
   *
   * @throws InvalidArgumentError for a query without exactly one target, a bad range, limit or
   *   cursor.
   */
  async accessReport(query: AccessReportQuery): Promise<AccessReportPage> {
    const trail = this.requireTrail();
    const targets = (['sessionId', 'subjectId', 'actorId'] as const).filter(
      (key) => query[key] !== undefined,
    );
    if (targets.length !== 1 || typeof query[targets[0]] !== 'string') {
      throw new InvalidArgumentError(
        'accessReport: give exactly one of sessionId, subjectId or actorId (a string)',
      );
    }
    if (typeof query.tenantId !== 'string' || query.tenantId.length === 0) {
      throw new InvalidArgumentError('accessReport: tenantId must be a non-empty string');
    }
    const fromTime = epochMs(query.from, 'from');
    const toTime = epochMs(query.to, 'to');
    const limit = query.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_REPORT_PAGE) {
      throw new InvalidArgumentError(
        `accessReport: limit must be a whole number from 1 to ${MAX_REPORT_PAGE}`,
      );
    }
    const target = targets[0];
    const value = query[target]!;
    const by =
      target === 'sessionId'
        ? { sessionId: value }
        : target === 'actorId'
          ? { actorId: value }
          : { subjectRef: subjectRef(await trail.keyring.pseudonymKey(), query.tenantId, value) };
    const records = await trail.storage.listRecords({
      tenantId: query.tenantId,
      by,
      fromTime,
      toTime,
      after: query.cursor === undefined ? undefined : cursorPosition(query.cursor),
      limit,
    });
    const events = records.map((record): AuditEvent => ({
      ...(JSON.parse(record.body) as AuditEventBody),
      chain: auditRecordFromStored(record).chain,
    }));
    const last = records.at(-1);
    return records.length === limit && last
      ? {
          events,
          nextCursor: Buffer.from(JSON.stringify([last.time, last.chainId, last.seq])).toString(
            'base64url',
          ),
        }
      : { events };
  }

  /**
   * Verifies one chain; `headSeq` (its head when listed, else looked up) decides whether it is
   * long enough to check MACs on worker threads.
   */
  private async verifyOne(
    chain: AuditChainRef,
    options: AuditVerifyOptions,
    threads: LazyMacCheckPool,
    headSeq: number | undefined,
    checkpointed?: ChainHead,
  ): Promise<ChainVerification> {
    const trail = this.requireTrail();
    const fromSeq = options.fromSeq ?? 1;
    const toSeq = options.toSeq ?? Number.MAX_SAFE_INTEGER;
    const [before] =
      fromSeq > 1 ? await trail.storage.readChain(chain, fromSeq - 2, 1) : [undefined];
    const lastSeq = headSeq ?? (await trail.storage.findHead(chain))?.seq ?? 0;
    const long = Math.min(lastSeq, toSeq) - fromSeq + 1 >= THREADED_VERIFY_RECORDS;
    return verifyChain(chainPages(trail.storage, chain, fromSeq - 1, toSeq), {
      chainId: chain.chainId,
      fromSeq,
      prevMacBeforeFrom: before?.mac,
      macKeyFor: (keyId) => trail.keyring.macKey(keyId),
      checkpointedHead: checkpointed && { seq: checkpointed.seq, headMac: checkpointed.headMac },
      macCheckPool: long ? threads.open() : undefined,
    });
  }

  private chainsToVerify(options: AuditVerifyOptions): {
    readonly tenantId: string;
    readonly refs: AsyncIterable<{ readonly chain: AuditChainRef; readonly headSeq?: number }>;
  } {
    const { chainId, tenantId } = options;
    for (const bound of ['fromSeq', 'toSeq'] as const) {
      const value = options[bound];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
        throw new InvalidArgumentError(`verify: ${bound} must be a whole number from 1`);
      }
    }
    if (chainId !== undefined) {
      const parsed = parseChainId(chainId);
      if (!parsed) {
        throw new InvalidArgumentError(
          "verify: chainId must be a chain id this module writes ('session.<tenant>.<session>' or 'tenant.<tenant>', base64url ids)",
        );
      }
      const ref = auditChainOf({
        tenantId: parsed.tenantId,
        sessionId: parsed.sessionId ?? undefined,
      });
      return { tenantId: parsed.tenantId, refs: oneOf({ chain: ref }) };
    }
    if (typeof tenantId === 'string' && tenantId.length > 0) {
      return { tenantId, refs: this.tenantChains(tenantId) };
    }
    throw new InvalidArgumentError(
      'verify: give a chainId, or a tenantId to verify all its chains',
    );
  }

  /** Every chain of the tenant and its head's seq, from its heads, page by page. */
  private async *tenantChains(
    tenantId: string,
  ): AsyncIterable<{ readonly chain: AuditChainRef; readonly headSeq: number }> {
    for await (const head of tenantHeads(this.requireTrail().storage, tenantId)) {
      yield { chain: chainRefOfId(tenantId, head.chainId), headSeq: head.seq };
    }
  }

  private requireTrail(): AuditTrail {
    if (!this.trail) {
      throw new ConfigurationError(
        'The audit trail is off (options.audit.enabled: false); turn it on to verify or report',
      );
    }
    return this.trail;
  }
}

/**
 * Records from which a chain's MACs are checked on worker threads as well: below it, starting
 * the threads costs more than they save.
 */
const THREADED_VERIFY_RECORDS = 50_000;

/** The MAC-check threads of one verify call: started for its first long chain, if any. */
class LazyMacCheckPool {
  private pool: MacCheckPool | undefined;
  private opened = false;

  open(): MacCheckPool | undefined {
    if (!this.opened) {
      this.opened = true;
      this.pool = MacCheckPool.open();
    }
    return this.pool;
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }
}

/** Epoch ms of a Date or a number, refused when it is neither a valid time. */
function epochMs(value: Date | number, name: string): number {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
    throw new InvalidArgumentError(`accessReport: ${name} must be a Date or ms since the epoch`);
  }
  return ms;
}

/** Where a report cursor says the previous page ended. */
function cursorPosition(cursor: string): { time: number; chainId: string; seq: number } {
  try {
    const [time, chainId, seq] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [
      unknown,
      unknown,
      unknown,
    ];
    if (Number.isSafeInteger(time) && typeof chainId === 'string' && Number.isSafeInteger(seq)) {
      return { time: time as number, chainId, seq: seq as number };
    }
  } catch {
    // falls through to the refusal
  }
  throw new InvalidArgumentError('accessReport: cursor must be a nextCursor the report returned');
}

async function* oneOf<T>(value: T): AsyncIterable<T> {
  yield value;
}
