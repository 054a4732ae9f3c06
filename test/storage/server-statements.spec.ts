import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptedSessionService, EnvKeyProvider, KeyRing } from '../../src/index.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { runSessionMigrations } from '../../src/storage/typeorm/migration-runner.js';
import { type SqlServerType } from '../../src/storage/typeorm/server-data-source.js';
import {
  createTestDatabase,
  sqlServerUp,
  type TestDatabase,
} from '../support/sql-server-support.js';
import { StatementRecorder } from '../support/statement-recorder.js';
import { newRootKeyEntry } from '../support/test-keys.js';

const servers: SqlServerType[] = ['postgres', 'mysql'];
const up = Object.fromEntries(
  await Promise.all(servers.map(async (type) => [type, await sqlServerUp(type)] as const)),
) as Record<SqlServerType, boolean>;

/** Enough history that a planner prefers an index over reading the table. */
const HISTORY = 3000;

describe.each(servers)('statements on %s', (type) => {
  let database: TestDatabase;
  let dataSource: DataSource;
  let recorder: StatementRecorder;
  let service: EncryptedSessionService;
  let storage: TypeOrmSessionStorage;

  beforeAll(async () => {
    if (!up[type]) return;
    database = await createTestDatabase(type);
    recorder = new StatementRecorder();
    dataSource = await new DataSource({
      type,
      url: database.url,
      logging: true,
      logger: recorder,
    }).initialize();
    await runSessionMigrations(dataSource, dialectFor(dataSource));
    storage = new TypeOrmSessionStorage({ dataSource });
    const provider = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    service = new EncryptedSessionService(storage, new KeyRing(storage, provider));
    for (const id of ['plan', 'neighbour']) {
      const session = await service.open(id);
      for (let start = 0; start < HISTORY; start += 500) {
        await session.addItems(
          Array.from({ length: 500 }, (_, i) => ({
            role: 'user' as const,
            content: `${id} ${start + i}`,
          })),
        );
      }
    }
    await dataSource.query(type === 'postgres' ? 'ANALYZE' : 'ANALYZE TABLE `nes_items`');
  }, 120_000);
  afterAll(async () => {
    if (dataSource?.isInitialized) await dataSource.destroy();
    await database?.drop();
  });

  it.skipIf(!up[type])(
    'runs one addItems call as one transaction with one batched insert',
    async () => {
      const session = await service.open('batched');
      await session.addItems([{ role: 'user', content: 'warm the key' }]);
      recorder.statements.length = 0;

      await session.addItems(
        Array.from({ length: 10 }, (_, i) => ({ role: 'user' as const, content: `item ${i}` })),
      );

      const statements = recorder.statements;
      expect(statements[0]).toMatch(/^(BEGIN|SET TRANSACTION ISOLATION LEVEL READ COMMITTED)/);
      expect(statements.filter((sql) => /^(BEGIN|START TRANSACTION)/.test(sql))).toHaveLength(1);
      expect(statements.at(-1)).toBe('COMMIT');
      expect(statements.filter((sql) => sql === 'COMMIT')).toHaveLength(1);
      const inserts = statements.filter((sql) => /^INSERT INTO ["`]nes_items["`]/.test(sql));
      expect(inserts).toHaveLength(1);
      expect(inserts[0]!.match(/\((\$\d+|\?)(, (\$\d+|\?)){6}\)/g)).toHaveLength(10);
    },
  );

  it.skipIf(!up[type])(
    'serves getItems(limit) from the primary key, newest first, without sorting',
    async () => {
      const session = await service.open('plan');
      const poolStatements = recordPoolStatements(dataSource, type);
      expect(await session.getItems(20)).toHaveLength(20);
      const latestN = poolStatements.find((sql) => /FROM ["`]nes_items["`]/.test(sql))!;
      expect(latestN).toMatch(/ORDER BY ["`]seq["`] DESC LIMIT (\$4|\?)$/);
      const plan = await explainLatestN(dataSource, type, latestN, [
        'default',
        'plan',
        Date.now(),
        20,
      ]);
      expect(plan).toEqual({ walksPrimaryKey: true, sorts: false });
    },
  );

  it.skipIf(!up[type])(
    'serves the expired-item scan from the expiry-scan index, as a range read in order',
    async () => {
      const poolStatements = recordPoolStatements(dataSource, type);
      const now = Date.now();
      await storage.maintenance.listExpiredItems!(now, undefined, 100);
      const scan = poolStatements.find((sql) => /FROM ["`]nes_items["`]/.test(sql))!;
      expect(scan).toMatch(/WHERE ["`]expires_at["`] <= (\$1|\?) AND ["`]expires_at["`] >= /);
      const min = Number.MIN_SAFE_INTEGER;
      const plan = await explainExpiredScan(dataSource, type, scan, [
        now,
        min,
        min,
        min,
        '',
        '',
        '',
        '',
        min,
        100,
      ]);
      expect(plan).toEqual({ rangeOnExpiryIndex: true, sorts: false, readsWholeTable: false });
    },
  );

  it.skipIf(!up[type])(
    'has the indexes for expiry and idle scans and subject lookups',
    async () => {
      const rows = await dataSource.query<Array<{ name: string }>>(
        type === 'postgres'
          ? `SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()`
          : `SELECT DISTINCT INDEX_NAME AS name FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()`,
      );
      expect(rows.map((row) => row.name)).toEqual(
        expect.arrayContaining([
          'nes_items_expiry_scan',
          'nes_sessions_idle',
          'nes_sessions_subject',
          'nes_data_keys_subject',
          'nes_data_keys_kek',
        ]),
      );
      // The idle and expiry-scan indexes replaced those on last activity and expiry alone.
      expect(rows.map((row) => row.name)).not.toContain('nes_sessions_activity');
      expect(rows.map((row) => row.name)).not.toContain('nes_items_expiry');
    },
  );
});

/** Enough session rows that a planner prefers an index over reading the table. */
const SESSION_ROWS = 5000;

describe.each([
  { engine: 'postgres', type: 'postgres' as const, options: {} },
  {
    engine: 'postgres (ICU en-US collation)',
    type: 'postgres' as const,
    options: { postgresIcuLocale: 'en-US' },
  },
  { engine: 'mariadb', type: 'mysql' as const, options: {} },
])('the idle-session scan on $engine', ({ type, options }) => {
  let database: TestDatabase;
  let dataSource: DataSource;
  let storage: TypeOrmSessionStorage;

  beforeAll(async () => {
    if (!up[type]) return;
    database = await createTestDatabase(type, options);
    dataSource = await new DataSource({ type, url: database.url }).initialize();
    await runSessionMigrations(dataSource, dialectFor(dataSource));
    storage = new TypeOrmSessionStorage({ dataSource });
    // Sessions of a few tenants, last active a second apart, many at the same time.
    const fill =
      type === 'postgres'
        ? [
            `INSERT INTO nes_sessions SELECT 't-' || (g % 7), 's-' || g, NULL, 0, 1000 * (g / 10), 1, NULL, false FROM generate_series(1, ${SESSION_ROWS}) g`,
            'ANALYZE',
          ]
        : [
            `INSERT INTO nes_sessions SELECT CONCAT('t-', seq % 7), CONCAT('s-', seq), NULL, 0, 1000 * (seq DIV 10), 1, NULL, 0 FROM seq_1_to_${SESSION_ROWS}`,
            'ANALYZE TABLE nes_sessions',
          ];
    for (const statement of fill) await dataSource.query(statement);
  }, 60_000);
  afterAll(async () => {
    if (dataSource?.isInitialized) await dataSource.destroy();
    await database?.drop();
  });

  it.skipIf(!up[type])(
    'reads a range of the idle index in its order, from the first page and from a cursor',
    async () => {
      const poolStatements = recordPoolStatements(dataSource, type);
      const before = 1000 * (SESSION_ROWS / 20);
      const first = await storage.maintenance.listIdleSessions!(before, undefined, 100);
      expect(first.sessions).toHaveLength(100);
      const next = await storage.maintenance.listIdleSessions!(before, first.cursor, 100);
      expect(next.sessions).toHaveLength(100);
      const scan = poolStatements.find((sql) => /FROM ["`]nes_sessions["`]/.test(sql))!;
      expect(scan).toMatch(
        /WHERE ["`]last_activity_at["`] < (\$1|\?) AND ["`]last_activity_at["`] >= /,
      );
      const min = Number.MIN_SAFE_INTEGER;
      const last = first.sessions.at(-1)!;
      for (const after of [
        [min, '', ''],
        [last.lastActivityAt, last.tenantId, last.sessionId],
      ] as const) {
        const [at, tenantId, sessionId] = after;
        const plan = await explainIdleScan(dataSource, type, scan, [
          before,
          at,
          at,
          at,
          tenantId,
          tenantId,
          sessionId,
          100,
        ]);
        expect(plan, JSON.stringify(after)).toEqual({
          rangeOnIdleIndex: true,
          sorts: false,
          readsWholeTable: false,
        });
      }
    },
  );
});

/** What the engine's EXPLAIN says about the latest-N statement. */
async function explainLatestN(
  dataSource: DataSource,
  type: SqlServerType,
  statement: string,
  params: Array<string | number>,
): Promise<{ walksPrimaryKey: boolean; sorts: boolean }> {
  if (type === 'postgres') {
    // EXPLAIN takes no bind parameters: inline them (test values, no quotes inside).
    const inlined = statement.replace(/\$(\d)/g, (_, n: string) => {
      const value = params[Number(n) - 1];
      return typeof value === 'string' ? `'${value}'` : String(value);
    });
    const rows = await dataSource.query<Array<{ 'QUERY PLAN': string }>>(`EXPLAIN ${inlined}`);
    const text = rows.map((row) => row['QUERY PLAN']).join('\n');
    return {
      walksPrimaryKey: /Index Scan Backward using nes_items_pkey on nes_items/.test(text),
      sorts: /Sort/.test(text),
    };
  }
  const rows = await dataSource.query<
    Array<{
      key: string | null;
      Extra: string | null;
    }>
  >(`EXPLAIN ${statement}`, params);
  return {
    walksPrimaryKey: rows[0]?.key === 'PRIMARY',
    sorts: /filesort/.test(rows[0]?.Extra ?? ''),
  };
}

/** What the engine's EXPLAIN says about the expired-item scan. */
async function explainExpiredScan(
  dataSource: DataSource,
  type: SqlServerType,
  statement: string,
  params: Array<string | number>,
): Promise<{ rangeOnExpiryIndex: boolean; sorts: boolean; readsWholeTable: boolean }> {
  if (type === 'postgres') {
    // EXPLAIN takes no bind parameters: inline them (test values, no quotes inside).
    const inlined = statement.replace(/\$(\d+)/g, (_, n: string) => {
      const value = params[Number(n) - 1];
      return typeof value === 'string' ? `'${value}'` : String(value);
    });
    const rows = await dataSource.query<Array<{ 'QUERY PLAN': string }>>(`EXPLAIN ${inlined}`);
    const text = rows.map((row) => row['QUERY PLAN']).join('\n');
    return {
      rangeOnExpiryIndex:
        /Index Scan using nes_items_expiry_scan on nes_items/.test(text) &&
        /Index Cond: \(\(expires_at <= .*\) AND \(expires_at >= .*\)\)/.test(text),
      sorts: /Sort/.test(text),
      readsWholeTable: /Seq Scan/.test(text),
    };
  }
  const rows = await dataSource.query<
    Array<{ key: string | null; type: string | null; Extra: string | null }>
  >(`EXPLAIN ${statement}`, params);
  return {
    rangeOnExpiryIndex: rows[0]?.key === 'nes_items_expiry_scan' && rows[0]?.type === 'range',
    sorts: /filesort/.test(rows[0]?.Extra ?? ''),
    readsWholeTable: rows[0]?.type === 'ALL',
  };
}

/**
 * Records the statements sent straight to the driver's pool (reads skip TypeORM's runner and
 * its logger). The real pool still runs them; only the text is noted on the way.
 */
function recordPoolStatements(dataSource: DataSource, type: SqlServerType): string[] {
  const statements: string[] = [];
  const driver = dataSource.driver as unknown as Record<'master' | 'pool', Record<string, unknown>>;
  const pool = type === 'postgres' ? driver.master : driver.pool;
  const query = pool.query as (...args: unknown[]) => unknown;
  pool.query = (...args: unknown[]) => {
    const first = args[0];
    statements.push(typeof first === 'string' ? first : (first as { text: string }).text);
    return query.apply(pool, args);
  };
  return statements;
}

/** What the engine's EXPLAIN says about the idle-session scan. */
async function explainIdleScan(
  dataSource: DataSource,
  type: SqlServerType,
  statement: string,
  params: Array<string | number>,
): Promise<{ rangeOnIdleIndex: boolean; sorts: boolean; readsWholeTable: boolean }> {
  if (type === 'postgres') {
    // EXPLAIN takes no bind parameters: inline them (test values, no quotes inside).
    const inlined = statement.replace(/\$(\d+)/g, (_, n: string) => {
      const value = params[Number(n) - 1];
      return typeof value === 'string' ? `'${value}'` : String(value);
    });
    const rows = await dataSource.query<Array<{ 'QUERY PLAN': string }>>(`EXPLAIN ${inlined}`);
    const text = rows.map((row) => row['QUERY PLAN']).join('\n');
    return {
      rangeOnIdleIndex:
        /Index Scan using nes_sessions_idle on nes_sessions/.test(text) &&
        /Index Cond: \(\(last_activity_at < .*\) AND \(last_activity_at >= .*\)\)/.test(text),
      sorts: /Sort/.test(text),
      readsWholeTable: /Seq Scan/.test(text),
    };
  }
  const rows = await dataSource.query<
    Array<{ key: string | null; type: string | null; Extra: string | null }>
  >(`EXPLAIN ${statement}`, params);
  return {
    rangeOnIdleIndex: rows[0]?.key === 'nes_sessions_idle' && rows[0]?.type === 'range',
    sorts: /filesort/.test(rows[0]?.Extra ?? ''),
    readsWholeTable: rows[0]?.type === 'ALL',
  };
}
