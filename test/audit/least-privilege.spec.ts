import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { AuditTrail, runAs } from '../../src/audit/index.js';
import { AuditService, EncryptedSessionService, KeyRing } from '../../src/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import { TypeOrmSessionStorage } from '../../src/storage/typeorm/typeorm.session-storage.js';
import { EnvKeyProvider } from '../../src/keys/index.js';
import {
  adminQuery,
  createMigratedTestDatabase,
  sqlServerUp,
  type MigratedTestDatabase,
} from '../support/sql-server-support.js';
import { userMessage } from '../support/session-harness.js';
import { newRootKeyEntry } from '../support/test-keys.js';

/*
 * The least-privilege SQL of docs/audit-trail.md, run exactly as written: the app role runs
 * every audited session operation, and can neither edit nor delete the trail.
 */

const DOC = readFileSync(new URL('../../docs/audit-trail.md', import.meta.url), 'utf8');

/** The SQL block after `<!-- least-privilege:<engine> -->`, as single statements. */
function documentedStatements(engine: 'postgres' | 'mysql'): string[] {
  const marker = `<!-- least-privilege:${engine} -->`;
  const after = DOC.slice(DOC.indexOf(marker) + marker.length);
  const block = /```sql\n([\s\S]*?)```/.exec(after)![1];
  const statements: string[] = [];
  let current = '';
  for (const line of block.split('\n')) {
    current += `${line}\n`;
    const dollars = current.split('$$').length - 1;
    const begins = (current.match(/\bBEGIN\b/g) ?? []).length;
    const ends = (current.match(/\bEND\b(?! IF)/g) ?? []).length;
    if (line.trimEnd().endsWith(';') && dollars % 2 === 0 && begins === ends) {
      statements.push(current.trim().replace(/;$/, ''));
      current = '';
    }
  }
  expect(current.trim()).toBe('');
  return statements;
}

const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };

const ENGINES = [
  { name: 'postgres', type: 'postgres' },
  { name: 'mariadb', type: 'mysql' },
] as const;

for (const { name, type } of ENGINES) {
  const up = await sqlServerUp(type);

  describe.skipIf(!up)(`${name}: the documented least-privilege app role`, () => {
    const role = `nes_app_${randomBytes(4).toString('hex')}`;
    let database: MigratedTestDatabase;
    let appDataSource: DataSource;
    let sessions: EncryptedSessionService;
    let audit: AuditService;

    beforeAll(async () => {
      database = await createMigratedTestDatabase(type);
      const admin = database.dataSource;
      if (type === 'postgres') {
        await adminQuery(type, [`CREATE ROLE ${role} LOGIN`]);
      } else {
        await adminQuery(type, [`CREATE USER '${role}'@'%'`]);
      }
      const dbName = new URL(database.database.url).pathname.slice(1);
      for (const statement of documentedStatements(type)) {
        await admin.query(
          statement.replaceAll('nes_app', role).replaceAll('sessions.nes_', `${dbName}.nes_`),
        );
      }
      const url = new URL(database.database.url);
      url.username = role;
      url.password = '';
      appDataSource = new DataSource({
        type: type === 'postgres' ? 'postgres' : 'mariadb',
        url: url.toString(),
      });
      await appDataSource.initialize();
      const storage = new TypeOrmSessionStorage({ dataSource: appDataSource });
      const keyRing = new KeyRing(
        storage,
        new EnvKeyProvider({ keys: newRootKeyEntry(), activeKeyId: 'k1' }),
      );
      const trail = new AuditTrail(storage.audit, new KeyRingAuditKeys(keyRing, 86_400_000), {
        requireActor: true,
        reads: 'group-commit',
      });
      sessions = new EncryptedSessionService(storage, keyRing, undefined, trail);
      audit = new AuditService(trail);
    });

    afterAll(async () => {
      if (appDataSource?.isInitialized) await appDataSource.destroy();
      await database?.dispose();
      await adminQuery(type, [
        type === 'postgres' ? `DROP ROLE IF EXISTS ${role}` : `DROP USER IF EXISTS '${role}'@'%'`,
      ]);
    });

    const asApp = (statement: string) =>
      appDataSource.query(type === 'mysql' ? statement.replaceAll('"', '`') : statement);

    it('runs every audited session operation, and the trail verifies', async () => {
      await runAs(actor, async () => {
        const session = await sessions.open('visit', { tenantId: 'clinic', subjectId: 'p-1' });
        await session.addItems([userMessage('a'), userMessage('b')]);
        expect(await session.getItems()).toHaveLength(2);
        await session.popItem();
        await session.clearSession();
        expect((await audit.verify({ tenantId: 'clinic' })).ok).toBe(true);
      });
    });

    it('places and releases a hold and erases a subject, and the trail verifies', async () => {
      await runAs(actor, async () => {
        const session = await sessions.open('chart', { tenantId: 'clinic', subjectId: 'p-2' });
        await session.addItems([userMessage('c')]);
        const hold = await sessions.placeHold({
          tenantId: 'clinic',
          subjectId: 'p-2',
          matterRef: 'case-1',
        });
        await sessions.releaseHold(hold.holdId);
        const receipt = await sessions.eraseSubject('p-2', {
          tenantId: 'clinic',
          reason: 'subject-request',
        });
        expect(receipt.sessionIds).toEqual(['chart']);
        expect((await audit.verify({ tenantId: 'clinic' })).ok).toBe(true);
      });
    });

    it.each([
      ['UPDATE', `UPDATE "nes_audit_records" SET "outcome" = 'failure'`],
      ['DELETE', `DELETE FROM "nes_audit_records"`],
      ['TRUNCATE', `TRUNCATE TABLE "nes_audit_records"`],
    ])('refuses %s of audit records', async (_, statement) => {
      await expect(asApp(statement)).rejects.toThrow(/denied/i);
    });

    it('refuses to move a chain head back', async () => {
      await expect(asApp(`UPDATE "nes_audit_heads" SET "seq" = "seq" - 1`)).rejects.toThrow(
        /only move forward/,
      );
    });
  });
}
