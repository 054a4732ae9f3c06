import { describe, expect, it } from 'vitest';
import { AuditTrail, auditChainOf, runAs, type AuditEvent } from '../../src/audit/index.js';
import { EncryptedSessionService, KekRotationService } from '../../src/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import { RotatingEnvProvider } from '../support/rotating-env-provider.js';
import { sqliteHarness, userMessage } from '../support/session-harness.js';

describe('root-key rewrap in the audit trail', () => {
  it("records each batch and the run on every tenant's control chain, with its count", async () => {
    const provider = new RotatingEnvProvider();
    const harness = await sqliteHarness({ provider });
    try {
      const trail = new AuditTrail(
        harness.storage.audit!,
        new KeyRingAuditKeys(harness.keyRing, 86_400_000),
        { requireActor: false, reads: 'group-commit' },
      );
      harness.keyRing.attachAuditTrail(trail);
      const sessions = new EncryptedSessionService(
        harness.storage,
        harness.keyRing,
        undefined,
        trail,
      );
      const operator = { type: 'service' as const, id: 'kek-job', tenantId: 'ops' };
      await runAs(operator, async () => {
        for (const [tenantId, count] of [
          ['clinic-a', 3],
          ['clinic-b', 2],
        ] as const) {
          for (let index = 0; index < count; index++) {
            const session = await sessions.open(`s-${index}`, { tenantId });
            await session.addItems([userMessage('x')]);
          }
        }
      });
      provider.rotate();
      const report = await runAs(operator, () =>
        new KekRotationService(harness.storage, harness.keyRing, trail).rewrapAll({
          batchSize: 2,
        }),
      );
      // Five session keys and the trail's MAC key moved; the MAC key is nobody's event.
      expect(report).toMatchObject({ rewrapped: 6, remaining: 0 });
      for (const [tenantId, count] of [
        ['clinic-a', 3],
        ['clinic-b', 2],
      ] as const) {
        const records = await harness.storage.audit!.readChain(auditChainOf({ tenantId }), 0, 100);
        const events = records.map((record) => JSON.parse(record.body) as AuditEvent);
        const batches = events.filter((event) => event.action === 'key.rewrap.batch');
        expect(batches.reduce((sum, event) => sum + event.target.count!, 0)).toBe(count);
        expect(events.at(-1)).toMatchObject({
          action: 'key.rewrap.run',
          target: { count },
          keys: { kekIds: [provider.activeKekId()] },
          actor: operator,
        });
      }
    } finally {
      await harness.close();
    }
  });
});
