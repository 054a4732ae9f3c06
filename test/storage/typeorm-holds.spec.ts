import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { v7 as uuidv7 } from 'uuid';
import type { DataSource, MigrationInterface } from 'typeorm';
import type { SessionRef } from '../../src/index.js';
import type { LegalHoldStorage } from '../../src/storage/storage.ports.js';
import type { DataKeyRecord, LegalHoldRecord } from '../../src/storage/storage.records.js';
import { createLegalHoldsMigration } from '../../src/storage/typeorm/migrations/create-legal-holds.migration.js';
import { expiryScanIndexMigration } from '../../src/storage/typeorm/migrations/expiry-scan-index.migration.js';
import { buildSessionStatements } from '../../src/storage/typeorm/session-statements.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { tableNamesFor } from '../../src/storage/typeorm/table-names.js';
import {
  isolatedSqlServerHarness,
  sqliteHarness,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';
import { newSessionRecord } from '../support/session-records.js';
import { sqlServerUp } from '../support/sql-server-support.js';

/*
 * What the TypeORM adapter's holds and ledger need of each engine: the migration's tables and
 * indexes, ids that compare byte for byte whatever the database's collation, and (MariaDB) a
 * hold check inside a write unit that reads past the unit's start.
 */

const serversUp = {
  postgres: await sqlServerUp('postgres'),
  mysql: await sqlServerUp('mysql'),
};

type Engine = 'sqlite' | 'postgres' | 'postgres (ICU en-US)' | 'mariadb';

const engines: Array<{ engine: Engine; harness: HarnessFactory; up: boolean }> = [
  { engine: 'sqlite', harness: sqliteHarness, up: true },
  { engine: 'postgres', harness: isolatedSqlServerHarness('postgres'), up: serversUp.postgres },
  {
    engine: 'postgres (ICU en-US)',
    harness: isolatedSqlServerHarness('postgres', { postgresIcuLocale: 'en-US' }),
    up: serversUp.postgres,
  },
  { engine: 'mariadb', harness: isolatedSqlServerHarness('mysql'), up: serversUp.mysql },
];

const NOW = 1_767_000_000_000;

function holdOf(
  tenantId: string,
  target: { sessionId: string } | { subjectId: string },
  holdId = uuidv7(),
): LegalHoldRecord {
  return {
    holdId,
    tenantId,
    sessionId: 'sessionId' in target ? target.sessionId : null,
    subjectId: 'subjectId' in target ? target.subjectId : null,
    matterRef: 'matter-1',
    placedAt: NOW,
    placedBy: 'counsel',
    releasedAt: null,
    releasedBy: null,
  };
}

/** Rows of a query written with double-quoted identifiers, on any engine. */
function rows(
  dataSource: DataSource,
  statement: string,
  params: unknown[] = [],
): Promise<Array<Record<string, unknown>>> {
  return dataSource.query<Array<Record<string, unknown>>>(
    dialectFor(dataSource).sql(statement),
    params,
  );
}

const NEW_TABLES = "('nes_legal_holds', 'nes_erasure_ledger')";

/**
 * What the engine reports of the new tables, the same shape on each: their names, their
 * indexes other than the primary key's, their primary key columns, and each id column with
 * whether it compares by bytes (Postgres "C", MySQL varbinary(764), SQLite text with BINARY).
 */
async function schemaOf(dataSource: DataSource, engine: Engine) {
  if (engine === 'sqlite') {
    const objects = await rows(
      dataSource,
      `SELECT "type", "name" FROM sqlite_master WHERE "tbl_name" IN ${NEW_TABLES} AND "name" NOT LIKE 'sqlite_autoindex_%'`,
    );
    const columns = await rows(
      dataSource,
      `SELECT t."name" AS "t", c."name" AS "c", c."type" AS "type", c."pk" AS "pk" FROM sqlite_master t, pragma_table_info(t."name") c WHERE t."name" IN ${NEW_TABLES}`,
    );
    return {
      tables: objects.filter((row) => row.type === 'table').map((row) => String(row.name)),
      indexes: objects.filter((row) => row.type === 'index').map((row) => String(row.name)),
      primaryKeys: columns
        .filter((row) => Number(row.pk) > 0)
        .map((row) => `${String(row.t)}.${String(row.c)}`),
      idColumns: columns.map((row) => ({
        column: `${String(row.t)}.${String(row.c)}`,
        byBytes: String(row.type).toLowerCase() === 'text',
      })),
    };
  }
  if (engine === 'mariadb') {
    const tables = await rows(
      dataSource,
      `SELECT TABLE_NAME AS "name" FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ${NEW_TABLES}`,
    );
    const indexes = await rows(
      dataSource,
      `SELECT DISTINCT INDEX_NAME AS "name" FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ${NEW_TABLES} AND INDEX_NAME <> 'PRIMARY'`,
    );
    const columns = await rows(
      dataSource,
      `SELECT TABLE_NAME AS "t", COLUMN_NAME AS "c", COLUMN_TYPE AS "type", COLUMN_KEY AS "k" FROM information_schema.COLUMNS
       WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ${NEW_TABLES}`,
    );
    return {
      tables: tables.map((row) => String(row.name)),
      indexes: indexes.map((row) => String(row.name)),
      primaryKeys: columns
        .filter((row) => row.k === 'PRI')
        .map((row) => `${String(row.t)}.${String(row.c)}`),
      idColumns: columns.map((row) => ({
        column: `${String(row.t)}.${String(row.c)}`,
        byBytes: row.type === 'varbinary(764)',
      })),
    };
  }
  const tables = await rows(
    dataSource,
    `SELECT tablename AS "name" FROM pg_tables WHERE schemaname = current_schema() AND tablename IN ${NEW_TABLES}`,
  );
  const indexes = await rows(
    dataSource,
    `SELECT indexname AS "name" FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN ${NEW_TABLES} AND indexname NOT LIKE '%\\_pkey'`,
  );
  const columns = await rows(
    dataSource,
    `SELECT table_name AS "t", column_name AS "c", collation_name AS "collation" FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name IN ${NEW_TABLES}`,
  );
  const primaryKeys = await rows(
    dataSource,
    `SELECT i.indrelid::regclass::text AS "t", a.attname AS "c" FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
     WHERE i.indrelid IN ('nes_legal_holds'::regclass, 'nes_erasure_ledger'::regclass) AND i.indisprimary`,
  );
  return {
    tables: tables.map((row) => String(row.name)),
    indexes: indexes.map((row) => String(row.name)),
    primaryKeys: primaryKeys.map((row) => `${String(row.t)}.${String(row.c)}`),
    idColumns: columns.map((row) => ({
      column: `${String(row.t)}.${String(row.c)}`,
      byBytes: row.collation === 'C',
    })),
  };
}

/** A table's indexes other than its primary key's, each with its definition, on any engine. */
async function indexesOf(
  dataSource: DataSource,
  engine: Engine,
  table: string,
): Promise<Record<string, string>> {
  const p = dialectFor(dataSource).param(1);
  const statement =
    engine === 'sqlite'
      ? `SELECT "name", "sql" AS "def" FROM sqlite_master WHERE "type" = 'index' AND "tbl_name" = ${p} AND "name" NOT LIKE 'sqlite_autoindex_%'`
      : engine === 'mariadb'
        ? `SELECT INDEX_NAME AS "name", GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS "def" FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ${p} AND INDEX_NAME <> 'PRIMARY' GROUP BY INDEX_NAME`
        : `SELECT indexname AS "name", indexdef AS "def" FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ${p} AND indexname NOT LIKE '%\\_pkey'`;
  return Object.fromEntries(
    (await rows(dataSource, statement, [table])).map((row) => [String(row.name), String(row.def)]),
  );
}

/**
 * Runs `migration` again over the module's own run (nothing changes: `indexes` stay
 * `migrated`), down (the index names are `namesDown`), and up again (`migrated` once more).
 */
async function expectReappliedAndReverted(
  dataSource: DataSource,
  migration: new () => MigrationInterface,
  indexes: () => Promise<Record<string, string>>,
  migrated: Record<string, string>,
  namesDown: string[],
): Promise<void> {
  const applied = new migration();
  const runner = dataSource.createQueryRunner();
  try {
    // A host's runner applying it again over the module's run changes nothing.
    await applied.up(runner);
    expect(await indexes()).toEqual(migrated);
    await applied.down(runner);
    expect(Object.keys(await indexes()).toSorted()).toEqual(namesDown);
    await applied.up(runner);
    expect(await indexes()).toEqual(migrated);
  } finally {
    await runner.release();
  }
}

/** The insert statement of a hold, for a MariaDB connection of a test's own. */
const insertHoldOnMariadb = (hold: LegalHoldRecord): [string, unknown[]] => [
  'INSERT INTO `nes_legal_holds` (`hold_id`, `tenant_id`, `session_id`, `subject_id`, `matter_ref`, `placed_at`, `placed_by`) VALUES (?, ?, ?, ?, ?, ?, ?)',
  [hold.holdId, hold.tenantId, hold.sessionId, hold.subjectId, hold.matterRef, 0, 'counsel'],
];

describe.each(engines)(
  'holds, ledger and erasure writes on $engine (TypeORM)',
  ({ engine, harness: create, up: engineUp }) => {
    let harness: SessionHarness | undefined;
    afterEach(async () => {
      await harness?.close();
      harness = undefined;
    });

    const open = async () => {
      harness = await create();
      const { storage } = harness;
      if (!storage.holds || storage.maintenance?.supported !== true) {
        throw new Error('the TypeORM storage keeps no holds');
      }
      return {
        storage,
        dataSource: harness.dataSource!,
        holds: storage.holds,
        maintenance: storage.maintenance,
      };
    };

    it.skipIf(!engineUp)(
      'the migration creates the hold and ledger tables and their indexes',
      async () => {
        const { dataSource } = await open();
        const schema = await schemaOf(dataSource, engine);
        expect(schema.tables.toSorted()).toEqual(['nes_erasure_ledger', 'nes_legal_holds']);
        // The ledger is read by id only: no index beside its primary key.
        expect(schema.indexes.toSorted()).toEqual([
          'nes_legal_holds_session',
          'nes_legal_holds_subject',
        ]);
        expect(schema.primaryKeys.toSorted()).toEqual([
          'nes_erasure_ledger.erasure_id',
          'nes_legal_holds.hold_id',
        ]);
        // Every id column compares byte for byte: no PAD SPACE, case folding or locale order.
        const idColumns = schema.idColumns.filter(({ column }) => column.endsWith('_id'));
        expect(idColumns.map(({ column }) => column).toSorted()).toEqual([
          'nes_erasure_ledger.erasure_id',
          'nes_erasure_ledger.tenant_id',
          'nes_legal_holds.hold_id',
          'nes_legal_holds.session_id',
          'nes_legal_holds.subject_id',
          'nes_legal_holds.tenant_id',
        ]);
        expect(idColumns.filter(({ byBytes }) => !byBytes)).toEqual([]);
      },
    );

    it.skipIf(!engineUp)(
      "the migration replaces the sessions' activity index with the idle-scan index, again harmlessly, and puts it back on the way down",
      async () => {
        const { dataSource } = await open();
        const sessionIndexes = () => indexesOf(dataSource, engine, 'nes_sessions');
        const migrated = await sessionIndexes();
        expect(Object.keys(migrated).toSorted()).toEqual([
          'nes_sessions_idle',
          'nes_sessions_subject',
        ]);
        // Postgres: ids in the index by bytes ("C"), as the scan orders them.
        expect(migrated.nes_sessions_idle.replaceAll(/["`]/g, '')).toMatch(
          engine.startsWith('postgres')
            ? /\(last_activity_at, tenant_id COLLATE C, session_id COLLATE C\)/
            : /last_activity_at, ?tenant_id, ?session_id/,
        );

        await expectReappliedAndReverted(
          dataSource,
          createLegalHoldsMigration(),
          sessionIndexes,
          migrated,
          ['nes_sessions_activity', 'nes_sessions_subject'],
        );
      },
    );

    it.skipIf(!engineUp)(
      "the migration replaces the items' expiry index with the expiry-scan index, again harmlessly, and puts it back on the way down",
      async () => {
        const { dataSource } = await open();
        const itemIndexes = () => indexesOf(dataSource, engine, 'nes_items');
        const migrated = await itemIndexes();
        expect(Object.keys(migrated).toSorted()).toEqual([
          'nes_items_dek',
          'nes_items_expiry_scan',
        ]);
        // Postgres: ids in the index by bytes ("C"), as the scan orders them.
        expect(migrated.nes_items_expiry_scan.replaceAll(/["`]/g, '')).toMatch(
          engine.startsWith('postgres')
            ? /\(expires_at, tenant_id COLLATE C, session_id COLLATE C, seq\)/
            : /expires_at, ?tenant_id, ?session_id, ?seq/,
        );

        await expectReappliedAndReverted(
          dataSource,
          expiryScanIndexMigration(),
          itemIndexes,
          migrated,
          ['nes_items_dek', 'nes_items_expiry'],
        );
      },
    );

    it.skipIf(!engineUp)(
      'keeps ids apart that differ by case, a trailing space or Unicode normalisation',
      async () => {
        const { storage, holds, maintenance } = await open();
        const tenantId = 'acme';
        const composed = 'Jos\u00e9';
        const variants = [composed, 'Jose\u0301', 'jos\u00e9', `${composed} `];
        // Hold ids too: the primary key keeps each (ids are UUIDv7 in practice; storage takes any).
        const holdIds = ['hold-A', 'hold-a', 'hold-A ', 'hold-\uff21'];
        for (const [index, subjectId] of variants.entries()) {
          await holds.insert(holdOf(tenantId, { subjectId }, holdIds[index]));
        }
        for (const [index, subjectId] of variants.entries()) {
          expect((await holds.activeOnSubject(tenantId, subjectId)).map((h) => h.holdId)).toEqual([
            holdIds[index],
          ]);
          expect((await holds.find(holdIds[index]))?.subjectId).toBe(subjectId);
        }
        // In byte order: ' ' (0x20) < 'a' (0x61); 'A' (0x41) < 'a'; U+FF21 last.
        expect((await holds.list({ tenantId, limit: 10 })).map((h) => h.holdId)).toEqual([
          'hold-A',
          'hold-A ',
          'hold-a',
          'hold-\uff21',
        ]);
        await holds.insert(holdOf(tenantId, { sessionId: 'Chat' }));
        for (const sessionId of ['chat', 'Chat ', 'Cha\u0074\u200b']) {
          expect(await holds.activeCovering(tenantId, sessionId, null)).toEqual([]);
        }
        expect(await holds.activeCovering('acme ', 'Chat', null)).toEqual([]);

        // Sessions of subjects that differ the same ways are found apart.
        for (const [index, subjectId] of variants.entries()) {
          const ref: SessionRef = { tenantId, sessionId: `session-${index}` };
          await storage.transaction(ref, (scope) =>
            scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId }),
          );
        }
        for (const [index, subjectId] of variants.entries()) {
          const found = await maintenance.listSessionsOfSubject!(tenantId, subjectId, '', 10);
          expect(found.map((session) => session.sessionId)).toEqual([`session-${index}`]);
        }
        // And a unit's hold check follows its row's subject exactly.
        const covering = await storage.read({ tenantId, sessionId: 'session-1' }, async (scope) =>
          (await scope.holds!.covering()).map((h) => h.holdId),
        );
        expect(covering).toEqual(['hold-a']);
      },
    );

    it.skipIf(!engineUp)('lists sessions of a subject by session id bytes', async () => {
      const { storage, maintenance } = await open();
      // 's' before 'S' in en-US; by bytes 'S' (0x53) comes first.
      const ids = ['s', 'S', 'a', 'B', '\u00e9', 'e'];
      for (const sessionId of ids) {
        const ref = { tenantId: 'acme', sessionId };
        await storage.transaction(ref, (scope) =>
          scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId: 'p-1' }),
        );
      }
      const listed: string[] = [];
      let after = '';
      for (;;) {
        const page = await maintenance.listSessionsOfSubject!('acme', 'p-1', after, 2);
        listed.push(...page.map((session) => session.sessionId));
        if (page.length < 2) break;
        after = page.at(-1)!.sessionId;
      }
      expect(listed).toEqual(['B', 'S', 'a', 'e', 's', '\u00e9']);
    });

    it.skipIf(!engineUp)(
      "lists a session's keys by generation and destroys only its named live keys",
      async () => {
        const { storage } = await open();
        const ref = { tenantId: 'acme', sessionId: 'chat' };
        const neighbour = { tenantId: 'acme', sessionId: 'chat ' };
        const keyOf = (of: SessionRef, generation: number): DataKeyRecord => ({
          ...of,
          dekId: randomUUID(),
          subjectId: null,
          generation,
          firstSeq: generation,
          kekId: 'env:k1',
          wrappedKey: Buffer.alloc(40, generation),
          state: 'active',
          createdAt: NOW,
          destroyedAt: null,
        });
        const keys = [3, 1, 2].map((generation) => keyOf(ref, generation));
        const other = keyOf(neighbour, 1);
        for (const [of, records] of [
          [ref, keys],
          [neighbour, [other]],
        ] as const) {
          await storage.transaction(of, async (scope) => {
            await scope.session.insertIfAbsent(newSessionRecord(of));
            for (const key of records) await scope.dataKeys.insertIfAbsent(key);
          });
        }
        const first = keys[1];
        const destroy = (dekIds: string[]) =>
          storage.transaction(ref, (scope) => scope.dataKeys.destroyByIds!(dekIds, NOW + 1));
        // Another session's key and an unknown id are not this session's: left alone.
        expect(await destroy([first.dekId, other.dekId, randomUUID()])).toBe(1);
        expect(await destroy([first.dekId])).toBe(0);
        expect(await destroy([])).toBe(0);

        const listed = await storage.read(ref, (scope) => scope.dataKeys.listAll!());
        expect(listed.map((key) => [key.generation, key.state])).toEqual([
          [1, 'destroyed'],
          [2, 'active'],
          [3, 'active'],
        ]);
        expect(listed[0]).toMatchObject({ dekId: first.dekId, destroyedAt: NOW + 1 });
        expect(listed[0].wrappedKey).toHaveLength(0);
        const untouched = await storage.read(neighbour, (scope) => scope.dataKeys.listAll!());
        expect(untouched).toEqual([other]);
      },
    );

    it.skipIf(!engineUp)("the service's holds and erasure run on it end to end", async () => {
      const { storage, maintenance } = await open();
      const { service } = harness!;
      const chat = await service.open('chat', { subjectId: 'p-1' });
      await chat.addItems([{ role: 'user', content: 'remember this' }]);
      const hold = await service.placeHold({ subjectId: 'p-1', matterRef: 'case-7' });
      await expect(
        service.eraseSubject('p-1', { reason: 'subject-request' }),
      ).rejects.toMatchObject({ code: 'LEGAL_HOLD' });
      expect(await (await service.open('chat')).getItems()).toHaveLength(1);

      await service.releaseHold(hold.holdId);
      const receipt = await service.eraseSubject('p-1', { reason: 'subject-request' });
      expect(receipt).toMatchObject({ sessionIds: ['chat'], itemsDeleted: 1, keysDestroyed: 1 });
      expect(await maintenance.listSessionsOfSubject!('default', 'p-1', '', 10)).toEqual([]);
      const [entry] = await storage.erasureLedger!.list('', 10);
      expect(entry).toMatchObject({ erasureId: receipt.receiptId, receipt: expect.any(String) });
      expect(entry.completedAt).toEqual(expect.any(Number));
      // Nothing left to erase again.
      expect(await service.replayErasureLedger()).toMatchObject({
        sessionsErased: 0,
        keysDestroyed: 0,
        itemsDeleted: 0,
      });
    });

    it.skipIf(!engineUp)('refuses bad arguments before they reach the database', async () => {
      const { holds, storage, maintenance } = await open();
      const bad = holds as unknown as Record<
        keyof LegalHoldStorage,
        (...args: unknown[]) => unknown
      >;
      await expect(bad.find(42)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(bad.list({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(
        bad.insert({ ...holdOf('acme', { sessionId: 'chat' }), subjectId: 'p-1' }),
      ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(
        bad.insert({ ...holdOf('acme', { sessionId: 'chat' }), matterRef: 'x'.repeat(192) }),
      ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(
        maintenance.listSessionsOfSubject!('acme', 'p-1', '', 1.5),
      ).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      await expect(storage.erasureLedger!.list('', -1)).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      expect(await holds.list({ limit: 10 })).toEqual([]);
    });
  },
);

describe.skipIf(!serversUp.mysql)('the hold check of a write unit on mariadb', () => {
  let harness: SessionHarness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  /** A session of subject p-1, and a connection of the test's own beside the storage's. */
  async function setUp() {
    harness = await isolatedSqlServerHarness('mysql')();
    const { storage } = harness;
    const ref = { tenantId: 'acme', sessionId: 'chat' };
    await storage.transaction(ref, (scope) =>
      scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId: 'p-1' }),
    );
    const other = harness.dataSource!.createQueryRunner();
    await other.connect();
    return { storage, ref, other };
  }

  it('sees a hold committed after the unit had read', async () => {
    const { storage, ref, other } = await setUp();
    const hold = holdOf('acme', { subjectId: 'p-1' });
    try {
      const seen = await storage.transaction(ref, async (scope) => {
        // The unit has read: the check must not answer from a snapshot of that time.
        await scope.items.listVisible(NOW, 10);
        expect(await scope.holds!.covering()).toEqual([]);
        await other.query(...insertHoldOnMariadb(hold));
        await scope.session.lockForWrite(NOW);
        return (await scope.holds!.covering()).map((h) => h.holdId);
      });
      expect(seen).toEqual([hold.holdId]);
    } finally {
      await other.release();
    }
  });

  it('waits for a hold being placed, and sees it once it commits', async () => {
    const { storage, ref, other } = await setUp();
    const hold = holdOf('acme', { sessionId: 'chat' });
    try {
      await other.query('START TRANSACTION');
      await other.query(...insertHoldOnMariadb(hold));
      let committed = false;
      const commitSoon = new Promise<void>((resolve, reject) => {
        setTimeout(() => {
          committed = true;
          other.query('COMMIT').then(() => resolve(), reject);
        }, 300);
      });
      const seen = await storage.transaction(ref, async (scope) => {
        await scope.session.lockForWrite(NOW);
        const covering = await scope.holds!.covering();
        // The locking read waited on the uncommitted row rather than skipping it.
        expect(committed).toBe(true);
        return covering.map((h) => h.holdId);
      });
      await commitSoon;
      expect(seen).toEqual([hold.holdId]);
    } finally {
      await other.release();
    }
  });
});

/** Enough rows that a planner prefers an index over reading the table. */
const PLAN_ROWS = 5000;

describe.each([
  { engine: 'postgres' as const, up: serversUp.postgres },
  { engine: 'mariadb' as const, up: serversUp.mysql },
])('the subject and hold lookups on $engine use their indexes', ({ engine, up: engineUp }) => {
  let harness: SessionHarness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  /** The plan of `statement` with `params`: the indexes it reads by, and whether it scans all. */
  async function planOf(dataSource: DataSource, statement: string, params: Array<string | number>) {
    if (engine === 'postgres') {
      // EXPLAIN takes no bind parameters: inline them (test values, no quotes inside).
      const inlined = statement.replace(/\$(\d+)/g, (_, n: string) => {
        const value = params[Number(n) - 1];
        return typeof value === 'string' ? `'${value}'` : String(value);
      });
      const plan = (await dataSource.query<Array<{ 'QUERY PLAN': string }>>(`EXPLAIN ${inlined}`))
        .map((row) => row['QUERY PLAN'])
        .join('\n');
      return {
        indexes: [
          ...plan.matchAll(
            /Index (?:Only )?Scan(?: Backward)? using (\w+)|Bitmap Index Scan on (\w+)/g,
          ),
        ]
          .map((match) => match[1] ?? match[2])
          .toSorted(),
        readsWholeTable: plan.includes('Seq Scan'),
      };
    }
    const plan = await dataSource.query<Array<{ key: string | null; type: string | null }>>(
      `EXPLAIN ${statement}`,
      params,
    );
    return {
      indexes: plan.flatMap((row) => (row.key ? row.key.split(',') : [])).toSorted(),
      readsWholeTable: plan.some((row) => row.type === 'ALL'),
    };
  }

  it.skipIf(!engineUp)(
    "reads a subject's sessions by the subject index, holds by theirs, and lists by the key",
    async () => {
      harness = await isolatedSqlServerHarness(engine === 'postgres' ? 'postgres' : 'mysql')();
      const dataSource = harness.dataSource!;
      const sql = buildSessionStatements(tableNamesFor(), dialectFor(dataSource));
      const fill =
        engine === 'postgres'
          ? [
              `INSERT INTO nes_sessions SELECT 'acme', 's-' || g, 'subject-' || (g % 1000), 0, 0, 1, NULL, false FROM generate_series(1, ${PLAN_ROWS}) g`,
              `INSERT INTO nes_legal_holds SELECT 'h-' || g, 'acme', CASE WHEN g % 2 = 0 THEN 's-' || g END, CASE WHEN g % 2 = 1 THEN 'subject-' || g END, 'm', 0, 'counsel', NULL, NULL FROM generate_series(1, ${PLAN_ROWS}) g`,
              'ANALYZE',
            ]
          : [
              `INSERT INTO nes_sessions SELECT 'acme', CONCAT('s-', seq), CONCAT('subject-', seq % 1000), 0, 0, 1, NULL, 0 FROM seq_1_to_${PLAN_ROWS}`,
              `INSERT INTO nes_legal_holds SELECT CONCAT('h-', seq), 'acme', IF(seq % 2 = 0, CONCAT('s-', seq), NULL), IF(seq % 2 = 1, CONCAT('subject-', seq), NULL), 'm', 0, 'counsel', NULL, NULL FROM seq_1_to_${PLAN_ROWS}`,
              'ANALYZE TABLE nes_sessions, nes_legal_holds',
            ];
      for (const statement of fill) await dataSource.query(statement);

      expect(
        await planOf(dataSource, sql.listSessionsOfSubject, ['acme', 'subject-7', '', 100]),
      ).toEqual({ indexes: ['nes_sessions_subject'], readsWholeTable: false });
      expect(await planOf(dataSource, sql.activeHoldsOnSubject, ['acme', 'subject-7'])).toEqual({
        indexes: ['nes_legal_holds_subject'],
        readsWholeTable: false,
      });
      expect(
        await planOf(dataSource, sql.activeHoldsCovering, ['acme', 's-8', 'subject-7']),
      ).toEqual({
        indexes: ['nes_legal_holds_session', 'nes_legal_holds_subject'],
        readsWholeTable: false,
      });
      const byKey = await planOf(dataSource, sql.listHolds.tenant, ['acme', 'h-5', 100]);
      expect(byKey.indexes).toEqual([engine === 'postgres' ? 'nes_legal_holds_pkey' : 'PRIMARY']);
    },
    60_000,
  );
});
