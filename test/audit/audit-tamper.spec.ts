import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditChainOf, runAs, tenantChainId } from '../../src/audit/index.js';
import { InvalidArgumentError } from '../../src/index.js';
import { auditRigOn, onSqlBackends, type AuditRig } from '../support/audit-rig.js';
import { userMessage, type HarnessFactory } from '../support/session-harness.js';

/*
 * Tampering with the trail in SQL, as a database user could, and the verifier naming the first
 * broken record and why. (Cut tails, forged or missing checkpoints, a full rewrite with a stolen
 * MAC key and a chain deleted whole are caught through checkpoints: see the checkpoint specs.)
 */

const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };

/** A session whose chain holds five records: create, append, read, append, read. */
async function auditedSession(rig: AuditRig, sessionId: string): Promise<string> {
  await runAs(actor, async () => {
    const session = await rig.sessions.open(sessionId, { tenantId: 'clinic' });
    await session.addItems([userMessage('one'), userMessage('two')]);
    await session.getItems();
    await session.addItems([userMessage('three')]);
    await session.getItems();
  });
  return auditChainOf({ tenantId: 'clinic', sessionId }).chainId;
}

const verify = (rig: AuditRig, chainId: string) =>
  runAs(actor, () => rig.audit.verify({ chainId })).then((result) => result.chains[0]);

function describeTamperDetection(name: string, createHarness: HarnessFactory, skip = false) {
  describe.skipIf(skip)(`${name}: the verifier names SQL tampering`, () => {
    let rig: AuditRig;
    beforeAll(async () => {
      rig = await auditRigOn(createHarness);
    });
    afterAll(() => rig?.harness.close());

    it('an untouched chain verifies through its last record', async () => {
      const chainId = await auditedSession(rig, 'untouched');
      expect(await verify(rig, chainId)).toEqual({ ok: true, chainId, verifiedThroughSeq: 5 });
    });

    it('an edited field: mac_mismatch at that record', async () => {
      const chainId = await auditedSession(rig, 'edited');
      await rig.sql(
        `UPDATE "nes_audit_records" SET "body" = REPLACE("body", ?, ?) WHERE "chain_id" = ? AND "seq" = 2`,
        ['"count":2', '"count":9', chainId],
      );
      expect(await verify(rig, chainId)).toMatchObject({
        ok: false,
        firstBadSeq: 2,
        reason: 'mac_mismatch',
        verifiedThroughSeq: 1,
      });
    });

    it('a deleted record: a gap where it was', async () => {
      const chainId = await auditedSession(rig, 'deleted');
      await rig.sql(`DELETE FROM "nes_audit_records" WHERE "chain_id" = ? AND "seq" = 3`, [
        chainId,
      ]);
      expect(await verify(rig, chainId)).toMatchObject({ firstBadSeq: 3, reason: 'gap' });
    });

    it('two records swapped: prev_mac_mismatch at the first of them', async () => {
      const chainId = await auditedSession(rig, 'reordered');
      await rig.sql(
        `UPDATE "nes_audit_records" SET "seq" = 100 WHERE "chain_id" = ? AND "seq" = 2`,
        [chainId],
      );
      await rig.sql(`UPDATE "nes_audit_records" SET "seq" = 2 WHERE "chain_id" = ? AND "seq" = 3`, [
        chainId,
      ]);
      await rig.sql(
        `UPDATE "nes_audit_records" SET "seq" = 3 WHERE "chain_id" = ? AND "seq" = 100`,
        [chainId],
      );
      expect(await verify(rig, chainId)).toMatchObject({
        firstBadSeq: 2,
        reason: 'prev_mac_mismatch',
      });
    });

    it('a record inserted without the MAC key: mac_mismatch at the insert', async () => {
      const chainId = await auditedSession(rig, 'inserted');
      await rig.sql(
        `UPDATE "nes_audit_records" SET "seq" = "seq" + 1000 WHERE "chain_id" = ? AND "seq" >= 3`,
        [chainId],
      );
      await rig.sql(
        `UPDATE "nes_audit_records" SET "seq" = "seq" - 999 WHERE "chain_id" = ? AND "seq" > 1000`,
        [chainId],
      );
      // A copy of record 2 at seq 3, linked to it, with a MAC the forger had to make up.
      await rig.sql(
        `INSERT INTO "nes_audit_records" SELECT "chain_id", 3, "tenant_id", "session_id", "event_id", "event_time", "action", "outcome", "actor_id", "subject_ref", "mac_key_id", "mac", ?, "body" FROM "nes_audit_records" WHERE "chain_id" = ? AND "seq" = 2`,
        [randomBytes(32), chainId],
      );
      expect(await verify(rig, chainId)).toMatchObject({ firstBadSeq: 3, reason: 'mac_mismatch' });
    });

    it("a record spliced in from another session's chain: its MAC binds its own chain", async () => {
      const chainId = await auditedSession(rig, 'spliced-into');
      const otherId = await auditedSession(rig, 'spliced-from');
      await rig.sql(`DELETE FROM "nes_audit_records" WHERE "chain_id" = ? AND "seq" = 5`, [
        chainId,
      ]);
      await rig.sql(
        `INSERT INTO "nes_audit_records" SELECT ?, "seq", "tenant_id", "session_id", "event_id", "event_time", "action", "outcome", "actor_id", "subject_ref", "mac_key_id", "prev_mac", "mac", "body" FROM "nes_audit_records" WHERE "chain_id" = ? AND "seq" = 5`,
        [chainId, otherId],
      );
      expect(await verify(rig, chainId)).toMatchObject({ firstBadSeq: 5 });
      expect((await verify(rig, chainId)).reason).toMatch(/prev_mac_mismatch|mac_mismatch/);
    });

    it('a MAC key id the trail never had: unknown_key', async () => {
      const chainId = await auditedSession(rig, 'unknown-key');
      await rig.sql(
        `UPDATE "nes_audit_records" SET "mac_key_id" = '00000000-0000-4000-8000-00000000dead' WHERE "chain_id" = ? AND "seq" = 4`,
        [chainId],
      );
      expect(await verify(rig, chainId)).toMatchObject({ firstBadSeq: 4, reason: 'unknown_key' });
    });

    it('verifies a range of a chain, trusting the record before it', async () => {
      const chainId = await auditedSession(rig, 'range');
      const result = await runAs(actor, () => rig.audit.verify({ chainId, fromSeq: 3, toSeq: 4 }));
      expect(result.chains).toEqual([{ ok: true, chainId, verifiedThroughSeq: 4 }]);
    });

    it("verifies every chain of a tenant, and records the verification on the tenant's chain", async () => {
      const result = await runAs(actor, () => rig.audit.verify({ tenantId: 'clinic' }));
      expect(result.ok).toBe(false);
      expect(result.chains.filter((chain) => !chain.ok).length).toBeGreaterThanOrEqual(6);
      const control = await rig.harness.storage.audit!.readChain(
        { chainId: tenantChainId('clinic'), tenantId: 'clinic', sessionId: null },
        0,
        100,
      );
      const last = JSON.parse(control.at(-1)!.body) as { action: string; outcome: string };
      expect(last).toMatchObject({ action: 'audit.verify', outcome: 'failure' });
    });

    it('refuses a chain id this module never writes', async () => {
      await expect(runAs(actor, () => rig.audit.verify({ chainId: 'nes_items' }))).rejects.toThrow(
        InvalidArgumentError,
      );
    });
  });
}

await onSqlBackends(describeTamperDetection);
