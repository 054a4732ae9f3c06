import { Inject, Injectable, Optional } from '@nestjs/common';
import { ConfigurationError, InvalidArgumentError } from '../errors/index.js';
import type { AuditChainHeadRecord, AuditChainRef } from '../storage/index.js';
import { parseChainId } from './audit-chain.js';
import { AUDIT_TRAIL, AuditTrail, auditChainOf } from './audit-trail.js';
import { verifyChain, type ChainVerification } from './chain-verifier.js';
import type { AuditActor } from './audit-event.js';
import { chainPages } from './stored-records.js';

/**
 * What {@link AuditService.verify} checks: one chain (`chainId`, optionally a seq range), or
 * every chain of a tenant (`tenantId`).
 *
 * @publicApi
 */
export interface AuditVerifyOptions {
  readonly chainId?: string;
  readonly tenantId?: string;
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
}

/** Heads per page when every chain of a tenant is verified. */
const HEADS_PAGE_SIZE = 500;

/**
 * The audit trail for hosts and operators: verification today (checkpoints, access reports and
 * the command line build on it). Injectable from `EncryptedSessionModule`.
 *
 * @publicApi
 */
@Injectable()
export class AuditService {
  private readonly trail: AuditTrail | undefined;

  constructor(@Optional() @Inject(AUDIT_TRAIL) trail?: AuditTrail | null) {
    this.trail = trail ?? undefined;
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
    try {
      for await (const chain of chains.refs) results.push(await this.verifyOne(chain, options));
    } catch (error) {
      await event.failed(error);
      throw error;
    }
    const ok = results.every((result) => result.ok);
    const body = event.body(ok ? 'success' : 'failure', {
      count: results.length,
      ...(ok ? {} : { reason: 'INTEGRITY' as const }),
    });
    await trail.commitAlone(event.chain, body, event.macKey);
    return { ok, chains: results };
  }

  private async verifyOne(
    chain: AuditChainRef,
    options: AuditVerifyOptions,
  ): Promise<ChainVerification> {
    const trail = this.requireTrail();
    const fromSeq = options.fromSeq ?? 1;
    const toSeq = options.toSeq ?? Number.MAX_SAFE_INTEGER;
    const [before] =
      fromSeq > 1 ? await trail.storage.readChain(chain, fromSeq - 2, 1) : [undefined];
    return verifyChain(chainPages(trail.storage, chain, fromSeq - 1, toSeq), {
      chainId: chain.chainId,
      fromSeq,
      prevMacBeforeFrom: before?.mac,
      macKeyFor: (keyId) => trail.keyring.macKey(keyId),
    });
  }

  private chainsToVerify(options: AuditVerifyOptions): {
    readonly tenantId: string;
    readonly refs: AsyncIterable<AuditChainRef>;
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
      return { tenantId: parsed.tenantId, refs: oneOf(ref) };
    }
    if (typeof tenantId === 'string' && tenantId.length > 0) {
      return { tenantId, refs: this.tenantChains(tenantId) };
    }
    throw new InvalidArgumentError(
      'verify: give a chainId, or a tenantId to verify all its chains',
    );
  }

  /** Every chain of the tenant, from its heads, page by page. */
  private async *tenantChains(tenantId: string): AsyncIterable<AuditChainRef> {
    const storage = this.requireTrail().storage;
    let after = '';
    for (;;) {
      const heads: AuditChainHeadRecord[] = await storage.listHeads(
        tenantId,
        after,
        HEADS_PAGE_SIZE,
      );
      for (const head of heads) {
        const parsed = parseChainId(head.chainId);
        yield {
          chainId: head.chainId,
          tenantId,
          sessionId: parsed?.sessionId ?? null,
        };
      }
      if (heads.length < HEADS_PAGE_SIZE) return;
      after = heads.at(-1)!.chainId;
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

async function* oneOf<T>(value: T): AsyncIterable<T> {
  yield value;
}
