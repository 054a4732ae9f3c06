import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { AUDIT_KEYS_TENANT, AUDIT_TRAIL, AuditTrail } from '../audit/index.js';
import {
  ConfigurationError,
  EncryptedSessionError,
  KeyProviderUnavailableError,
  ShuttingDownError,
} from '../errors/index.js';
import {
  SESSION_STORAGE,
  WorkInFlight,
  maintenanceUnsupportedReason,
  supportsMaintenance,
  type SessionStorage,
  type StorageMaintenance,
} from '../storage/index.js';
import { KeyRing } from './key-ring.service.js';

/**
 * Where KEK rotation stands: how many data keys each root key wraps.
 *
 * @publicApi
 */
export interface KekRotationStatus {
  /** The root key new data keys are wrapped under, and the one rewrapping moves keys to. */
  readonly activeKekId: string;
  /** Data keys (not destroyed) per root key id. */
  readonly dataKeysByKek: Readonly<Record<string, number>>;
  /** Data keys still wrapped by another root key than the active one. */
  readonly remaining: number;
}

/**
 * Options of {@link KekRotationService.rewrapAll}.
 *
 * @publicApi
 */
export interface RewrapOptions {
  /** Data keys read per page. @default 100 */
  readonly batchSize?: number;
  /**
   * Stop after this many pages that held data keys (a later run resumes where this one
   * stopped). @default no limit
   */
  readonly maxBatches?: number;
  /** Called after each data key the run handled, with the run's counts so far (e.g. a progress bar). */
  readonly onProgress?: (progress: RewrapProgress) => void;
}

/**
 * How far a {@link KekRotationService.rewrapAll} run has come.
 *
 * @publicApi
 */
export interface RewrapProgress {
  /** Data keys on another root key listed so far. */
  readonly found: number;
  readonly rewrapped: number;
  readonly alreadyMoved: number;
  readonly failed: number;
}

/**
 * What one {@link KekRotationService.rewrapAll} run did.
 *
 * @publicApi
 */
export interface RewrapReport {
  /** Data keys this run moved to the active root key. */
  readonly rewrapped: number;
  /** Data keys another run (or replica) moved first; nothing to do. */
  readonly alreadyMoved: number;
  /** Data keys whose wrapping failed its integrity check; left as they were, each logged. */
  readonly failed: number;
  /** Data keys still on another root key when the run ended. */
  readonly remaining: number;
  /** True when the run ended early because the app began shutting down; the next run resumes. */
  readonly stoppedForShutdown: boolean;
}

const logger = new Logger('KekRotation');

/**
 * Moves data keys to the active root key (KEK rotation) by rewrapping them: only each key's
 * wrapping changes, never an item. Each key is replaced by a conditional update (still on the
 * root key it was read with), so replicas may run it at once and a crashed run simply resumes:
 * the next run lists what is still on an old root key. Reads and writes go on meanwhile:
 * cached keys do not change, and a cold read unwraps either wrapping (the old root key stays
 * available to the provider until nothing uses it; `status()` tells when).
 *
 * @publicApi
 */
@Injectable()
export class KekRotationService {
  /** Runs of {@link rewrapAll} and {@link status}, so shutdown can stop them and wait. */
  private readonly runs = new WorkInFlight(
    () =>
      new ShuttingDownError(
        'KEK rotation is not started because the app is shutting down; run it again on a running instance.',
      ),
  );

  private readonly auditTrail: AuditTrail | undefined;

  constructor(
    @Inject(SESSION_STORAGE) private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    @Optional() @Inject(AUDIT_TRAIL) auditTrail?: AuditTrail | null,
  ) {
    this.auditTrail = auditTrail ?? undefined;
  }

  /** How many data keys each root key wraps, and how many still need moving. */
  status(): Promise<KekRotationStatus> {
    return this.runs.run(() => this.currentStatus());
  }

  /**
   * Makes a {@link rewrapAll} run in progress end after the data key it is moving, refuses new
   * runs with `ShuttingDownError`, and resolves once the runs have ended. The module's shutdown
   * calls it first. Idempotent.
   *
   * @internal
   */
  stop(): Promise<void> {
    return this.runs.close();
  }

  private async currentStatus(): Promise<KekRotationStatus> {
    // A new Vault key version is made outside the process: read which version is active now.
    // During an outage the status still reports, against the version last read.
    const activeKekId = await this.keyRing.refreshActiveKekId().catch((error: unknown) => {
      if (!(error instanceof KeyProviderUnavailableError)) throw error;
      logger.warn(
        `Could not read the active root key from the provider (${error.code}); the status counts against the one last read`,
      );
      return this.keyRing.activeKekId();
    });
    const dataKeysByKek = await this.maintenance().countDataKeysByKek();
    const remaining = Object.entries(dataKeysByKek)
      .filter(([kekId]) => kekId !== activeKekId)
      .reduce((sum, [, count]) => sum + count, 0);
    return { activeKekId, dataKeysByKek, remaining };
  }

  /**
   * Rewraps every data key not yet on the active root key, a page at a time.
   *
   * @throws KeyProviderUnavailableError when the provider stays down (after the key ring's
   *   retries); what was moved stays moved, and the next run continues from there.
   */
  rewrapAll(options: RewrapOptions = {}): Promise<RewrapReport> {
    return this.runs.run(() => this.rewrapPages(options));
  }

  private async rewrapPages(options: RewrapOptions): Promise<RewrapReport> {
    const batchSize = options.batchSize ?? 100;
    const maxBatches = options.maxBatches ?? Number.POSITIVE_INFINITY;
    const target = await this.keyRing.refreshActiveKekId();
    let rewrapped = 0;
    let alreadyMoved = 0;
    let failed = 0;
    const maintenance = this.maintenance();
    let cursor: string | undefined;
    let stoppedForShutdown = false;
    let found = 0;
    /** Data keys rewrapped per tenant: in this page, and in the whole run. */
    let batchByTenant = new Map<string, number>();
    const runByTenant = new Map<string, number>();
    pages: for (let batch = 0; batch < maxBatches;) {
      await this.recordRewraps('key.rewrap.batch', batchByTenant, target);
      batchByTenant = new Map();
      const page = await maintenance.listDataKeysWrappedByOtherKek(target, cursor, batchSize);
      // Only pages with keys count as batches: a Redis SCAN step may find none and go on.
      if (page.records.length > 0) batch++;
      found += page.records.length;
      for (const record of page.records) {
        // Shutdown waits for this run: end it between keys, the next run resumes from here.
        if (this.runs.isClosing) {
          stoppedForShutdown = true;
          break pages;
        }
        let next;
        try {
          next = await this.keyRing.rewrapDataKey(record);
        } catch (error) {
          if (error instanceof EncryptedSessionError && !error.retryable) {
            // One damaged wrapping must not stop the rotation of every other key.
            failed++;
            logger.error(
              `Data key ${record.dekId} of session '${record.sessionId}' could not be rewrapped from ${record.kekId} (${error.code}); left as it was`,
            );
            options.onProgress?.({ found, rewrapped, alreadyMoved, failed });
            continue;
          }
          throw error;
        }
        const replaced = await this.storage.transaction(record, (scope) =>
          scope.dataKeys.replaceWrapping(record.dekId, record.kekId, next),
        );
        if (replaced) {
          rewrapped++;
          batchByTenant.set(record.tenantId, (batchByTenant.get(record.tenantId) ?? 0) + 1);
          runByTenant.set(record.tenantId, (runByTenant.get(record.tenantId) ?? 0) + 1);
        } else alreadyMoved++;
        options.onProgress?.({ found, rewrapped, alreadyMoved, failed });
      }
      cursor = page.cursor;
      if (cursor === undefined) break;
    }
    await this.recordRewraps('key.rewrap.batch', batchByTenant, target);
    await this.recordRewraps('key.rewrap.run', runByTenant, target);
    const { remaining } = await this.currentStatus();
    logger.log(
      `Rewrapped ${rewrapped} data key(s) to ${target}; ${alreadyMoved} already moved, ${failed} failed, ${remaining} remaining${stoppedForShutdown ? ' (stopped: the app is shutting down)' : ''}`,
    );
    return { rewrapped, alreadyMoved, failed, remaining, stoppedForShutdown };
  }

  /**
   * Records, on each tenant's control chain, how many of its data keys a batch (or the run)
   * moved to `target`. A run spans tenants, so its events commit after the keys moved; one that
   * cannot be written stops the run (the next run resumes, and records what it moves).
   */
  private async recordRewraps(
    action: 'key.rewrap.batch' | 'key.rewrap.run',
    byTenant: ReadonlyMap<string, number>,
    target: string,
  ): Promise<void> {
    if (!this.auditTrail) return;
    for (const [tenantId, count] of byTenant) {
      if (tenantId === AUDIT_KEYS_TENANT) continue;
      await this.auditTrail.recordEvent(action, { tenantId }, 'success', {
        count,
        keys: { kekIds: [target] },
      });
    }
  }

  /** The storage's cross-session scans; refused up front when the adapter has none. */
  private maintenance(): StorageMaintenance {
    if (!supportsMaintenance(this.storage)) {
      throw new ConfigurationError(
        `KEK rotation needs to list data keys across sessions, and ${maintenanceUnsupportedReason(this.storage)}`,
      );
    }
    return this.storage.maintenance;
  }
}
