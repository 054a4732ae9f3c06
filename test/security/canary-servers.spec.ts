import { randomBytes, randomUUID } from 'node:crypto';
import { Test, type TestingModule } from '@nestjs/testing';
import type { AgentInputItem } from '@openai/agents-core';
import { Redis } from 'ioredis';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EncryptedSessionModule,
  EncryptedSessionService,
  type StorageOptions,
} from '../../src/index.js';
import { findSecret } from '../support/file-scan.js';
import { REDIS_URL, keysUnderPrefix, redisReadyFor } from '../support/redis-support.js';
import {
  createTestDatabase,
  sqlServerUp,
  type TestDatabase,
} from '../support/sql-server-support.js';

const CANARY = `CANARY-${randomUUID()}-zebra`;

/** Every stored value of every table in a database, as latin1 text (binary columns included). */
async function dumpDatabase(url: string, type: 'postgres' | 'mysql'): Promise<string> {
  const dataSource = await new DataSource({ type, url }).initialize();
  try {
    const tables = (await dataSource.query(
      type === 'postgres'
        ? `SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()`
        : `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
    )) as Array<{ name: string }>;
    const parts: string[] = [];
    for (const { name } of tables) {
      const quoted = type === 'postgres' ? `"${name}"` : `\`${name}\``;
      for (const row of (await dataSource.query(`SELECT * FROM ${quoted}`)) as Array<
        Record<string, unknown>
      >) {
        for (const value of Object.values(row)) {
          parts.push(Buffer.isBuffer(value) ? value.toString('latin1') : String(value));
        }
      }
    }
    return parts.join('\n');
  } finally {
    await dataSource.destroy();
  }
}

/** Every value under a Redis key prefix, as latin1 text. */
async function dumpRedis(keyPrefix: string): Promise<string> {
  const client = new Redis(REDIS_URL);
  try {
    const parts: string[] = [];
    for (const key of await keysUnderPrefix(client, keyPrefix)) {
      const type = await client.type(key);
      const values =
        type === 'hash'
          ? Object.entries(await client.hgetallBuffer(key)).flat()
          : type === 'zset'
            ? await client.zrangeBuffer(key, 0, -1)
            : [await client.getBuffer(key)];
      parts.push(
        key,
        ...values.map((value) => (value ? Buffer.from(value).toString('latin1') : '')),
      );
    }
    return parts.join('\n');
  } finally {
    await client.quit();
  }
}

interface Backend {
  readonly name: string;
  readonly up: boolean;
  /** Creates what the backend needs and returns its storage options and a dump of it. */
  prepare(): Promise<{
    storage: StorageOptions;
    dump: () => Promise<string>;
    drop: () => Promise<void>;
  }>;
}

const sqlBackend = (type: 'postgres' | 'mysql', up: boolean): Backend => ({
  name: type === 'postgres' ? 'postgres' : 'mariadb',
  up,
  async prepare() {
    const database: TestDatabase = await createTestDatabase(type);
    return {
      storage: { type, url: database.url },
      dump: () => dumpDatabase(database.url, type),
      drop: () => database.drop(),
    };
  },
});

const backends: Backend[] = [
  sqlBackend('postgres', await sqlServerUp('postgres')),
  sqlBackend('mysql', await sqlServerUp('mysql')),
  {
    name: 'redis',
    up: await redisReadyFor('redis canary'),
    async prepare() {
      const keyPrefix = `nes-canary-${randomUUID().slice(0, 8)}:`;
      return {
        storage: { type: 'redis', url: REDIS_URL, keyPrefix },
        dump: () => dumpRedis(keyPrefix),
        async drop() {
          const client = new Redis(REDIS_URL);
          const keys = await keysUnderPrefix(client, keyPrefix);
          if (keys.length > 0) await client.unlink(...keys);
          await client.quit();
        },
      };
    },
  },
];

describe.each(backends)('canary on $name: nothing readable reaches the server', (backend) => {
  const rootKey = randomBytes(32).toString('base64');
  let moduleRef: TestingModule | undefined;
  let stored = '';
  let readBack: AgentInputItem[] = [];
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    if (!backend.up) return;
    const prepared = await backend.prepare();
    drop = prepared.drop;
    moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: `k1:${rootKey}`, activeKeyId: 'k1' } },
          storage: prepared.storage,
        }),
      ],
    }).compile();
    await moduleRef.init();
    const session = await moduleRef
      .get(EncryptedSessionService)
      .open(`canary-${randomUUID()}`, { subjectId: 'subject-1' });
    const canaryItem = (n: number) =>
      ({ role: 'user', content: `visit ${n}: ${CANARY} diagnosis` }) as AgentInputItem;
    await session.addItems([canaryItem(1), canaryItem(2)]);
    await session.applyHistoryTransaction({
      operationId: 'op-canary',
      transaction: { type: 'append_items', items: [canaryItem(3)] },
    });
    readBack = await session.getItems();
    stored = await prepared.dump();
  });
  afterAll(async () => {
    await moduleRef?.close();
    await drop?.();
  });

  it.skipIf(!backend.up)('stored and read back the canary items', () => {
    expect(readBack).toHaveLength(3);
    expect(JSON.stringify(readBack)).toContain(CANARY);
    // The dump sees what is stored in the clear, so an absent canary means something.
    expect(stored).toContain('subject-1');
  });

  it.skipIf(!backend.up)('keeps the item content out of everything the server stores', () => {
    expect(findSecret(stored, CANARY)).toEqual([]);
  });

  it.skipIf(!backend.up)('keeps the root key out of everything the server stores', () => {
    const rawKey = Buffer.from(rootKey, 'base64').toString('latin1');
    expect(stored.includes(rawKey)).toBe(false);
    expect(findSecret(stored, rootKey)).toEqual([]);
  });
});
