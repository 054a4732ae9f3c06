import type { AgentInputItem } from '@openai/agents-core';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IntegrityError,
  supportsMaintenance,
  type EncryptedSession,
  type SessionRef,
} from '../../src/index.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import {
  memoryHarness,
  sqlServerHarness,
  sqliteHarness,
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';
import { sqlServerUp } from '../support/sql-server-support.js';

const postgres = sqlServerHarness('postgres');
const mariadb = sqlServerHarness('mysql');
afterAll(async () => {
  await postgres.dispose();
  await mariadb.dispose();
});

interface Engine {
  readonly name: 'sqlite' | 'postgres' | 'mariadb';
  readonly factory: HarnessFactory;
  readonly up: boolean;
}
const sqlEngines: Engine[] = [
  { name: 'sqlite', factory: sqliteHarness, up: true },
  { name: 'postgres', factory: postgres.factory, up: await sqlServerUp('postgres') },
  { name: 'mariadb', factory: mariadb.factory, up: await sqlServerUp('mysql') },
];

/** What a call rejected with (fails the test when it resolves). */
async function thrownBy(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error: unknown) => error,
  );
}

/** 2^60: a bigint no JS number holds exactly. */
const BEYOND_2_53 = '1152921504606846976';

const items = (...texts: string[]) => texts.map((text) => userMessage(text)) as AgentInputItem[];

/** Every read path that maps item rows. */
const itemReadPaths: Array<[string, (session: EncryptedSession) => Promise<unknown>]> = [
  ['getItems()', (session) => session.getItems()],
  ['getItems(5)', (session) => session.getItems(5)],
  ['popItem()', (session) => session.popItem()],
  [
    'replace_suffix',
    (session) =>
      session.applyHistoryTransaction({
        operationId: 'op-replace',
        transaction: { type: 'replace_suffix', expectedSuffix: items('3'), replacement: [] },
      }),
  ],
];

/** Stored values of the wrong type, as SQL literals, per engine. */
const itemDamage: Record<Engine['name'], Array<[column: string, literal: string]>> = {
  sqlite: [
    ['ciphertext', '42'],
    ['ciphertext', '4.5'],
    ['ciphertext', "'canary-text'"],
    ['seq', "'canary-seq'"],
    ['seq', '2.5'],
    ['seq', BEYOND_2_53],
    ['expires_at', "'canary-expiry'"],
    ['expires_at', '4102444800000.5'],
    ['expires_at', BEYOND_2_53],
  ],
  postgres: [
    ['seq', BEYOND_2_53],
    ['expires_at', BEYOND_2_53],
  ],
  mariadb: [
    ['seq', BEYOND_2_53],
    ['expires_at', BEYOND_2_53],
  ],
};

describe.each(sqlEngines)('damaged stored values on $name', ({ name, factory, up }) => {
  let harness: SessionHarness;
  let ref: SessionRef;
  let session: EncryptedSession;
  let counter = 0;

  beforeEach(async () => {
    if (!up) return;
    harness = await factory();
    ref = { tenantId: 'default', sessionId: `damaged-${name}-${++counter}-${Date.now()}` };
    session = await harness.service.open(ref.sessionId);
    await session.addItems(items('1', '2', '3'));
  });
  afterEach(async () => {
    await harness?.close();
  });

  /** Sets a column of the session's rows in `table` to a SQL literal (test values only). */
  async function setColumn(table: string, column: string, literal: string, seq?: number) {
    const dataSource = harness.dataSource!;
    const dialect = dialectFor(dataSource);
    const p = (n: number) => dialect.param(n);
    await dataSource.query(
      dialect.sql(
        `UPDATE "nes_${table}" SET "${column}" = ${literal} WHERE "tenant_id" = ${p(1)} AND "session_id" = ${p(2)}${seq === undefined ? '' : ` AND "seq" = ${seq}`}`,
      ),
      [ref.tenantId, ref.sessionId],
    );
  }

  async function expectIntegrityError(call: Promise<unknown>, column: string) {
    const error = await thrownBy(call);
    expect(error).toBeInstanceOf(IntegrityError);
    const message = (error as Error).message;
    expect(message).toContain(`'${column}'`);
    expect(message).toContain(ref.sessionId);
    // Canary text must not reach the message (numbers could match an id by chance).
    expect(message).not.toContain('canary');
  }

  describe.each(itemDamage[name])('an item whose %s holds %s', (column, literal) => {
    it.skipIf(!up).each(itemReadPaths)(
      'fails %s with IntegrityError and deletes nothing',
      async (_, read) => {
        await setColumn('items', column, literal, 3);
        await expectIntegrityError(read(session), column);
        expect(await harness.tamper.countItems(ref)).toBe(3);
      },
    );
  });

  it.skipIf(!up)('fails the expired-item scan with IntegrityError naming the row', async () => {
    await setColumn('items', 'expires_at', '1');
    await setColumn('items', 'seq', BEYOND_2_53, 3);
    if (!supportsMaintenance(harness.storage)) throw new Error('no maintenance');
    const scan = harness.storage.maintenance.listExpiredItems!(Date.now(), undefined, 100);
    await expectIntegrityError(scan, 'seq');
    expect(await harness.tamper.countItems(ref)).toBe(3);
  });

  const sessionDamage: Array<[string, string]> =
    name === 'sqlite'
      ? [
          ['next_seq', "'canary-next'"],
          ['next_seq', '3.5'],
          ['next_seq', BEYOND_2_53],
        ]
      : [['next_seq', BEYOND_2_53]];
  describe.each(sessionDamage)('a session row whose %s holds %s', (column, literal) => {
    it.skipIf(!up)('fails getItems() and addItems with IntegrityError', async () => {
      await setColumn('sessions', column, literal);
      await expectIntegrityError(session.getItems(), column);
      await expectIntegrityError(session.addItems(items('4')), column);
      expect(await harness.tamper.countItems(ref)).toBe(3);
    });
  });

  const keyDamage: Array<[string, string]> =
    name === 'sqlite'
      ? [
          ['wrapped_key', "'canary-wrapped'"],
          ['wrapped_key', '7'],
          ['generation', "'canary-gen'"],
          ['generation', '1.5'],
          ['first_seq', "'canary-first'"],
          ['first_seq', BEYOND_2_53],
          ['state', '1'],
          ['state', "'canary-state'"],
        ]
      : [
          ['first_seq', BEYOND_2_53],
          ['state', "'canary-state'"],
        ];
  describe.each(keyDamage)('a data key row whose %s holds %s', (column, literal) => {
    it.skipIf(!up)('fails a read with a cold key cache with IntegrityError', async () => {
      await setColumn('data_keys', column, literal);
      harness.keyRing.clear();
      await expectIntegrityError(session.getItems(5), column);
      expect(await harness.tamper.countItems(ref)).toBe(3);
    });
  });
});

const counterEngines: Engine[] = [
  { name: 'sqlite', factory: sqliteHarness, up: true },
  ...sqlEngines.slice(1),
];

describe.each([...counterEngines, { name: 'memory' as const, factory: memoryHarness, up: true }])(
  'a sequence counter behind the stored items on $name',
  ({ name, factory, up }) => {
    it.skipIf(!up)('fails addItems with IntegrityError and keeps the items', async () => {
      const harness = await factory();
      try {
        const ref = { tenantId: 'default', sessionId: `behind-${name}-${Date.now()}` };
        const session = await harness.service.open(ref.sessionId);
        await session.addItems(items('1', '2', '3'));
        await rollBackCounter(harness, ref, 2);

        const error = await thrownBy(session.addItems(items('4')));
        expect(error).toBeInstanceOf(IntegrityError);
        expect((error as Error).message).toMatch(
          new RegExp(`sequence counter of session '${ref.sessionId}'.* is behind its stored items`),
        );
        expect(
          (await session.getItems(20)).map((item) => (item as { content: string }).content),
        ).toEqual(['1', '2', '3']);
      } finally {
        await harness.close();
      }
    });
  },
);

/** Sets the session's next_seq back, as a restored or rolled-back session row would. */
async function rollBackCounter(harness: SessionHarness, ref: SessionRef, nextSeq: number) {
  if (!harness.dataSource) {
    const internals = harness.storage as unknown as {
      sessions: Map<string, { record: SessionRef & { nextSeq: number } }>;
    };
    for (const state of internals.sessions.values()) {
      if (state.record.sessionId === ref.sessionId) state.record.nextSeq = nextSeq;
    }
    return;
  }
  const dialect = dialectFor(harness.dataSource);
  await harness.dataSource.query(
    dialect.sql(
      `UPDATE "nes_sessions" SET "next_seq" = ${dialect.param(1)} WHERE "tenant_id" = ${dialect.param(2)} AND "session_id" = ${dialect.param(3)}`,
    ),
    [nextSeq, ref.tenantId, ref.sessionId],
  );
}
