import type { StorageScope } from '../storage.ports.js';
import { redisSessionLabel } from './redis-record-codec.js';
import {
  highestGeneration,
  newestActiveKey,
  scanVisibleItems,
  type RedisSessionReads,
} from './redis-session-reads.js';

function readOnly(): never {
  throw new Error('Write attempted inside a read-only storage scope');
}

/** The scope of `read()`: every call goes straight to Redis; writes throw. */
export function createRedisReadScope(reads: RedisSessionReads): StorageScope {
  const { layout } = reads;
  return {
    sessions: {
      find: (ref) => reads.findSession(ref),
      insertIfAbsent: async () => readOnly(),
      reserveSequence: async () => readOnly(),
      lockForWrite: async () => readOnly(),
    },
    items: {
      insertMany: async () => readOnly(),
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
      deleteBySeq: async () => readOnly(),
      deleteAll: async () => readOnly(),
    },
    dataKeys: {
      findById: (dekId) => reads.findDataKey(dekId),
      findActive: async (ref) => newestActiveKey((await reads.dataKeysOf(ref)).values()),
      maxGeneration: async (ref) => highestGeneration((await reads.dataKeysOf(ref)).values()),
      insertIfAbsent: async () => readOnly(),
      retireActiveBelow: async () => readOnly(),
      destroyAllForSession: async () => readOnly(),
      listWrappedByOtherKek: (kekId, cursor, limit) =>
        reads.dataKeysWrappedByOtherKek(kekId, cursor, limit),
      replaceWrapping: async () => readOnly(),
      countByKek: () => reads.countDataKeysByKek(),
    },
    historyOperations: {
      find: (ref, operationId) => reads.findOperation(ref, operationId),
      insertIfAbsent: async () => readOnly(),
      deleteAll: async () => readOnly(),
    },
  };
}
