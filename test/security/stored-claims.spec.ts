import { afterAll, describe } from 'vitest';
import type { MemorySessionStorage } from '../../src/index.js';
import {
  createRedisTestStorage,
  redisItemTamperer,
  redisReadyFor,
} from '../support/redis-support.js';
import {
  assembleHarness,
  memoryHarness,
  sqlServerHarness,
  sqliteHarness,
  type HarnessFactory,
} from '../support/session-harness.js';
import { sqlServerUp } from '../support/sql-server-support.js';
import {
  memoryRowTamperer,
  redisRowTamperer,
  sqlRowTamperer,
} from '../support/stored-row-tamperer.js';
import { describeStoredClaims, type ClaimsHarnessFactory } from './stored-claims-contract.js';

/** A SQL harness with the row tamperer over its DataSource. */
const onSql =
  (factory: HarnessFactory): ClaimsHarnessFactory =>
  async (options) => {
    const harness = await factory(options);
    return { harness, rows: sqlRowTamperer(harness.dataSource!) };
  };

describeStoredClaims('memory', async (options) => {
  const harness = await memoryHarness(options);
  return { harness, rows: memoryRowTamperer(harness.storage as MemorySessionStorage) };
});

describeStoredClaims('sqlite', onSql(sqliteHarness));

const postgres = sqlServerHarness('postgres');
const mariadb = sqlServerHarness('mysql');
afterAll(async () => {
  await postgres.dispose();
  await mariadb.dispose();
});
const postgresUp = await sqlServerUp('postgres');
const mariadbUp = await sqlServerUp('mysql');
const redisUp = await redisReadyFor('security claims on redis');

describe.skipIf(!postgresUp)('postgres', () => {
  describeStoredClaims('postgres', onSql(postgres.factory));
});
describe.skipIf(!mariadbUp)('mariadb', () => {
  describeStoredClaims('mariadb', onSql(mariadb.factory));
});
describe.skipIf(!redisUp)('redis', () => {
  describeStoredClaims('redis', async (options = {}) => {
    const redis = await createRedisTestStorage();
    const harness = assembleHarness('redis', redis.storage, options, {
      tamper: redisItemTamperer(redis.client, redis.keyPrefix),
      cleanup: () => redis.cleanup(),
    });
    return { harness, rows: redisRowTamperer(redis.client, redis.keyPrefix) };
  });
});
