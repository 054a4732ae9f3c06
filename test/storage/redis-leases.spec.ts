import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/index.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import {
  createRedisTestStorage,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';

/*
 * Job leases on Redis beyond the shared contract: the key each lease lives in, that it never
 * expires (so the token survives release), and a lease hash changed outside the module.
 */

const up = await redisReadyFor('Redis job leases spec');

describe.skipIf(!up)('Redis job leases', () => {
  let redis: RedisTestStorage;
  let layout: RedisKeyLayout;
  let job: string;

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    layout = new RedisKeyLayout(redis.keyPrefix);
    job = `job-${randomUUID()}`;
  });
  afterEach(() => redis.cleanup());

  const leases = () => redis.storage.leases;

  it('keeps a lease in a hash of its own hash tag, with no TTL, also after release', async () => {
    const key = layout.jobLease(job);
    expect(key).toBe(`${redis.keyPrefix}{job:${Buffer.from(job).toString('base64url')}}:lease`);
    const lease = (await leases().acquire(job, 'replica-a', 30_000))!;
    expect(await redis.client.hgetall(key)).toEqual({
      owner: 'replica-a',
      token: '1',
      expiresAt: String(lease.expiresAt),
    });
    await leases().release(lease);
    expect(await redis.client.hget(key, 'token')).toBe('1');
    expect(await redis.client.pttl(key)).toBe(-1);
  });

  it('reports a lease key of another type, or with a malformed field, as IntegrityError and changes nothing', async () => {
    const key = layout.jobLease(job);
    await redis.client.set(key, 'not a hash');
    await expect(leases().acquire(job, 'replica-a', 30_000)).rejects.toBeInstanceOf(IntegrityError);
    await expect(leases().current(job)).rejects.toThrow(/lease of job .* is damaged/);
    expect(await redis.client.get(key)).toBe('not a hash');

    await redis.client.del(key);
    await redis.client.hset(key, { owner: 'replica-a', token: '0', expiresAt: '1' });
    await expect(leases().acquire(job, 'replica-b', 30_000)).rejects.toBeInstanceOf(IntegrityError);
    await redis.client.hset(key, { token: '3', expiresAt: '-5' });
    await expect(leases().current(job)).rejects.toBeInstanceOf(IntegrityError);
    await expect(
      leases().renew({ job, owner: 'replica-a', token: 3, expiresAt: 0 }, 30_000),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(await redis.client.hget(key, 'expiresAt')).toBe('-5');
  });
});
