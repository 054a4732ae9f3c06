import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  auditChainOf,
  bodyDigest,
  chainMac,
  checkpointSignatureHolds,
  runAs,
  signingKeyIdOf,
  type AuditCheckpoint,
} from '../../src/audit/index.js';
import { auditRigOn, onSqlBackends, type AuditRig } from '../support/audit-rig.js';
import { userMessage, type HarnessFactory } from '../support/session-harness.js';

/*
 * What only a signed checkpoint shows, tampering in SQL: a cut tail, a chain deleted whole, a
 * rewrite by someone holding the MAC key (the checkpoint copy outside the database catches
 * it), a forged or edited checkpoint, and the newest checkpoint deleted.
 */

const actor = { type: 'user' as const, id: 'nurse-17', tenantId: 'clinic' };

/** A fresh Ed25519 signing key for checkpoints. */
function signer() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, keyId: signingKeyIdOf(publicKey) };
}

/** A tenant with two sessions of a few records each, and a checkpoint over them. */
async function checkpointedTenant(rig: AuditRig, tenantId: string) {
  const as = { ...actor, tenantId };
  await runAs(as, async () => {
    for (const sessionId of ['a', 'b']) {
      const session = await rig.sessions.open(sessionId, { tenantId });
      await session.addItems([userMessage('one')]);
      await session.getItems();
    }
  });
  const checkpoint = await runAs(as, () => rig.audit.checkpoint({ tenantId }));
  return {
    as,
    checkpoint,
    chainA: auditChainOf({ tenantId, sessionId: 'a' }).chainId,
    verify: (external?: AuditCheckpoint) =>
      runAs(as, () => rig.audit.verify({ tenantId, checkpoint: external })),
  };
}

function describeCheckpointTampering(name: string, createHarness: HarnessFactory, skip = false) {
  describe.skipIf(skip)(`${name}: checkpoints show what chains alone cannot`, () => {
    let rig: AuditRig;
    beforeAll(async () => {
      rig = await auditRigOn(createHarness, signer());
    });
    afterAll(() => rig?.harness.close());

    it('signs a checkpoint auditors verify offline, linked to the one before', async () => {
      const { checkpoint, as, verify } = await checkpointedTenant(rig, 'untouched');
      // The two sessions' chains (the tenant's own chain records the checkpoint after it).
      expect(checkpoint.chains).toBe(2);
      const { createPublicKey } = await import('node:crypto');
      const publicKey = createPublicKey(rig.audit.checkpointPublicKey()!.pem);
      expect(checkpointSignatureHolds(checkpoint, publicKey)).toBe(true);
      const next = await runAs(as, () => rig.audit.checkpoint({ tenantId: 'untouched' }));
      expect(next.previousSignature).toBe(checkpoint.signature);
      const result = await verify();
      expect(result.ok).toBe(true);
      expect(result.checkpoint).toEqual({ ok: true, checkpointId: next.checkpointId });
    });

    it('a cut tail: the chain ends before its checkpointed head', async () => {
      const { chainA, verify } = await checkpointedTenant(rig, 'cut-tail');
      await rig.sql(`DELETE FROM "nes_audit_records" WHERE "chain_id" = ? AND "seq" > 2`, [chainA]);
      await rig.sql(`UPDATE "nes_audit_heads" SET "seq" = 2 WHERE "chain_id" = ?`, [chainA]);
      const chain = (await verify()).chains.find((result) => result.chainId === chainA);
      expect(chain).toMatchObject({ ok: false, reason: 'truncated', firstBadSeq: 3 });
    });

    it('a chain deleted whole, head and all: missing', async () => {
      const { chainA, verify } = await checkpointedTenant(rig, 'deleted-chain');
      await rig.sql(`DELETE FROM "nes_audit_records" WHERE "chain_id" = ?`, [chainA]);
      await rig.sql(`DELETE FROM "nes_audit_heads" WHERE "chain_id" = ?`, [chainA]);
      const chain = (await verify()).chains.find((result) => result.chainId === chainA);
      expect(chain).toMatchObject({ ok: false, reason: 'missing' });
    });

    it('a rewrite with the stolen MAC key: checkpoint_mismatch against the copy outside', async () => {
      const { chainA, checkpoint, verify } = await checkpointedTenant(rig, 'rewritten');
      // The attacker edits the last record and recomputes its MAC with the real key.
      const [last] = (await rig.sql(
        `SELECT "seq", "prev_mac", "mac_key_id", "body" FROM "nes_audit_records" WHERE "chain_id" = ? ORDER BY "seq" DESC LIMIT 1`,
        [chainA],
      )) as Array<{
        seq: number | string;
        prev_mac: Buffer;
        mac_key_id: Buffer | string;
        body: string;
      }>;
      const macKeyId = String(last.mac_key_id);
      const body = last.body.replace('"count":1', '"count":0');
      const mac = chainMac((await rig.keys.macKey(macKeyId))!, {
        chainId: chainA,
        seq: Number(last.seq),
        prevMac: last.prev_mac,
        macKeyId,
        eventDigest: bodyDigest(body),
      });
      await rig.sql(
        `UPDATE "nes_audit_records" SET "body" = ?, "mac" = ? WHERE "chain_id" = ? AND "seq" = ?`,
        [body, mac, chainA, Number(last.seq)],
      );
      await rig.sql(`UPDATE "nes_audit_heads" SET "mac" = ? WHERE "chain_id" = ?`, [mac, chainA]);
      const result = await verify(checkpoint);
      expect(result.ok).toBe(false);
      const chain = result.chains.find((entry) => entry.chainId === chainA);
      expect(chain).toMatchObject({ ok: false, reason: 'checkpoint_mismatch' });
    });

    it('a checkpoint edited in the database: its signature no longer holds', async () => {
      const { verify } = await checkpointedTenant(rig, 'forged');
      await rig.sql(
        `UPDATE "nes_audit_checkpoints" SET "checkpoint" = REPLACE("checkpoint", ?, ?) WHERE "tenant_id" = ?`,
        ['"chains":2', '"chains":1', 'forged'],
      );
      expect((await verify()).checkpoint).toMatchObject({
        ok: false,
        reason: 'checkpoint_signature',
      });
    });

    it('the heads stored with a checkpoint edited: they no longer match its signed root', async () => {
      const { verify } = await checkpointedTenant(rig, 'edited-heads');
      await rig.sql(`UPDATE "nes_audit_checkpoints" SET "heads" = ? WHERE "tenant_id" = ?`, [
        '[]',
        'edited-heads',
      ]);
      expect((await verify()).checkpoint).toMatchObject({ ok: false, reason: 'checkpoint_heads' });
    });

    it("the newest checkpoint deleted: missing, against the sink's copy", async () => {
      const { as, verify } = await checkpointedTenant(rig, 'deleted-checkpoint');
      const newest = await runAs(as, () =>
        rig.audit.checkpoint({ tenantId: 'deleted-checkpoint' }),
      );
      await rig.sql(`DELETE FROM "nes_audit_checkpoints" WHERE "tenant_id" = ? AND "seq" = 2`, [
        'deleted-checkpoint',
      ]);
      expect((await verify(newest)).checkpoint).toMatchObject({
        ok: false,
        reason: 'checkpoint_missing',
      });
      // A copy with a forged signature is refused as such.
      const forged = { ...newest, signature: randomBytes(64).toString('base64url') };
      expect((await verify(forged)).checkpoint).toMatchObject({ reason: 'checkpoint_signature' });
      // Taken within the millisecond of the one before, a checkpoint is still the later one.
      const now = Date.now();
      const clock = vi.spyOn(Date, 'now').mockReturnValue(now);
      try {
        const first = await runAs(as, () =>
          rig.audit.checkpoint({ tenantId: 'deleted-checkpoint' }),
        );
        const second = await runAs(as, () =>
          rig.audit.checkpoint({ tenantId: 'deleted-checkpoint' }),
        );
        expect(second.time).toBe(first.time + 1);
        await rig.sql(
          `DELETE FROM "nes_audit_checkpoints" WHERE "tenant_id" = ? AND "checkpoint_id" = ?`,
          ['deleted-checkpoint', second.checkpointId],
        );
        expect((await verify(second)).checkpoint).toMatchObject({
          ok: false,
          reason: 'checkpoint_missing',
        });
      } finally {
        clock.mockRestore();
      }
    });
  });
}

await onSqlBackends(describeCheckpointTampering);
