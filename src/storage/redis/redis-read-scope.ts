import type { AdapterReadScope } from '../adapter-scope.js';
import type { LegalHoldStorage } from '../storage.ports.js';
import { redisSessionLabel } from './redis-record-codec.js';
import {
  highestGeneration,
  newestActiveKey,
  scanVisibleItems,
  type RedisSessionReads,
} from './redis-session-reads.js';

/**
 * The scope of `read()`: every call goes straight to Redis. It has no write methods. The hold
 * check reads the session hash as it is now, then the holds' slot.
 */
export function createRedisReadScope(
  reads: RedisSessionReads,
  holds: LegalHoldStorage,
): AdapterReadScope {
  const { layout } = reads;
  return {
    sessions: {
      find: (ref) => reads.findSession(ref),
    },
    items: {
      listVisible: async (ref, now, limit) => {
        const windows = reads.itemWindows(layout.forSession(ref));
        const newestFirst = await scanVisibleItems(
          windows,
          { newestFirst: true },
          now,
          limit,
          redisSessionLabel(ref),
        );
        return newestFirst.toReversed();
      },
      listVisiblePage: (ref, now, afterSeq, throughSeq, limit) =>
        scanVisibleItems(
          reads.itemWindows(layout.forSession(ref)),
          { newestFirst: false, afterSeq, throughSeq },
          now,
          limit,
          redisSessionLabel(ref),
        ),
    },
    dataKeys: {
      findById: (dekId) => reads.findDataKey(dekId),
      findActive: async (ref) => newestActiveKey((await reads.dataKeysOf(ref)).values()),
      maxGeneration: async (ref) => highestGeneration((await reads.dataKeysOf(ref)).values()),
      listAllForSession: async (ref) =>
        [...(await reads.dataKeysOf(ref)).values()].toSorted((a, b) => a.generation - b.generation),
    },
    holds: {
      covering: async (ref) => {
        const record = await reads.findSession(ref);
        return holds.activeCovering(ref.tenantId, ref.sessionId, record?.subjectId ?? null);
      },
    },
    historyOperations: {
      find: (ref, operationId) => reads.findOperation(ref, operationId),
    },
  };
}
