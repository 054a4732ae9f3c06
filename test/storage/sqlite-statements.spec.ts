import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EncryptedSessionService, EnvKeyProvider, KeyRing } from '../../src/index.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { dialectFor } from '../../src/storage/typeorm/sql-dialect.js';
import { runSessionMigrations } from '../../src/storage/typeorm/migration-runner.js';
import { StatementRecorder } from '../support/statement-recorder.js';
import { newRootKeyEntry } from '../support/test-keys.js';

describe('SQLite statements', () => {
  let directory: string;
  let dataSource: DataSource;
  let recorder: StatementRecorder;
  let service: EncryptedSessionService;
  let storage: TypeOrmSessionStorage;

  beforeEach(async () => {
    directory = mkdtempSync(join(tmpdir(), 'nes-statements-'));
    recorder = new StatementRecorder();
    dataSource = await new DataSource({
      type: 'better-sqlite3',
      database: join(directory, 'db.sqlite'),
      enableWAL: true,
      logging: true,
      logger: recorder,
    }).initialize();
    await runSessionMigrations(dataSource, dialectFor(dataSource));
    storage = new TypeOrmSessionStorage({ dataSource, ownsDataSource: true });
    const provider = new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' });
    service = new EncryptedSessionService(storage, new KeyRing(storage, provider));
  });
  afterEach(async () => {
    await dataSource.destroy();
    rmSync(directory, { recursive: true, force: true });
  });

  it('runs one addItems call as one transaction with one batched insert', async () => {
    const session = await service.open('batched');
    await session.addItems([{ role: 'user', content: 'warm the key' }]);
    recorder.statements.length = 0;

    await session.addItems(
      Array.from({ length: 10 }, (_, i) => ({ role: 'user' as const, content: `item ${i}` })),
    );

    const statements = recorder.statements;
    expect(statements.filter((sql) => sql.startsWith('BEGIN'))).toHaveLength(1);
    expect(statements.filter((sql) => sql === 'COMMIT')).toHaveLength(1);
    const inserts = statements.filter((sql) => sql.startsWith('INSERT INTO "nes_items"'));
    expect(inserts).toHaveLength(1);
    expect(inserts[0].match(/\(\?, \?, \?, \?, \?, \?, \?\)/g)).toHaveLength(10);
    // Everything between BEGIN and COMMIT, nothing outside: the unit of work is whole.
    expect(statements[0]).toMatch(/^BEGIN/);
    expect(statements.at(-1)).toBe('COMMIT');
  });

  it('serves getItems(limit) from the primary key, newest first, without sorting', async () => {
    const session = await service.open('plan');
    await session.addItems([{ role: 'user', content: 'one' }]);
    recorder.statements.length = 0;
    await session.getItems(20);
    const latestN = recorder.statements.find((sql) => sql.includes('FROM "nes_items"'));
    expect(latestN).toMatch(/ORDER BY "seq" DESC LIMIT \?$/);
    const plan = await dataSource.query<Array<{ detail: string }>>(
      `EXPLAIN QUERY PLAN ${latestN}`,
      ['default', 'plan', 0, 20],
    );
    const details = plan.map((step) => step.detail).join('\n');
    expect(details).toMatch(
      /SEARCH nes_items USING INDEX sqlite_autoindex_nes_items_1 \(tenant_id=\? AND session_id=\?\)/,
    );
    expect(details).not.toMatch(/TEMP B-TREE/);
  });

  it('serves the expired-item scan from the expiry-scan index, as a range read in order', async () => {
    recorder.statements.length = 0;
    const now = Date.now();
    const min = Number.MIN_SAFE_INTEGER;
    await storage.maintenance.listExpiredItems!(now, undefined, 100);
    const scan = recorder.statements.find((sql) => sql.includes('FROM "nes_items"'));
    expect(scan).toMatch(
      /ORDER BY "expires_at" ASC, "tenant_id" ASC, "session_id" ASC, "seq" ASC LIMIT \?$/,
    );
    const plan = await dataSource.query<Array<{ detail: string }>>(`EXPLAIN QUERY PLAN ${scan}`, [
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
    const details = plan.map((step) => step.detail).join('\n');
    expect(details).toMatch(
      /SEARCH nes_items USING INDEX nes_items_expiry_scan \(expires_at>\? AND expires_at<\?\)/,
    );
    expect(details).not.toMatch(/SCAN nes_items|TEMP B-TREE/);
  });

  it('serves the idle-session scan from the idle index, as a range read in order', async () => {
    recorder.statements.length = 0;
    const before = Date.now();
    const min = Number.MIN_SAFE_INTEGER;
    await storage.maintenance.listIdleSessions!(before, undefined, 100);
    const scan = recorder.statements.find((sql) => sql.includes('FROM "nes_sessions"'));
    expect(scan).toMatch(
      /ORDER BY "last_activity_at" ASC, "tenant_id" ASC, "session_id" ASC LIMIT \?$/,
    );
    const plan = await dataSource.query<Array<{ detail: string }>>(`EXPLAIN QUERY PLAN ${scan}`, [
      before,
      min,
      min,
      min,
      '',
      '',
      '',
      100,
    ]);
    const details = plan.map((step) => step.detail).join('\n');
    expect(details).toMatch(
      /SEARCH nes_sessions USING INDEX nes_sessions_idle \(last_activity_at>\? AND last_activity_at<\?\)/,
    );
    expect(details).not.toMatch(/SCAN nes_sessions|TEMP B-TREE/);
  });
});
