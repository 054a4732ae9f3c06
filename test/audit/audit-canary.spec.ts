import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Test } from '@nestjs/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AuditService,
  EncryptedSessionModule,
  EncryptedSessionService,
  runAs,
} from '../../src/index.js';
import { openSqliteDataSource } from '../../src/storage/typeorm/sqlite-data-source.js';
import { findSecret } from '../support/file-scan.js';

/*
 * Canaries: item content, a subject id, a bearer token passed in an item and the root key,
 * through every audited operation and its failures. None of them, plain, hex or base64, may
 * appear in an audit row, the winston copy of the trail, or an error message.
 */

const canary = (label: string) => `${label}-canary-${randomBytes(6).toString('hex')}`;

describe('the audit trail never holds what it protects', () => {
  const directory = mkdtempSync(join(tmpdir(), 'nes-audit-canary-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  it('no canary in audit rows, the winston file, or any error message', async () => {
    const content = canary('content');
    const subjectId = canary('subject');
    const token = `Bearer ${canary('token')}`;
    const rootKey = randomBytes(32).toString('base64');
    const path = join(directory, 'sessions.sqlite');
    const file = join(directory, 'audit.jsonl');
    const moduleRef = await Test.createTestingModule({
      imports: [
        EncryptedSessionModule.forRoot({
          keys: { env: { keys: `k1:${rootKey}`, activeKeyId: 'k1' } },
          storage: { type: 'sqlite', path },
          audit: { requireActor: true, winston: { file } },
        }),
      ],
    }).compile();
    await moduleRef.init();
    const sessions = moduleRef.get(EncryptedSessionService);
    const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };
    const errors: string[] = [];
    const collect = (error: unknown) => errors.push((error as Error).message);

    await runAs(actor, async () => {
      const session = await sessions.open('visit', { tenantId: 'clinic', subjectId });
      await session.addItems([
        { role: 'user', content },
        { role: 'user', content: token },
      ]);
      await session.getItems();
      await session.popItem();
      await sessions
        .open('visit', { tenantId: 'clinic', subjectId: canary('other') })
        .catch(collect);
      await session.clearSession();
      await moduleRef.get(AuditService).verify({ tenantId: 'clinic' });
      await moduleRef
        .get(AuditService)
        .accessReport({ tenantId: 'clinic', subjectId, from: 0, to: Date.now() + 1 });
    });
    await sessions.open('visit', { tenantId: 'clinic', subjectId }).catch(collect);
    expect(errors).toHaveLength(2);
    await moduleRef.close();

    const dataSource = await openSqliteDataSource({ path, synchronous: 'NORMAL' });
    const rows = JSON.stringify([
      await dataSource.query('SELECT * FROM "nes_audit_records"'),
      await dataSource.query('SELECT * FROM "nes_audit_heads"'),
    ]);
    await dataSource.destroy();
    const winstonLines = readFileSync(file, 'utf8');
    expect(winstonLines.split('\n').length).toBeGreaterThan(8);
    for (const secret of [content, subjectId, token, rootKey]) {
      expect(findSecret(rows, secret), 'audit rows').toEqual([]);
      expect(findSecret(winstonLines, secret), 'winston file').toEqual([]);
      expect(findSecret(errors.join('\n'), secret), 'error messages').toEqual([]);
    }
  });
});
