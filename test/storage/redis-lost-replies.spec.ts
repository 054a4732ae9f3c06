import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  StorageUnavailableError,
  type EncryptedSession,
  type SessionRef,
} from '../../src/index.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { RedisFaultProxy } from '../support/redis-fault-proxy.js';
import {
  REDIS_URL,
  createRedisTestStorage,
  redisItemTamperer,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';
import { assembleHarness, userMessage, type SessionHarness } from '../support/session-harness.js';

const up = await redisReadyFor('Redis lost replies spec');

/** The bound under test: every call must settle within twice this (a write may need two trips). */
const COMMAND_TIMEOUT_MS = 400;
const SETTLED_WITHIN_MS = 2 * COMMAND_TIMEOUT_MS + 600;
/** Without a bound the calls below never settle: the test times out instead of hanging the run. */
const TEST_TIMEOUT_MS = 10_000;

/** The commit (and fence) scripts; ioredis sends them as EVALSHA, EVAL after a NOSCRIPT. */
const COMMIT_REQUEST = /\r\nevalsha\r\n|\r\neval\r\n/i;
const ITEM_READ_REQUEST = /\r\nzrange\r\n/i;

/** How `pending` settled: in time or not, resolved or with which retryable error and text. */
async function settle(pending: Promise<unknown>) {
  const started = Date.now();
  const error = await pending.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  return {
    inTime: Date.now() - started < SETTLED_WITHIN_MS,
    outcome:
      error === undefined
        ? 'resolved'
        : error instanceof StorageUnavailableError && error.retryable
          ? 'StorageUnavailableError'
          : error instanceof Error
            ? error.name
            : typeof error,
    message: error instanceof Error ? error.message : '',
  };
}

const resolvedInTime = { inTime: true, outcome: 'resolved', message: '' };
const unavailableInTime = (message: RegExp) => ({
  inTime: true,
  outcome: 'StorageUnavailableError',
  message: expect.stringMatching(message),
});

const appendOperation = (session: EncryptedSession, operationId: string) =>
  session.applyHistoryTransaction({
    operationId,
    transaction: { type: 'append_items', items: [userMessage('two')] },
  });

for (const clientKind of ['own client (url)', "host's client"] as const) {
  describe.skipIf(!up)(`Redis: calls in flight when the connection breaks, ${clientKind}`, () => {
    let proxy: RedisFaultProxy;
    let hostClient: Redis | undefined;
    let redis: RedisTestStorage;
    let harness: SessionHarness;
    let admin: Redis;
    let ref: SessionRef;
    let session: EncryptedSession;
    const own = clientKind === 'own client (url)';

    beforeEach(async () => {
      const target = new URL(REDIS_URL);
      proxy = await RedisFaultProxy.start({
        host: target.hostname,
        port: Number(target.port || 6379),
      });
      // A host's client with ioredis defaults: it resends unanswered commands on reconnect.
      hostClient = own ? undefined : new Redis(proxy.url(Number(target.pathname.slice(1) || 0)));
      redis = await createRedisTestStorage(
        { commandTimeoutMs: COMMAND_TIMEOUT_MS },
        own ? { url: proxy.url(Number(target.pathname.slice(1) || 0)) } : { client: hostClient },
      );
      harness = assembleHarness(
        'redis',
        redis.storage,
        {},
        {
          tamper: redisItemTamperer(redis.client, redis.keyPrefix),
          cleanup: () => redis.cleanup(),
        },
      );
      admin = redis.client;
      ref = { tenantId: 'default', sessionId: `s-${randomUUID()}` };
      session = await harness.service.open(ref.sessionId);
      await session.addItems([userMessage('one')]);
    });
    afterEach(async () => {
      await harness.close();
      hostClient?.disconnect();
      await proxy.close();
    });

    const itemCount = () => admin.zcard(new RedisKeyLayout(redis.keyPrefix).forSession(ref).items);
    const killFaultedServerSide = () => admin.call('CLIENT', 'KILL', 'ADDR', proxy.upstreamAddr);

    it(
      'addItems whose commit never reached Redis, connection killed server-side: settles in time, never applied twice',
      async () => {
        const armed = proxy.arm(COMMIT_REQUEST, 'hold-requests');
        const call = settle(session.addItems([userMessage('two')]));
        await armed;
        await killFaultedServerSide();

        // The module's own client never resends it: a definite "nothing was written". A
        // host's client resends it after reconnecting, and the commit applies once.
        expect(await call).toEqual(
          own ? unavailableInTime(/nothing was written; retry/) : resolvedInTime,
        );
        expect(await itemCount()).toBe(own ? 1 : 2);
        await session.addItems([userMessage('three')]);
        expect(await itemCount()).toBe(own ? 2 : 3);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'applyHistoryTransaction whose reply was lost, connection killed server-side: settles in time as applied, once',
      async () => {
        const armed = proxy.arm(COMMIT_REQUEST, 'drop-replies');
        const call = settle(appendOperation(session, 'op-1'));
        await armed;
        await killFaultedServerSide();

        // Redis applied it; the lost reply is recovered (resend or settling round trip).
        expect(await call).toEqual(resolvedInTime);
        expect(await itemCount()).toBe(2);
        await appendOperation(session, 'op-1');
        expect(await itemCount()).toBe(2);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'getItems whose reply was lost, connection cut: StorageUnavailableError in time',
      async () => {
        const armed = proxy.arm(ITEM_READ_REQUEST, 'drop-replies');
        const call = settle(session.getItems(5));
        await armed;
        proxy.cutFaulted();

        // A host's client resends the read after reconnecting, well within the bound.
        expect(await call).toEqual(own ? unavailableInTime(/no reply within/) : resolvedInTime);
        expect(await session.getItems()).toEqual([userMessage('one')]);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'getItems on a connection gone silent (replies dropped, never closed): StorageUnavailableError in time',
      async () => {
        const armed = proxy.arm(ITEM_READ_REQUEST, 'drop-replies');
        const call = settle(session.getItems());
        await armed;

        expect(await call).toEqual(unavailableInTime(/no reply within/));
        proxy.cutFaulted();
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'addItems on a connection gone silent: StorageUnavailableError in time, stored at most once',
      async () => {
        const armed = proxy.arm(COMMIT_REQUEST, 'drop-replies');
        const call = settle(session.addItems([userMessage('two')]));
        await armed;

        const outcome = await call;
        proxy.cutFaulted();

        expect(outcome).toEqual(unavailableInTime(/may or may not be stored/));
        // Redis applied it once; nothing resends it under a new commit id.
        expect(await itemCount()).toBe(2);
        await session.addItems([userMessage('three')]);
        expect(await itemCount()).toBe(3);
      },
      TEST_TIMEOUT_MS,
    );
  });
}
