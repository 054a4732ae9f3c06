import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionService,
  KekRotationService,
  KeyRing,
  type SessionRef,
} from '../../src/index.js';
import { RotatingEnvProvider } from '../support/rotating-env-provider.js';
import {
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';

const SESSIONS = 12;
const ITEMS_PER_SESSION = 3;

/**
 * KEK rotation by rewrap on one backend: every data key moves to the new root key by a
 * conditional update, no item changes, and sessions stay usable throughout.
 */
export function describeKekRotation(backendName: string, createHarness: HarnessFactory): void {
  describe(`KEK rotation by rewrap on ${backendName}`, () => {
    let harness: SessionHarness;
    let provider: RotatingEnvProvider;
    let rotation: KekRotationService;
    let refs: SessionRef[];

    /** Every stored ciphertext of the test's sessions, to prove rewrapping touches none. */
    const storedItems = async () => {
      const all: string[] = [];
      for (const ref of refs) {
        for (let seq = 1; seq <= ITEMS_PER_SESSION; seq++) {
          all.push((await harness.tamper.ciphertextOf(ref, seq)).toString('base64'));
        }
      }
      return all;
    };

    /** Reads every session through a cold key ring that holds only the active root key. */
    const readAllWithOnlyActiveKey = async () => {
      const ring = new KeyRing(harness.storage, provider.withOnlyActiveKey());
      const service = new EncryptedSessionService(harness.storage, ring);
      const counts: number[] = [];
      for (const ref of refs) {
        const session = await service.open(ref.sessionId, { tenantId: ref.tenantId });
        counts.push((await session.getItems()).length);
      }
      ring.clear();
      return counts;
    };

    beforeEach(async () => {
      provider = new RotatingEnvProvider();
      harness = await createHarness({ provider });
      rotation = new KekRotationService(harness.storage, harness.keyRing);
      const tenantId = `t-${randomUUID().slice(0, 8)}`;
      refs = Array.from({ length: SESSIONS }, (_, i) => ({ tenantId, sessionId: `s${i}` }));
      for (const ref of refs) {
        const session = await harness.service.open(ref.sessionId, { tenantId });
        await session.addItems(
          Array.from({ length: ITEMS_PER_SESSION }, (_, n) => userMessage(`${ref.sessionId}-${n}`)),
        );
      }
    });
    afterEach(async () => {
      await harness.close();
    });

    it('moves every data key to the new root key without touching an item', async () => {
      const before = await storedItems();
      const oldKek = provider.activeKekId();
      provider.rotate();
      const newKek = provider.activeKekId();
      // Other tests' sessions may share the store: count only the difference this test made.
      const start = await rotation.status();
      expect(start.dataKeysByKek[oldKek]).toBeGreaterThanOrEqual(SESSIONS);

      const report = await rotation.rewrapAll({ batchSize: 5 });

      expect(report.failed).toBe(0);
      expect(report.remaining).toBe(0);
      const end = await rotation.status();
      expect(end).toMatchObject({ activeKekId: newKek, remaining: 0 });
      expect(end.dataKeysByKek[oldKek] ?? 0).toBe(0);
      expect(await storedItems()).toEqual(before);
      expect(await readAllWithOnlyActiveKey()).toEqual(refs.map(() => ITEMS_PER_SESSION));
    });

    it('resumes where a stopped run left off', async () => {
      provider.rotate();
      const total = (await rotation.status()).remaining;
      const first = await rotation.rewrapAll({ batchSize: 4, maxBatches: 1 });
      expect(first.rewrapped).toBeGreaterThan(0);
      expect(first.remaining).toBe(total - first.rewrapped);
      const second = await new KekRotationService(harness.storage, harness.keyRing).rewrapAll({
        batchSize: 4,
      });
      expect(first.rewrapped + second.rewrapped).toBe(total);
      expect(second.remaining).toBe(0);
    });

    it('lets two runs race without moving a key twice', async () => {
      provider.rotate();
      const total = (await rotation.status()).remaining;
      const other = new KekRotationService(harness.storage, harness.keyRing);
      const [a, b] = await Promise.all([
        rotation.rewrapAll({ batchSize: 3 }),
        other.rewrapAll({ batchSize: 3 }),
      ]);
      expect(a.rewrapped + b.rewrapped).toBe(total);
      expect((await rotation.status()).remaining).toBe(0);
    });

    it('keeps sessions readable and writable while it runs', async () => {
      provider.rotate();
      const sessions = await Promise.all(
        refs.map((ref) => harness.service.open(ref.sessionId, { tenantId: ref.tenantId })),
      );
      const traffic = sessions.map(async (session, i) => {
        await session.addItems([userMessage(`during-${i}`)]);
        return (await session.getItems()).length;
      });
      const [report, ...lengths] = await Promise.all([
        rotation.rewrapAll({ batchSize: 2 }),
        ...traffic,
      ]);
      expect(lengths).toEqual(refs.map(() => ITEMS_PER_SESSION + 1));
      expect(report.failed).toBe(0);
      expect((await rotation.status()).remaining).toBe(0);
      expect(await readAllWithOnlyActiveKey()).toEqual(refs.map(() => ITEMS_PER_SESSION + 1));
    });
  });
}
