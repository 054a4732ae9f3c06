import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IntegrityError, type EncryptedSession, type SessionRef } from '../../src/index.js';
import { RedisKeyLayout, type RedisSessionKeys } from '../../src/storage/redis/redis-keys.js';
import { errorText } from '../support/error-text.js';
import {
  createRedisTestStorage,
  redisItemTamperer,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { assembleHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

const up = await redisReadyFor('Redis integrity spec');

/** Every member of the items zset with its score, in score order. */
async function membersOf(client: Redis, keys: RedisSessionKeys) {
  const reply = await client.zrangeBuffer(keys.items, 0, -1, 'WITHSCORES');
  const members: Array<{ member: Buffer; score: number }> = [];
  for (let i = 0; i < reply.length; i += 2) {
    members.push({ member: reply[i], score: Number(reply[i + 1].toString()) });
  }
  return members;
}

async function memberAt(client: Redis, keys: RedisSessionKeys, score: number): Promise<Buffer> {
  const [member] = await client.zrangeBuffer(keys.items, score, score, 'BYSCORE');
  if (!member) throw new Error(`no member at score ${score}`);
  return member;
}

/** The member with its packed sequence number replaced, the rest unchanged. */
function withPackedSeq(member: Buffer, seq: bigint): Buffer {
  const forged = Buffer.from(member);
  forged.writeBigUInt64BE(seq, 0);
  return forged;
}

describe.skipIf(!up)(
  'Redis: order, positions and deletions come from the authenticated seq',
  () => {
    let redis: RedisTestStorage;
    let harness: SessionHarness;
    let session: EncryptedSession;
    let ref: SessionRef;
    let keys: RedisSessionKeys;

    beforeEach(async () => {
      redis = await createRedisTestStorage();
      harness = assembleHarness(
        'redis',
        redis.storage,
        {},
        {
          tamper: redisItemTamperer(redis.client, redis.keyPrefix),
          cleanup: () => redis.cleanup(),
        },
      );
      ref = { tenantId: 'default', sessionId: `s-${randomUUID()}` };
      keys = new RedisKeyLayout(redis.keyPrefix).forSession(ref);
      session = await harness.service.open(ref.sessionId);
      await session.addItems([userMessage('one'), userMessage('two'), userMessage('three')]);
    });
    afterEach(async () => {
      await harness.close();
    });

    async function expectEveryReadRefusedAndNothingDeleted() {
      const before = await membersOf(redis.client, keys);
      for (const read of [
        () => session.getItems(),
        () => session.getItems(3),
        () => session.popItem(),
      ]) {
        await expect(read()).rejects.toBeInstanceOf(IntegrityError);
      }
      expect(await membersOf(redis.client, keys)).toEqual(before);
    }

    it('refuses two members whose scores were swapped, and pops nothing', async () => {
      const first = await memberAt(redis.client, keys, 1);
      const third = await memberAt(redis.client, keys, 3);
      await redis.client.zadd(keys.items, 3, first, 1, third);

      await expectEveryReadRefusedAndNothingDeleted();
    });

    it('refuses the oldest member re-scored past the newest, with IntegrityError (not retryable)', async () => {
      const first = await memberAt(redis.client, keys, 1);
      await redis.client.zadd(keys.items, 100, first);

      await expectEveryReadRefusedAndNothingDeleted();
      const error = await session.popItem().catch((caught: unknown) => caught);
      expect((error as IntegrityError).retryable).toBe(false);
      expect((error as Error).message).toContain(ref.sessionId);
    });

    it('refuses a member re-scored to a fraction between two positions', async () => {
      const second = await memberAt(redis.client, keys, 2);
      await redis.client.zadd(keys.items, 2.5, second);

      await expectEveryReadRefusedAndNothingDeleted();
    });

    it('never deletes a member whose packed seq disagrees with the position being popped', async () => {
      // Position 3 now holds a member packed as seq 2: opening it as 3 fails, and deleting
      // "whatever has score 3" would delete an item that was never opened.
      const second = await memberAt(redis.client, keys, 2);
      await redis.client.zadd(keys.items, 3, second);

      await expect(
        redis.storage.transaction(ref, (scope) => scope.items.deleteBySeq([3])),
      ).rejects.toBeInstanceOf(IntegrityError);
      expect((await membersOf(redis.client, keys)).map((entry) => entry.score)).toEqual([1, 3, 3]);
    });

    it('commits no deletion when the member at the position changed after it was read', async () => {
      const third = await memberAt(redis.client, keys, 3);

      const outcome = redis.storage.transaction(ref, async (scope) => {
        const deleted = await scope.items.deleteBySeq([3]);
        // Altered behind the module's back between the read and the commit (no version bump).
        await redis.client.zadd(keys.items, 4, third);
        return deleted;
      });

      await expect(outcome).rejects.toBeInstanceOf(IntegrityError);
      expect(await redis.client.zcard(keys.items)).toBe(3);
    });

    it('never returns an item twice when an expired member carries a forged seq', async () => {
      await session.addItems(Array.from({ length: 17 }, (_, i) => userMessage(`more ${i}`)));
      const tamper = redisItemTamperer(redis.client, redis.keyPrefix);
      // Newest first, the first window (16 rows) ends on position 5: expired, its seq forged.
      for (const seq of [5, ...Array.from({ length: 10 }, (_, i) => 11 + i)]) {
        await tamper.setExpiresAt(ref, seq, 1);
      }
      const fifth = await memberAt(redis.client, keys, 5);
      await redis.client
        .multi()
        .zrem(keys.items, fifth)
        .zadd(keys.items, 5, withPackedSeq(fifth, 9n))
        .exec();

      await expect(session.getItems(10)).rejects.toBeInstanceOf(IntegrityError);
      await expect(session.getItems()).rejects.toBeInstanceOf(IntegrityError);
    });

    it('never returns an item twice when a second member sits at the same position', async () => {
      const second = await memberAt(redis.client, keys, 2);
      // Same seq, same ciphertext (it opens), another createdAt: a distinct member at score 2.
      const copy = Buffer.from(second);
      copy.writeBigUInt64BE(copy.readBigUInt64BE(52) + 1n, 52);
      await redis.client.zadd(keys.items, 2, copy);

      for (const read of [() => session.getItems(), () => session.getItems(3)]) {
        await expect(read()).rejects.toBeInstanceOf(IntegrityError);
      }
    });

    it('still reads and pops an untouched history in order', async () => {
      expect(await session.getItems()).toEqual([
        userMessage('one'),
        userMessage('two'),
        userMessage('three'),
      ]);
      expect(await session.popItem()).toEqual(userMessage('three'));
      expect(await session.getItems(5)).toEqual([userMessage('one'), userMessage('two')]);
    });

    describe('a sequence counter behind the stored items', () => {
      it('refuses an append after next_seq was rolled back, writing nothing', async () => {
        await redis.client.hset(keys.session, 'next_seq', '2');

        const error = await session.addItems([userMessage('four')]).catch((caught) => caught);

        expect(error).toBeInstanceOf(IntegrityError);
        expect((error as Error).message).toMatch(/sequence counter .* behind its stored items/);
        expect((error as Error).message).toContain(ref.sessionId);
        expect(await redis.client.zcard(keys.items)).toBe(3);
        expect(await redis.client.hget(keys.session, 'next_seq')).toBe('2');
        expect(errorText(error)).not.toMatch(/next_seq.{0,4}2\b/);
      });

      it('refuses an append to a session whose hash is gone while its items remain', async () => {
        await redis.client.del(keys.session);

        // Opening it again would start a fresh counter below the items: refused up front.
        const error = await harness.service.open(ref.sessionId).catch((caught) => caught);

        expect(error).toBeInstanceOf(IntegrityError);
        expect((error as Error).message).toMatch(/stored items but no session row/);
        expect(await redis.client.zcard(keys.items)).toBe(3);
      });
    });
  },
);
