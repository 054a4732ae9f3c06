import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { v7 as uuidv7 } from 'uuid';
import { supportsMaintenance, type SessionRef, type SessionStorage } from '../../src/index.js';
import type {
  ErasureLedgerStorage,
  LegalHoldStorage,
  StorageMaintenance,
} from '../../src/storage/storage.ports.js';
import type {
  DataKeyRecord,
  ErasureLedgerRecord,
  LegalHoldRecord,
  SessionRecord,
} from '../../src/storage/storage.records.js';
import type { HarnessFactory, SessionHarness } from '../support/session-harness.js';
import { newSessionRecord } from '../support/session-records.js';

/*
 * What erasure and legal holds need of an adapter: the holds and the erasure ledger as records
 * of their own, a hold check inside a session's unit of work, a lookup of a subject's sessions,
 * and the writes that erase a session (forget its subject, delete it). Each test has a store of
 * its own, and ids of its own (the lookups see the whole store).
 */

const NOW = 1_767_000_000_000;

/** A hold on one session or one subject, active. */
function holdOf(
  tenantId: string,
  target: { sessionId: string } | { subjectId: string },
  placedAt = NOW,
): LegalHoldRecord {
  return {
    holdId: uuidv7({ msecs: placedAt }),
    tenantId,
    sessionId: 'sessionId' in target ? target.sessionId : null,
    subjectId: 'subjectId' in target ? target.subjectId : null,
    matterRef: 'matter-2026-001',
    placedAt,
    placedBy: 'legal-team',
    releasedAt: null,
    releasedBy: null,
  };
}

/** A pending ledger entry of one tenant. */
function pendingEntry(tenantId: string, sessionIds: string[]): ErasureLedgerRecord {
  return {
    erasureId: uuidv7(),
    tenantId,
    scope: 'subject',
    subjectRef: 'c3ViamVjdC1yZWY',
    sessionIds: JSON.stringify(sessionIds),
    createdAt: NOW,
    completedAt: null,
    receipt: null,
  };
}

/** A data key record of `ref`, generation 1, not really wrapped (storage keeps any bytes). */
function dataKeyOf(ref: SessionRef, subjectId: string | null): DataKeyRecord {
  return {
    ...ref,
    dekId: randomUUID(),
    subjectId,
    generation: 1,
    firstSeq: 1,
    kekId: 'env:test-kek',
    wrappedKey: Buffer.alloc(60, 7),
    state: 'active',
    createdAt: NOW,
    destroyedAt: null,
  };
}

export function describeHoldStorageContract(name: string, createHarness: HarnessFactory): void {
  describe(`${name} legal holds, erasure ledger and subject lookup`, () => {
    let harness: SessionHarness;
    let storage: SessionStorage;
    let holds: LegalHoldStorage;
    let ledger: ErasureLedgerStorage;
    let maintenance: StorageMaintenance;
    /** A tenant of this test only. */
    let tenantId: string;

    beforeEach(async () => {
      harness = await createHarness();
      storage = harness.storage;
      if (!storage.holds || !storage.erasureLedger || !supportsMaintenance(storage)) {
        throw new Error(`${name} keeps no holds, erasure ledger or maintenance`);
      }
      holds = storage.holds;
      ledger = storage.erasureLedger;
      maintenance = storage.maintenance;
      tenantId = `tenant-${randomUUID()}`;
    });
    afterEach(async () => {
      await harness?.close();
    });

    /** Creates a session of `subjectId` with one data key; returns its key. */
    const createSession = (ref: SessionRef, subjectId: string | null): Promise<DataKeyRecord> =>
      storage.transaction(ref, async (scope) => {
        const record: SessionRecord = { ...newSessionRecord(ref), subjectId };
        await scope.session.insertIfAbsent(record);
        const key = dataKeyOf(ref, subjectId);
        await scope.dataKeys.insertIfAbsent(key);
        const first = (await scope.session.reserveSequence(2, NOW))!;
        await scope.items.insertMany(
          [first, first + 1].map((seq) => ({
            seq,
            dekId: key.dekId,
            expiresAt: null,
            createdAt: NOW,
            ciphertext: Buffer.from([1, 2, 3, seq]),
          })),
        );
        return key;
      });

    const holdIdsCovering = (ref: SessionRef): Promise<string[]> =>
      storage.read(ref, async (scope) => (await scope.holds!.covering()).map((h) => h.holdId));

    it('stores a hold and finds it by id, as placed', async () => {
      const hold = holdOf(tenantId, { sessionId: 'session-a' });
      await holds.insert(hold);
      expect(await holds.find(hold.holdId)).toEqual(hold);
      expect(await holds.find(uuidv7())).toBeUndefined();
    });

    it('refuses a second hold with the same id and keeps the first', async () => {
      const hold = holdOf(tenantId, { sessionId: 'session-a' });
      await holds.insert(hold);
      await expect(holds.insert({ ...hold, matterRef: 'another-matter' })).rejects.toBeInstanceOf(
        Error,
      );
      expect((await holds.find(hold.holdId))?.matterRef).toBe('matter-2026-001');
    });

    it('releases an active hold once: a second release returns it unchanged', async () => {
      const hold = holdOf(tenantId, { subjectId: 'patient-1' });
      await holds.insert(hold);
      const released = await holds.release(hold.holdId, NOW + 1000, 'counsel');
      expect(released).toEqual({ ...hold, releasedAt: NOW + 1000, releasedBy: 'counsel' });
      expect(await holds.release(hold.holdId, NOW + 5000, 'someone-else')).toEqual(released);
      expect(await holds.release(uuidv7(), NOW, 'counsel')).toBeUndefined();
    });

    it('finds the active holds on a session or on its subject, not released or other ones', async () => {
      const onSession = holdOf(tenantId, { sessionId: 'session-a' }, NOW);
      const onSubject = holdOf(tenantId, { subjectId: 'patient-1' }, NOW + 1);
      const released = holdOf(tenantId, { sessionId: 'session-a' }, NOW + 2);
      const otherSession = holdOf(tenantId, { sessionId: 'session-b' }, NOW + 3);
      const otherTenant = holdOf(`${tenantId}-2`, { sessionId: 'session-a' }, NOW + 4);
      for (const hold of [onSession, onSubject, released, otherSession, otherTenant]) {
        await holds.insert(hold);
      }
      await holds.release(released.holdId, NOW + 10, 'counsel');

      const covering = await holds.activeCovering(tenantId, 'session-a', 'patient-1');
      expect(covering.map((h) => h.holdId)).toEqual([onSession.holdId, onSubject.holdId]);
      expect(
        (await holds.activeCovering(tenantId, 'session-a', null)).map((h) => h.holdId),
      ).toEqual([onSession.holdId]);
      expect((await holds.activeOnSubject(tenantId, 'patient-1')).map((h) => h.holdId)).toEqual([
        onSubject.holdId,
      ]);
    });

    it('tells ids apart byte for byte: case, trailing space and Unicode normalisation', async () => {
      const composed = 'Jos\u00e9';
      const decomposed = 'Jose\u0301';
      await holds.insert(holdOf(tenantId, { subjectId: composed }));
      await holds.insert(holdOf(tenantId, { sessionId: 'Session-A' }));
      for (const subjectId of [decomposed, 'jos\u00e9', `${composed} `]) {
        expect(await holds.activeOnSubject(tenantId, subjectId)).toEqual([]);
      }
      for (const sessionId of ['session-a', 'Session-A ', 'Session-\uff21']) {
        expect(await holds.activeCovering(tenantId, sessionId, null)).toEqual([]);
      }
      expect(await holds.activeOnSubject(tenantId, composed)).toHaveLength(1);
    });

    it('lists holds in id order, by page, by tenant and active only', async () => {
      const placed: LegalHoldRecord[] = [];
      for (let index = 0; index < 5; index += 1) {
        const hold = holdOf(tenantId, { sessionId: `session-${index}` }, NOW + index);
        placed.push(hold);
        await holds.insert(hold);
      }
      await holds.insert(holdOf(`${tenantId}-other`, { sessionId: 'x' }, NOW + 2));
      await holds.release(placed[1].holdId, NOW + 100, 'counsel');

      const first = await holds.list({ tenantId, limit: 3 });
      expect(first.map((h) => h.holdId)).toEqual(placed.slice(0, 3).map((h) => h.holdId));
      const rest = await holds.list({ tenantId, afterHoldId: first[2].holdId, limit: 3 });
      expect(rest.map((h) => h.holdId)).toEqual(placed.slice(3).map((h) => h.holdId));
      const active = await holds.list({ tenantId, activeOnly: true, limit: 10 });
      expect(active.map((h) => h.holdId)).toEqual(
        [0, 2, 3, 4].map((index) => placed[index].holdId),
      );
    });

    it("a unit's hold check sees holds on its session and on the subject its row names", async () => {
      const ref = { tenantId, sessionId: 'session-a' };
      await createSession(ref, 'patient-1');
      expect(await holdIdsCovering(ref)).toEqual([]);
      const onSubject = holdOf(tenantId, { subjectId: 'patient-1' }, NOW);
      await holds.insert(onSubject);
      expect(await holdIdsCovering(ref)).toEqual([onSubject.holdId]);
      const onSession = holdOf(tenantId, { sessionId: 'session-a' }, NOW + 1);
      await holds.insert(onSession);
      const inWriteUnit = await storage.transaction(ref, async (scope) => {
        await scope.session.lockForWrite(NOW);
        return (await scope.holds!.covering()).map((h) => h.holdId);
      });
      expect(inWriteUnit).toEqual([onSubject.holdId, onSession.holdId]);
    });

    it("finds a subject's sessions by session id bytes, page by page, in its tenant only", async () => {
      const ids = ['b', 'a', 'c', 'B', 'a ', 'd\u00e9'];
      for (const sessionId of ids) await createSession({ tenantId, sessionId }, 'patient-1');
      await createSession({ tenantId, sessionId: 'other' }, 'patient-2');
      await createSession({ tenantId, sessionId: 'anonymous' }, null);
      await createSession({ tenantId: `${tenantId}-2`, sessionId: 'a' }, 'patient-1');

      const byBytes = ids.toSorted((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      const first = await maintenance.listSessionsOfSubject!(tenantId, 'patient-1', '', 4);
      expect(first.map((s) => s.sessionId)).toEqual(byBytes.slice(0, 4));
      expect(first.every((s) => s.subjectId === 'patient-1' && s.tenantId === tenantId)).toBe(true);
      const rest = await maintenance.listSessionsOfSubject!(
        tenantId,
        'patient-1',
        first[3].sessionId,
        4,
      );
      expect(rest.map((s) => s.sessionId)).toEqual(byBytes.slice(4));
      expect(await maintenance.listSessionsOfSubject!(tenantId, 'Patient-1', '', 10)).toEqual([]);
      expect(await maintenance.listSessionsOfSubject!(tenantId, 'patient-1 ', '', 10)).toEqual([]);
    });

    it('forgetSubject clears the subject of the session and of its keys, and the lookup', async () => {
      const ref = { tenantId, sessionId: 'session-a' };
      const key = await createSession(ref, 'patient-1');
      await storage.transaction(ref, (scope) => scope.session.forgetSubject!());
      const after = await storage.read(ref, async (scope) => ({
        session: await scope.session.find(),
        key: await scope.dataKeys.findById(key.dekId),
      }));
      expect(after.session?.subjectId).toBeNull();
      expect(after.key?.subjectId).toBeNull();
      expect(after.key?.wrappedKey.equals(key.wrappedKey)).toBe(true);
      expect(await maintenance.listSessionsOfSubject!(tenantId, 'patient-1', '', 10)).toEqual([]);
    });

    it('deleteSession removes the row, items and keys of that session only', async () => {
      const ref = { tenantId, sessionId: 'session-a' };
      const neighbour = { tenantId, sessionId: 'session-b' };
      const key = await createSession(ref, 'patient-1');
      await createSession(neighbour, 'patient-1');
      expect(await storage.transaction(ref, (scope) => scope.session.deleteSession!())).toBe(true);
      const after = await storage.read(ref, async (scope) => ({
        session: await scope.session.find(),
        items: await scope.items.listVisible(0, 10),
        key: await scope.dataKeys.findById(key.dekId),
      }));
      expect(after).toEqual({ session: undefined, items: [], key: undefined });
      expect(await storage.transaction(ref, (scope) => scope.session.deleteSession!())).toBe(false);
      const kept = await storage.read(neighbour, (scope) => scope.items.listVisible(0, 10));
      expect(kept).toHaveLength(2);
      expect(
        (await maintenance.listSessionsOfSubject!(tenantId, 'patient-1', '', 10)).map(
          (s) => s.sessionId,
        ),
      ).toEqual(['session-b']);
    });

    it('a deleteSession in a unit that throws deletes nothing', async () => {
      const ref = { tenantId, sessionId: 'session-a' };
      await createSession(ref, 'patient-1');
      await expect(
        storage.transaction(ref, async (scope) => {
          await scope.session.deleteSession!();
          throw new Error('changed my mind');
        }),
      ).rejects.toThrow('changed my mind');
      expect(await storage.read(ref, (scope) => scope.items.listVisible(0, 10))).toHaveLength(2);
    });

    it('stores a pending ledger entry, completes it once, and lists entries in id order', async () => {
      const entries = [pendingEntry(tenantId, ['a']), pendingEntry(tenantId, ['b', 'c'])];
      for (const entry of entries) await ledger.insert(entry);
      expect(await ledger.find(entries[0].erasureId)).toEqual(entries[0]);
      await expect(ledger.insert(entries[0])).rejects.toBeInstanceOf(Error);

      expect(await ledger.complete(entries[1].erasureId, NOW + 5, '{"signed":true}')).toBe(true);
      expect(await ledger.complete(entries[1].erasureId, NOW + 9, '{"again":true}')).toBe(false);
      expect(await ledger.complete(uuidv7(), NOW, '{}')).toBe(false);
      expect(await ledger.find(entries[1].erasureId)).toEqual({
        ...entries[1],
        completedAt: NOW + 5,
        receipt: '{"signed":true}',
      });

      const all = await ledger.list('', 100);
      const ours = all.filter((entry) => entry.tenantId === tenantId);
      expect(ours.map((entry) => entry.erasureId)).toEqual(entries.map((e) => e.erasureId));
      const after = await ledger.list(entries[0].erasureId, 100);
      expect(after.map((entry) => entry.erasureId)).not.toContain(entries[0].erasureId);
      expect(after.map((entry) => entry.erasureId)).toContain(entries[1].erasureId);
    });
  });
}

/**
 * A hold committed by another connection while a unit of work is open, seen by that unit once
 * it holds the session's lock. For backends where a hold can commit beside an open write unit
 * (SQLite runs one write transaction at a time, so there it cannot).
 */
export function describeHoldRaceContract(name: string, createHarness: HarnessFactory): void {
  describe(`${name} hold placed while a unit is open`, () => {
    let harness: SessionHarness;
    let storage: SessionStorage;
    let holds: LegalHoldStorage;
    let tenantId: string;

    beforeEach(async () => {
      harness = await createHarness();
      storage = harness.storage;
      holds = storage.holds!;
      tenantId = `tenant-${randomUUID()}`;
    });
    afterEach(async () => {
      await harness?.close();
    });

    const createSession = (ref: SessionRef, subjectId: string | null): Promise<boolean> =>
      storage.transaction(ref, (scope) =>
        scope.session.insertIfAbsent({ ...newSessionRecord(ref), subjectId }),
      );

    it('a write unit that began before a hold was placed sees it after the session lock', async () => {
      const ref = { tenantId, sessionId: 'session-a' };
      await createSession(ref, 'patient-1');
      const hold = holdOf(tenantId, { subjectId: 'patient-1' });
      // The unit reads first (a snapshot, where the backend takes one), then the hold commits.
      const seen = await storage.transaction(ref, async (scope) => {
        await scope.session.find();
        await scope.items.listVisible(NOW, 10);
        if (!(await holds.find(hold.holdId))) await holds.insert(hold);
        await scope.session.lockForWrite(NOW);
        return (await scope.holds!.covering()).map((h) => h.holdId);
      });
      expect(seen).toEqual([hold.holdId]);
    });
  });
}
