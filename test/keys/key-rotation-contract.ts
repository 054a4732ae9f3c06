import { randomUUID } from 'node:crypto';
import type { AgentInputItem } from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EncryptedSessionJobs,
  KekRotationService,
  KeyRotationService,
  supportsMaintenance,
  type SessionRef,
  type SessionStorage,
  type SessionWriteScope,
} from '../../src/index.js';
import { AUDIT_KEYS_TENANT } from '../../src/audit/index.js';
import type { JobsConfig } from '../../src/jobs/index.js';
import { KeyRingAuditKeys } from '../../src/module/key-ring-audit-keys.js';
import {
  userMessage,
  type HarnessFactory,
  type SessionHarness,
} from '../support/session-harness.js';

const SESSIONS = 3;
const JOB = 'nest-encrypted-sessions:key-rotation';

/** What the setup appended to a session: three batches of three. */
const expectedTexts = (ref: SessionRef) =>
  [0, 1, 2].flatMap((batch) => [0, 1, 2].map((n) => `${ref.sessionId}-${batch}-${n}`));

const texts = (list: AgentInputItem[]) => list.map((item) => (item as { content: string }).content);

/** Where the audit trail keeps its MAC keys (a reserved tenant's "session"). */
const AUDIT_MAC_KEYS: SessionRef = { tenantId: AUDIT_KEYS_TENANT, sessionId: 'mac' };
const DAY_MS = 86_400_000;

/** The audit trail's MAC key of yesterday, retired by today's (one generation a day). */
async function rotatedAuditMacKeys(harness: SessionHarness): Promise<void> {
  let now = Date.now() - DAY_MS;
  const auditKeys = new KeyRingAuditKeys(harness.keyRing, DAY_MS, () => now);
  await auditKeys.currentMacKey();
  now += DAY_MS;
  await auditKeys.currentMacKey();
}

/** The jobs config of the tests: only the rotation's batch size and limit matter. */
function jobsConfig(batchSize: number, maxBatchesPerRun = 1000): JobsConfig {
  return {
    leaseTtlMs: 30_000,
    kekRewrap: { enabled: false, cron: '0 * * * *', batchSize: 100, maxBatchesPerRun: 50 },
    keyRotation: { enabled: false, cron: '0 3 * * *', batchSize, maxBatchesPerRun },
    retentionPurge: {
      enabled: false,
      cron: '*/15 * * * *',
      batchSize: 1000,
      maxBatchesPerRun: 1000,
      sessionIdleDays: null,
    },
  };
}

/**
 * Staged data key rotation on one backend: the items of retiring keys are re-encrypted into
 * the session's active key, the retiring keys destroyed once nothing references them, items
 * that do not open kept with their key, held sessions left as they are, and sessions usable
 * throughout. Each test has a store of its own: the scan sees every retiring key.
 */
export function describeKeyRotation(backendName: string, createHarness: HarnessFactory): void {
  describe(`data key rotation (re-encryption) on ${backendName}`, () => {
    let harness: SessionHarness;
    let refs: SessionRef[];

    /** A rotation service over the harness's keys and its storage (or `storage`). */
    const rotationService = (
      batchSize: number,
      maxBatchesPerRun?: number,
      storage: SessionStorage = harness.storage,
    ) => {
      const config = jobsConfig(batchSize, maxBatchesPerRun);
      const jobs = new EncryptedSessionJobs(
        storage,
        new KekRotationService(storage, harness.keyRing),
        config,
      );
      return new KeyRotationService(storage, harness.keyRing, jobs, config);
    };

    /** Each session's keys as [generation, state, wrapped key bytes]. */
    const keysOf = (ref: SessionRef) =>
      harness.storage.read(ref, async (scope) =>
        (await scope.dataKeys.listAll!()).map((key) => [
          key.generation,
          key.state,
          key.wrappedKey.length > 0,
        ]),
      );

    const readAll = async (ref: SessionRef) =>
      texts(await (await harness.service.open(ref.sessionId, ref)).getItems());

    beforeEach(async () => {
      // Four items per key: the third append starts generation 2, retiring generation 1.
      harness = await createHarness({ keyRing: { rotationMaxItems: 4 } });
      const tenantId = `t-${randomUUID().slice(0, 8)}`;
      refs = Array.from({ length: SESSIONS }, (_, i) => ({ tenantId, sessionId: `s${i}` }));
      for (const ref of refs) {
        const session = await harness.service.open(ref.sessionId, ref);
        for (let batch = 0; batch < 3; batch++) {
          await session.addItems(
            [0, 1, 2].map((n) => userMessage(`${ref.sessionId}-${batch}-${n}`)),
          );
        }
      }
    });
    afterEach(async () => {
      await harness.close();
    });

    it("leaves the audit trail's earlier MAC keys retiring: they verify the records they sealed", async () => {
      await rotatedAuditMacKeys(harness);
      const before = await keysOf(AUDIT_MAC_KEYS);
      expect(before).toEqual([
        [1, 'retiring', true],
        [2, 'active', true],
      ]);
      const report = await rotationService(4).reencryptRetiring();
      expect(report.result).toMatchObject({ retiringKeys: SESSIONS, destroyed: SESSIONS });
      expect(await keysOf(AUDIT_MAC_KEYS)).toEqual(before);
    });

    it('re-encrypts the retiring keys items into the active key, then destroys the retiring keys', async () => {
      expect(await keysOf(refs[0])).toEqual([
        [1, 'retiring', true],
        [2, 'active', true],
      ]);
      const report = await rotationService(4).reencryptRetiring();
      expect(report).toMatchObject({
        job: JOB,
        outcome: 'done',
        result: {
          retiringKeys: SESSIONS,
          reencrypted: 6 * SESSIONS,
          destroyed: SESSIONS,
          unreadable: 0,
          skippedForHold: 0,
          complete: true,
        },
      });
      for (const ref of refs) {
        // Destroyed: wrapped bytes wiped, the record kept as a tombstone.
        expect(await keysOf(ref)).toEqual([
          [1, 'destroyed', false],
          [2, 'active', true],
        ]);
        expect(await readAll(ref)).toEqual(expectedTexts(ref));
      }
      // A second run finds nothing to do.
      expect((await rotationService(4).reencryptRetiring()).result).toMatchObject({
        retiringKeys: 0,
        reencrypted: 0,
      });
    });

    it('seals nothing with a key the ring evicted (zeroed) while the unit listed the items: the batch starts again', async () => {
      const storage = harness.storage;
      let evictions = 0;
      // The harness's storage, but the first listing of a retiring key's items drops every
      // cached key of its session from the ring meanwhile, as a full cache does.
      const evicting: SessionStorage = Object.create(storage, {
        transaction: {
          value: (ref: SessionRef, work: (scope: SessionWriteScope) => Promise<unknown>) =>
            storage.transaction(ref, (scope) =>
              work({
                ...scope,
                items: {
                  ...scope.items,
                  listSealedUnder: async (dekId: string, afterSeq: number, limit: number) => {
                    const rows = await scope.items.listSealedUnder!(dekId, afterSeq, limit);
                    if (evictions++ === 0) harness.keyRing.forgetSession(ref);
                    return rows;
                  },
                },
              }),
            ),
        },
      });

      const report = await rotationService(4, undefined, evicting).reencryptRetiring();

      expect(report.result).toMatchObject({ reencrypted: 6 * SESSIONS, unreadable: 0 });
      expect(evictions).toBeGreaterThan(1);
      for (const ref of refs) expect(await readAll(ref)).toEqual(expectedTexts(ref));
    });

    it('keeps an item that does not open, under its retiring key, and never deletes it', async () => {
      const [damaged] = refs;
      const stored = await harness.tamper.ciphertextOf(damaged, 2);
      stored[stored.length - 1] ^= 0x01;
      await harness.tamper.setCiphertext(damaged, 2, stored);
      const report = await rotationService(2).reencryptRetiring();
      expect(report.result).toMatchObject({
        reencrypted: 6 * SESSIONS - 1,
        destroyed: SESSIONS - 1,
        unreadable: 1,
      });
      expect(await keysOf(damaged)).toEqual([
        [1, 'retiring', true],
        [2, 'active', true],
      ]);
      expect(await harness.tamper.countItems(damaged)).toBe(9);
      expect(await harness.tamper.ciphertextOf(damaged, 2)).toEqual(stored);
    });

    it('leaves a session under legal hold byte for byte as it is', async () => {
      const [held] = refs;
      await harness.storage.holds!.insert({
        holdId: randomUUID(),
        tenantId: held.tenantId,
        sessionId: held.sessionId,
        subjectId: null,
        matterRef: 'case-1',
        placedAt: Date.now(),
        placedBy: 'counsel',
        releasedAt: null,
        releasedBy: null,
      });
      const before = await Promise.all(
        Array.from({ length: 9 }, (_, i) => harness.tamper.ciphertextOf(held, i + 1)),
      );
      const report = await rotationService(4).reencryptRetiring();
      expect(report.result).toMatchObject({ skippedForHold: 1, destroyed: SESSIONS - 1 });
      expect(await keysOf(held)).toEqual([
        [1, 'retiring', true],
        [2, 'active', true],
      ]);
      const after = await Promise.all(
        Array.from({ length: 9 }, (_, i) => harness.tamper.ciphertextOf(held, i + 1)),
      );
      expect(after).toEqual(before);
    });

    it('stops at maxBatchesPerRun, and the next run goes on from what the data says', async () => {
      const first = await rotationService(2, 2).reencryptRetiring();
      expect(first.result).toMatchObject({ batches: 2, reencrypted: 4, complete: false });
      const second = await rotationService(2).reencryptRetiring();
      expect(second.result).toMatchObject({ reencrypted: 6 * SESSIONS - 4, complete: true });
      for (const ref of refs) {
        expect((await keysOf(ref))[0]).toEqual([1, 'destroyed', false]);
        expect(await readAll(ref)).toEqual(expectedTexts(ref));
      }
    });

    it('is not complete when the batch limit stops it part-way through its last key', async () => {
      // Batches of 2 over 6 items: three re-encrypt, a fourth finds none left and destroys the
      // key. One batch short of every key's four, the last key is left part-way.
      const first = await rotationService(2, 4 * SESSIONS - 1).reencryptRetiring();
      expect(first.result).toMatchObject({
        retiringKeys: SESSIONS,
        destroyed: SESSIONS - 1,
        complete: false,
      });
      const second = await rotationService(2).reencryptRetiring();
      expect(second.result).toMatchObject({ retiringKeys: 1, destroyed: 1, complete: true });
    });

    it('is skipped while another replica holds its lease, changing nothing', async () => {
      expect(await harness.storage.leases!.acquire(JOB, 'other-replica', 30_000)).toBeTruthy();
      const report = await rotationService(4).reencryptRetiring();
      expect(report).toMatchObject({ outcome: 'skipped', heldBy: 'other-replica' });
      expect((await keysOf(refs[0]))[0]).toEqual([1, 'retiring', true]);
    });

    it('loses nothing to pops and history rewrites racing it over the retiring keys items', async () => {
      const model = new Map(refs.map((ref) => [ref.sessionId, expectedTexts(ref)]));
      const run = rotationService(1).reencryptRetiring();
      const racers = refs.map(async (ref) => {
        const session = await harness.service.open(ref.sessionId, ref);
        const expected = model.get(ref.sessionId)!;
        // Generation 1 sealed items 1-6: the fourth pop takes one of them.
        for (let n = 0; n < 4; n++) {
          const popped = (await session.popItem()) as { content: string } | undefined;
          expect(popped?.content).toBe(expected.pop());
        }
        // Its suffix is now an item of the retiring key, re-encrypted or not yet.
        const last = expected.at(-1)!;
        await session.applyHistoryTransaction({
          operationId: `${ref.sessionId}-rewrite`,
          transaction: {
            type: 'replace_suffix',
            expectedSuffix: [userMessage(last)],
            replacement: [userMessage(`${last}-a`), userMessage(`${last}-b`)],
          },
        });
        expected.splice(-1, 1, `${last}-a`, `${last}-b`);
        await session.addItems([userMessage(`${ref.sessionId}-after`)]);
        expected.push(`${ref.sessionId}-after`);
      });
      await Promise.all([run, ...racers]);
      expect((await run).outcome).toBe('done');
      await rotationService(4).reencryptRetiring();
      for (const ref of refs) {
        expect(await readAll(ref)).toEqual(model.get(ref.sessionId));
        const keys = await keysOf(ref);
        expect(keys.filter(([, state]) => state === 'retiring')).toEqual([]);
      }
    });

    it('loses nothing to writers and readers running beside it', async () => {
      const rotation = rotationService(1);
      const appended = new Map(refs.map((ref) => [ref.sessionId, expectedTexts(ref)]));
      const rotationRun = { running: true };
      const run = rotation.reencryptRetiring().finally(() => (rotationRun.running = false));
      const writers = refs.map(async (ref) => {
        const session = await harness.service.open(ref.sessionId, ref);
        // At least 3 appends each, and at most 30 while the run lasts.
        for (let n = 0; (rotationRun.running && n < 30) || n < 3; n++) {
          const text = `${ref.sessionId}-late-${n}`;
          await session.addItems([userMessage(text)]);
          appended.get(ref.sessionId)!.push(text);
          // Every item opens at every instant: a read never fails mid-rotation.
          expect((await session.getItems()).length).toBe(appended.get(ref.sessionId)!.length);
        }
      });
      await Promise.all([run, ...writers]);
      expect((await run).outcome).toBe('done');
      // The writers' new generations may retire keys again: a last run moves those too.
      await rotationService(4).reencryptRetiring();
      for (const ref of refs) {
        expect(await readAll(ref)).toEqual(appended.get(ref.sessionId));
        const keys = await keysOf(ref);
        expect(keys.filter(([, state]) => state === 'retiring')).toEqual([]);
        expect(keys.filter(([, state]) => state === 'active')).toHaveLength(1);
      }
    });
  });
}

/** The storage's cross-session scans, with `dataKeyAges`. */
function maintenanceOf(storage: SessionHarness['storage']) {
  if (!supportsMaintenance(storage) || !storage.maintenance.dataKeyAges) {
    throw new Error(`The '${storage.backend}' storage reports no data key ages`);
  }
  return storage.maintenance as Required<typeof storage.maintenance>;
}

/**
 * The data key ages one backend reports over every session (`dataKeyAges`, behind the key
 * rotation's health check and `KeyRotationService.status()`): active keys, the oldest of
 * them and how many were created before a time; retiring keys and when the longest-waiting
 * one was replaced. Destroyed keys count nowhere. Each test has a store of its own.
 */
export function describeDataKeyAges(backendName: string, createHarness: HarnessFactory): void {
  describe(`data key ages on ${backendName}`, () => {
    let harness: SessionHarness;
    afterEach(async () => {
      await harness.close();
    });

    it('reports no keys on an empty store', async () => {
      harness = await createHarness();
      expect(
        await maintenanceOf(harness.storage).dataKeyAges(Date.now(), AUDIT_KEYS_TENANT),
      ).toEqual({
        activeKeys: 0,
        oldestActiveCreatedAt: null,
        activeKeysCreatedBefore: 0,
        retiringKeys: 0,
        oldestRetiredAt: null,
      });
    });

    it('counts active and retiring keys over every session, with the oldest active key and when the longest-waiting retiring key was replaced', async () => {
      // Four items per key: a third batch of three starts generation 2.
      harness = await createHarness({ keyRing: { rotationMaxItems: 4 } });
      const tenantId = `t-${randomUUID().slice(0, 8)}`;
      const [rotated, plain, cleared] = ['rotated', 'plain', 'cleared'].map((sessionId) => ({
        tenantId,
        sessionId,
      }));
      const append = async (ref: SessionRef, batches: number) => {
        const session = await harness.service.open(ref.sessionId, ref);
        for (let batch = 0; batch < batches; batch++) {
          await session.addItems([0, 1, 2].map((n) => userMessage(`${batch}-${n}`)));
        }
        return session;
      };
      await append(rotated, 3);
      await append(plain, 1);
      // The audit trail's MAC key of yesterday (retiring) and today's: left out of the figures.
      await rotatedAuditMacKeys(harness);
      // Cleared: its key is destroyed, and counts nowhere.
      await (await append(cleared, 1)).clearSession();
      const keys = async (ref: SessionRef) =>
        harness.storage.read(ref, async (scope) => scope.dataKeys.listAll!());
      const [rotatedKeys, plainKeys] = [await keys(rotated), await keys(plain)];
      expect(rotatedKeys.map((key) => [key.generation, key.state])).toEqual([
        [1, 'retiring'],
        [2, 'active'],
      ]);
      const active = [rotatedKeys[1], plainKeys[0]];
      const oldestActive = Math.min(...active.map((key) => key.createdAt));
      const maintenance = maintenanceOf(harness.storage);

      expect(await maintenance.dataKeyAges(Date.now() + 60_000, AUDIT_KEYS_TENANT)).toEqual({
        activeKeys: 2,
        oldestActiveCreatedAt: oldestActive,
        activeKeysCreatedBefore: 2,
        retiringKeys: 1,
        // Retired when generation 2 was created, not when generation 1 was.
        oldestRetiredAt: rotatedKeys[1].createdAt,
      });
      // Created strictly before: a key created at that very time is not counted.
      expect(
        (await maintenance.dataKeyAges(oldestActive, AUDIT_KEYS_TENANT)).activeKeysCreatedBefore,
      ).toBe(0);
      expect(
        (await maintenance.dataKeyAges(oldestActive + 1, AUDIT_KEYS_TENANT))
          .activeKeysCreatedBefore,
      ).toBe(active.filter((key) => key.createdAt === oldestActive).length);
    });
  });
}
