import { describe } from 'vitest';
import { describeAuditTrailContract } from '../audit/audit-trail-contract.js';
import {
  createRedisTestStorage,
  redisItemTamperer,
  redisReadyFor,
} from '../support/redis-support.js';
import { assembleHarness, type HarnessFactory } from '../support/session-harness.js';
import { describeKekRotation } from '../keys/kek-rotation-contract.js';
import { describeDataKeyAges, describeKeyRotation } from '../keys/key-rotation-contract.js';
import { describeAuditStorageContract } from '../storage/audit-storage-contract.js';
import {
  describeHoldRaceContract,
  describeHoldStorageContract,
} from '../storage/hold-storage-contract.js';
import { describeLeaseStorageContract } from '../storage/lease-storage-contract.js';
import { describeIdleSessionScanContract } from '../storage/idle-session-contract.js';
import { describeRetentionStorageContract } from '../storage/retention-storage-contract.js';
import { describeIntegrityContract } from './integrity-contract.js';
import { describeSessionContract } from './session-contract.js';

const up = await redisReadyFor('redis session contract');

/** Each harness gets its own key prefix on the shared Redis, deleted when it closes. */
const redisHarness: HarnessFactory = async (options = {}) => {
  const redis = await createRedisTestStorage();
  return assembleHarness('redis', redis.storage, options, {
    tamper: redisItemTamperer(redis.client, redis.keyPrefix),
    cleanup: () => redis.cleanup(),
  });
};

describe.skipIf(!up)('redis', () => {
  describeSessionContract('redis', redisHarness);
  describeIntegrityContract('redis', redisHarness);
  describeKekRotation('redis', redisHarness);
  describeKeyRotation('redis', redisHarness);
  describeDataKeyAges('redis', redisHarness);
  describeAuditStorageContract('redis', redisHarness);
  describeLeaseStorageContract('redis', redisHarness);
  describeRetentionStorageContract('redis', redisHarness);
  describeIdleSessionScanContract('redis', redisHarness);
  describeHoldStorageContract('redis', redisHarness);
  describeHoldRaceContract('redis', redisHarness);
  describeAuditTrailContract('redis', redisHarness);
});
