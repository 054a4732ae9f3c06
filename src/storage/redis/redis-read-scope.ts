import type { AdapterReadScope } from '../adapter-scope.js';
import { redisSessionLabel } from './redis-record-codec.js';
import {
  highestGeneration,
  newestActiveKey,
  scanVisibleItems,
  type RedisSessionReads,
} from './redis-session-reads.js';

/** The scope of `read()`: every call goes straight to Redis. It has no write methods. */
export function createRedisReadScope(reads: RedisSessionReads): AdapterReadScope {
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
    },
    historyOperations: {
      find: (ref, operationId) => reads.findOperation(ref, operationId),
    },
  };
}
