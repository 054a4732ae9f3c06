import type { AuditTrail } from '../audit/index.js';
import { ConfigurationError, LeaseLostError } from '../errors/index.js';
import type { KeyRing } from '../keys/index.js';
import {
  LOCK_WITHOUT_ACTIVITY,
  type JobLease,
  type SessionRef,
  type SessionStorage,
} from '../storage/index.js';
import { isHeld } from './held-sessions.js';

/**
 * What the purge did with one idle session: deleted it (`items` its item rows, `dekIds` the
 * keys it destroyed), kept it for a legal hold, or left it because it was written to (or
 * deleted) since the scan found it.
 *
 * @publicApi
 */
export type IdleSessionOutcome =
  | { readonly outcome: 'purged'; readonly items: number; readonly dekIds: readonly string[] }
  | { readonly outcome: 'held' | 'active' | 'gone' };

/**
 * Deletes a session idle past the retention limit: its data keys destroyed first (its
 * ciphertext, in any copy, is dead), then its items, history marks, keys and row, with its
 * `retention.purge.batch` event, in one unit of work fenced by the job's lease. Its audit chain
 * stays. A legal hold keeps it. The jobs layer's `RetentionService` drives it.
 */
export class IdleSessionPurge {
  constructor(
    private readonly storage: SessionStorage,
    private readonly keyRing: KeyRing,
    private readonly audit: AuditTrail | undefined,
  ) {}

  /**
   * Purges `ref` if it is still idle since before `idleBefore` and no hold covers it. Run it as
   * the job's actor (`runAs`).
   *
   * @throws LeaseLostError when the job no longer holds `lease`; nothing was deleted.
   */
  async purgeSession(
    ref: SessionRef,
    idleBefore: number,
    lease: JobLease,
  ): Promise<IdleSessionOutcome> {
    const before = await this.storage.read(ref, async (scope) => ({
      row: await scope.session.find(),
      held: await isHeld(scope),
    }));
    if (!before.row) return { outcome: 'gone' };
    if (before.held) return { outcome: 'held' };
    const event = await this.audit?.prepare('retention.purge.batch', {
      ...ref,
      subjectId: before.row.subjectId,
    });
    let result: IdleSessionOutcome;
    try {
      result = await this.storage.transaction(ref, async (scope): Promise<IdleSessionOutcome> => {
        if (!scope.fence || !scope.session.deleteSession || !scope.dataKeys.listAll) {
          throw new ConfigurationError(
            `The session storage '${this.storage.backend}' cannot fence, list keys or delete sessions, so idle sessions cannot be purged on it; set retention.sessionIdleDays to null`,
          );
        }
        await scope.fence(lease);
        // The write lock first (its activity time kept), then the row: an append that
        // committed while this unit waited for the lock shows in it. Then the holds: see
        // ExpiredItemPurge.
        if (!(await scope.session.lockForWrite(LOCK_WITHOUT_ACTIVITY))) return { outcome: 'gone' };
        const row = (await scope.session.find())!;
        // Written to since the scan: no longer idle.
        if (row.lastActivityAt >= idleBefore) return { outcome: 'active' };
        if (await isHeld(scope, row)) return { outcome: 'held' };
        const dekIds = (await scope.dataKeys.listAll())
          .filter((key) => key.state !== 'destroyed')
          .map((key) => key.dekId);
        // Crypto-shred first, then the rows.
        await scope.dataKeys.destroyAll(Date.now());
        const items = await scope.items.deleteAll();
        await scope.historyOperations.deleteAll();
        await scope.session.deleteSession();
        await event?.appendIn(scope.audit, { count: items, keys: { dekIds } });
        return { outcome: 'purged', items, dekIds };
      });
    } catch (error) {
      if (!(error instanceof LeaseLostError)) await event?.failed(error);
      throw error;
    }
    if (result.outcome === 'purged') {
      event?.committed();
      this.keyRing.forgetSession(ref);
    }
    return result;
  }

  /** What {@link purgeSession} would do now, changing nothing (a dry run). */
  async dryRun(ref: SessionRef, idleBefore: number): Promise<IdleSessionOutcome> {
    return this.storage.read(ref, async (scope): Promise<IdleSessionOutcome> => {
      const row = await scope.session.find();
      if (!row) return { outcome: 'gone' };
      if (row.lastActivityAt >= idleBefore) return { outcome: 'active' };
      if (await isHeld(scope)) return { outcome: 'held' };
      return { outcome: 'purged', items: 0, dekIds: [] };
    });
  }
}
