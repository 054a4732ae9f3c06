import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/index.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import {
  createRedisTestStorage,
  redisItemTamperer,
  redisReadyFor,
} from '../support/redis-support.js';
import { assembleHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

const up = await redisReadyFor('Redis security claims');

const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);

/**
 * README, Security model, "Redis: order and deletion come from the authenticated position":
 * the stated limit. getItems(limit) and popItem check the members they read; a member moved
 * below that window is not seen by them, and the next full getItems() refuses it.
 */
describe.skipIf(!up)('README: the Redis order check and its documented window', () => {
  let harness: SessionHarness | undefined;
  afterEach(async () => {
    await harness?.close();
  });

  it('a swap far below the newest items is refused by a full getItems(), deleting nothing', async () => {
    const redis = await createRedisTestStorage();
    harness = assembleHarness(
      'redis',
      redis.storage,
      {},
      {
        tamper: redisItemTamperer(redis.client, redis.keyPrefix),
        cleanup: () => redis.cleanup(),
      },
    );
    const ref = { tenantId: 'default', sessionId: `s-${randomUUID()}` };
    const session = await harness.service.open(ref.sessionId);
    const all = Array.from({ length: 40 }, (_, i) => `item ${i + 1}`);
    await session.addItems(all.map((text) => userMessage(text)));
    const items = new RedisKeyLayout(redis.keyPrefix).forSession(ref).items;
    const [second] = await redis.client.zrangeBuffer(items, 2, 2, 'BYSCORE');
    const [third] = await redis.client.zrangeBuffer(items, 3, 3, 'BYSCORE');
    await redis.client.zadd(items, 3, second, 2, third);

    // The newest items are read and popped as before: the swap is outside their window.
    expect(texts(await session.getItems(5))).toEqual(all.slice(-5));
    expect(texts([(await session.popItem())!])).toEqual(['item 40']);
    await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
    expect(await redis.client.zcard(items)).toBe(39);
  });
});
