import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

const up = await redisReadyFor('Redis damaged stored values spec');

/** Written into damaged text fields: it must never reach an error message. */
const CANARY = 'CANARY-d4m4g3d';

interface Damaged {
  readonly ref: SessionRef;
  readonly keys: RedisSessionKeys;
  readonly redis: RedisTestStorage;
  readonly harness: SessionHarness;
  /** Opened before the damage (a handle reads storage on each call, never a cached copy). */
  readonly session: EncryptedSession;
}

type ReadPath = 'open' | 'getItems()' | 'getItems(2)' | 'popItem' | 'addItems' | 'history';

interface DamageCase {
  readonly name: string;
  /** The field the message must name. */
  readonly field: RegExp;
  readonly paths: readonly ReadPath[];
  damage(target: Damaged): Promise<void>;
}

const ITEM_PATHS: ReadPath[] = ['getItems()', 'getItems(2)', 'popItem'];
const HASH_PATHS: ReadPath[] = ['open', 'getItems()', 'addItems', 'popItem', 'history'];
const KEY_PATHS: ReadPath[] = ['getItems()', 'getItems(2)', 'popItem', 'addItems'];

async function replaceMember(target: Damaged, seq: number, change: (member: Buffer) => Buffer) {
  const { client } = target.redis;
  const [member] = await client.zrangeBuffer(target.keys.items, seq, seq, 'BYSCORE');
  await client
    .multi()
    .zrem(target.keys.items, member)
    .zadd(target.keys.items, seq, change(Buffer.from(member)))
    .exec();
}

async function changeDataKey(
  target: Damaged,
  change: (packed: Buffer) => Buffer | [string, Buffer],
) {
  const { client } = target.redis;
  const [dekId, packed] = Object.entries(await client.hgetallBuffer(target.keys.dataKeys))[0];
  const changed = change(Buffer.from(packed));
  const [field, value] = Array.isArray(changed) ? changed : [dekId, changed];
  await client
    .multi()
    .hdel(target.keys.dataKeys, dekId)
    .hset(target.keys.dataKeys, field, value)
    .exec();
}

const setSessionField = (field: string, value: string) => (target: Damaged) =>
  target.redis.client.hset(target.keys.session, field, value).then(() => undefined);

const CASES: DamageCase[] = [
  {
    name: 'an item member shorter than its header',
    field: /item .*shorter than its header/,
    paths: ITEM_PATHS,
    damage: (target) => replaceMember(target, 3, (member) => member.subarray(0, 20)),
  },
  {
    name: 'an item seq beyond 2^53',
    field: /item .*seq beyond 2\^53/,
    paths: ITEM_PATHS,
    damage: (target) =>
      replaceMember(target, 3, (member) => {
        member.writeUInt32BE(0x00400000, 0);
        return member;
      }),
  },
  {
    name: 'an item expiry beyond 2^53',
    field: /item .*expires_at beyond 2\^53/,
    paths: ITEM_PATHS,
    damage: (target) =>
      replaceMember(target, 3, (member) => {
        member.writeUInt32BE(0xffffffff, 44);
        return member;
      }),
  },
  {
    name: 'an item data key id of non-ASCII bytes',
    field: /item .*dek_id/,
    paths: ITEM_PATHS,
    damage: (target) =>
      replaceMember(target, 3, (member) => {
        member.fill(0xc3, 8, 12);
        return member;
      }),
  },
  ...['abc', '', '1e3', ' 4', '99999999999999999999', '-1', '0'].map((value): DamageCase => ({
    name: `next_seq ${JSON.stringify(value)} in the session hash`,
    field: /session hash .*next_seq/,
    paths: HASH_PATHS,
    damage: setSessionField('next_seq', value),
  })),
  {
    name: 'a text created_at in the session hash',
    field: /session hash .*created_at/,
    paths: HASH_PATHS,
    damage: setSessionField('created_at', CANARY),
  },
  {
    name: 'a legal_hold that is neither 0 nor 1',
    field: /session hash .*legal_hold/,
    paths: HASH_PATHS,
    damage: setSessionField('legal_hold', CANARY),
  },
  {
    name: 'a session hash holding another session id',
    field: /session hash .*session_id/,
    paths: HASH_PATHS,
    damage: setSessionField('session_id', CANARY),
  },
  {
    name: 'a text commit version',
    field: /session hash .*version/,
    paths: ['addItems', 'popItem', 'history'],
    damage: setSessionField('version', CANARY),
  },
  {
    name: 'a text max_expires_at',
    field: /session hash .*max_expires_at/,
    paths: ['addItems', 'popItem'],
    damage: setSessionField('max_expires_at', CANARY),
  },
  {
    name: 'a truncated data key',
    field: /data key .*truncated/,
    paths: KEY_PATHS,
    damage: (target) => changeDataKey(target, (packed) => packed.subarray(0, 12)),
  },
  {
    name: 'a data key generation beyond 2^53',
    field: /data key .*generation beyond 2\^53/,
    paths: KEY_PATHS,
    damage: (target) =>
      changeDataKey(target, (packed) => {
        packed.writeUInt32BE(0xffffffff, 3);
        return packed;
      }),
  },
  {
    name: 'a data key under a hash field that is not a key id',
    field: /data key .*hash field/,
    // Reads look a key up by id; the writer reads (and checks) the whole hash.
    paths: ['addItems'],
    damage: (target) => changeDataKey(target, (packed) => [CANARY, packed]),
  },
  {
    name: 'an items key of the wrong type',
    field: /wrong type/,
    paths: ['getItems()', 'getItems(2)', 'popItem', 'addItems'],
    damage: async (target) => {
      await target.redis.client.del(target.keys.items);
      await target.redis.client.set(target.keys.items, CANARY);
    },
  },
];

describe.skipIf(!up)('Redis: damaged stored values are IntegrityErrors on every read path', () => {
  let redis: RedisTestStorage;
  let harness: SessionHarness;

  beforeAll(async () => {
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
  });
  afterAll(async () => {
    await harness.close();
  });

  async function damagedSession(damageCase: DamageCase): Promise<Damaged> {
    const ref = { tenantId: 'default', sessionId: `s-${randomUUID()}` };
    const session = await harness.service.open(ref.sessionId);
    await session.addItems([userMessage('one'), userMessage('two'), userMessage('three')]);
    await session.applyHistoryTransaction({
      operationId: 'op-1',
      transaction: { type: 'append_items', items: [userMessage('four')] },
    });
    const keys = new RedisKeyLayout(redis.keyPrefix).forSession(ref);
    const target = { ref, keys, redis, harness, session };
    await damageCase.damage(target);
    // A warm key cache would answer without reading the damaged key.
    harness.keyRing.clear();
    return target;
  }

  function run(path: ReadPath, session: EncryptedSession, ref: SessionRef): Promise<unknown> {
    switch (path) {
      case 'open':
        return harness.service.open(ref.sessionId);
      case 'getItems()':
        return session.getItems();
      case 'getItems(2)':
        return session.getItems(2);
      case 'popItem':
        return session.popItem();
      case 'addItems':
        return session.addItems([userMessage('five')]);
      case 'history':
        return session.applyHistoryTransaction({
          operationId: 'op-2',
          transaction: {
            type: 'replace_suffix',
            expectedSuffix: [userMessage('four')],
            replacement: [userMessage('4')],
          },
        });
      default:
        throw new Error(`unknown read path ${String(path)}`);
    }
  }

  for (const damageCase of CASES) {
    it(`refuses ${damageCase.name}: ${damageCase.paths.join(', ')}`, async () => {
      const target = await damagedSession(damageCase);
      const members = await redis.client.zcard(target.keys.items).catch(() => undefined);
      for (const path of damageCase.paths) {
        const error = await run(path, target.session, target.ref).then(
          () => new Error(`${path} succeeded`),
          (caught: unknown) => caught,
        );
        expect(error, path).toBeInstanceOf(IntegrityError);
        expect((error as Error).message, path).toMatch(damageCase.field);
        expect(errorText(error), path).not.toContain(CANARY);
        harness.keyRing.clear();
      }
      expect(await redis.client.zcard(target.keys.items).catch(() => undefined)).toBe(members);
    });
  }
});
