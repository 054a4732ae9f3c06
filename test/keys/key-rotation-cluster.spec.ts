import { describe } from 'vitest';
import { loopbackClusterForSuite, redisClusterHarness } from '../support/redis-cluster-support.js';
import { redisReadyFor } from '../support/redis-support.js';
import { describeDataKeyAges, describeKeyRotation } from './key-rotation-contract.js';

/*
 * Staged data key rotation on a Redis Cluster of three masters on loopback ports, started by
 * this spec: the retiring-key scan walks every master, and each batch re-encrypts in its
 * session's own slot. The same contract as on every other backend.
 */

const up = await redisReadyFor('data key rotation on a Redis Cluster spec');

describe.skipIf(!up)('data key rotation on a Redis Cluster', () => {
  const clusterHarness = redisClusterHarness(loopbackClusterForSuite());
  describeKeyRotation('redis cluster', clusterHarness);
  describeDataKeyAges('redis cluster', clusterHarness);
});
