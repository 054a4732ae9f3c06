import { afterAll, describe, expect, it } from 'vitest';
import { AuditWriteError, type SessionRef } from '../../src/index.js';
import type { SessionStorage } from '../../src/storage/storage.ports.js';
import { appendWithAudit, chainOf } from '../support/audit-records.js';
import { newSessionRecord } from '../support/session-records.js';
import {
  sqlServerHarness,
  sqliteHarness,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';
import { sqlServerUp } from '../support/sql-server-support.js';

/*
 * Fail closed, with real failures of the database (no mock): a trigger that refuses the audit
 * insert, and on SQLite a database file at its size limit. The change and its audit record are
 * one unit: when the record cannot be written, the unit fails with AuditWriteError and nothing
 * of the change is stored.
 */

const CANARY = 'canary-audit-body-7f3a';

/** SQL that makes the audit records table refuse every insert, and SQL that undoes it. */
const REFUSING_TRIGGER: Partial<Record<string, { create: string[]; drop: string[] }>> = {
  sqlite: {
    create: [
      `CREATE TRIGGER "refuse_audit" BEFORE INSERT ON "nes_audit_records" BEGIN SELECT RAISE(ABORT, 'audit store refuses writes'); END`,
    ],
    drop: ['DROP TRIGGER "refuse_audit"'],
  },
  postgres: {
    create: [
      `CREATE FUNCTION "refuse_audit"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit store refuses writes'; END $$`,
      `CREATE TRIGGER "refuse_audit" BEFORE INSERT ON "nes_audit_records" FOR EACH ROW EXECUTE FUNCTION "refuse_audit"()`,
    ],
    drop: ['DROP TRIGGER "refuse_audit" ON "nes_audit_records"', 'DROP FUNCTION "refuse_audit"()'],
  },
  mariadb: {
    create: [
      "CREATE TRIGGER `refuse_audit` BEFORE INSERT ON `nes_audit_records` FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit store refuses writes'",
    ],
    drop: ['DROP TRIGGER `refuse_audit`'],
  },
};

/** What the session holds: its items' seqs, its counter and its chain's seq. */
async function storedState(storage: SessionStorage, ref: SessionRef) {
  const chain = chainOf(ref.tenantId, ref.sessionId);
  return {
    items: await storage.read(ref, async (scope) =>
      (await scope.items.listVisible(0, 100)).map((stored) => stored.seq),
    ),
    nextSeq: (await storage.read(ref, (scope) => scope.session.find()))!.nextSeq,
    chainSeq: (await storage.audit!.findHead(chain))?.seq ?? 0,
  };
}

function describeFailClosed(name: string, createHarness: HarnessFactory, skip = false): void {
  describe.skipIf(skip)(`${name}: an audit record that cannot be written fails the change`, () => {
    let harness: SessionHarness | undefined;
    afterAll(() => harness?.close());

    it('a trigger refusing the audit insert: AuditWriteError, and the item is not stored', async () => {
      harness = await createHarness();
      const { storage, dataSource } = harness;
      const ref = { tenantId: 'fail-closed', sessionId: `trigger-${name}` };
      await storage.transaction(ref, (scope) =>
        scope.session.insertIfAbsent(newSessionRecord(ref)),
      );
      expect(await appendWithAudit(storage, ref)).toBeUndefined();
      const before = await storedState(storage, ref);
      expect(before).toEqual({ items: [1], nextSeq: 2, chainSeq: 1 });

      const trigger = REFUSING_TRIGGER[name];
      for (const statement of trigger!.create) await dataSource!.query(statement);
      try {
        const error = await appendWithAudit(storage, ref, CANARY);
        expect(error).toBeInstanceOf(AuditWriteError);
        expect((error as Error).message).toMatch(/nothing of it was stored/);
        expect((error as Error).message).not.toContain(CANARY);
        expect(await storedState(storage, ref)).toEqual(before);
      } finally {
        for (const statement of trigger!.drop) await dataSource!.query(statement);
      }
      // Once the audit store accepts writes again, so does the session.
      expect(await appendWithAudit(storage, ref)).toBeUndefined();
      expect(await storedState(storage, ref)).toEqual({ items: [1, 2], nextSeq: 3, chainSeq: 2 });
    });
  });
}

describeFailClosed('sqlite', sqliteHarness);

describe('sqlite: a database file at its size limit', () => {
  it('AuditWriteError when the audit record does not fit, and the item is not stored', async () => {
    const harness = await sqliteHarness();
    try {
      const { storage, dataSource } = harness;
      const ref = { tenantId: 'fail-closed', sessionId: 'disk-full' };
      await storage.transaction(ref, (scope) =>
        scope.session.insertIfAbsent(newSessionRecord(ref)),
      );
      const before = await storedState(storage, ref);
      // A full disk, simulated: the file may grow by a few pages only, so a small item still
      // fits and a 256 KiB audit record does not.
      const [{ page_count: pages }] =
        await dataSource!.query<Array<{ page_count: number }>>('PRAGMA page_count');
      await dataSource!.query(`PRAGMA max_page_count = ${pages + 4}`);
      const error = await appendWithAudit(storage, ref, CANARY.repeat(10_000));
      expect(error).toBeInstanceOf(AuditWriteError);
      expect((error as Error).message).not.toContain(CANARY);
      expect(await storedState(storage, ref)).toEqual(before);
    } finally {
      await harness.close();
    }
  });
});

const servers = [
  ['postgres', 'postgres'],
  ['mariadb', 'mysql'],
] as const;
for (const [name, type] of servers) {
  const up = await sqlServerUp(type);
  const { factory, dispose } = sqlServerHarness(type);
  afterAll(dispose);
  describeFailClosed(name, factory, !up);
}
