import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError, type SessionRef } from '../../src/index.js';
import type { AuditStorage, SessionStorage } from '../../src/storage/storage.ports.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  StoredAuditRecord,
} from '../../src/storage/storage.records.js';
import { chainOf, recordsAfter } from '../support/audit-records.js';
import type { HarnessFactory, SessionHarness } from '../support/session-harness.js';

/*
 * What every adapter's audit storage does: records and chain heads, appended through a
 * session's unit of work or an audit unit of its own, all or nothing, continuing the head,
 * outliving the session's data, read back byte for byte. The audit layer seals real MACs; here
 * any 32 bytes do, since storage only keeps and links them.
 */

const uniqueTenant = (): string => `tenant-${randomUUID()}`;

/** Every record of a chain, page by page. */
async function wholeChain(
  audit: AuditStorage,
  chain: AuditChainRef,
  pageSize = 3,
): Promise<StoredAuditRecord[]> {
  const all: StoredAuditRecord[] = [];
  for (;;) {
    const page = await audit.readChain(chain, all.at(-1)?.seq ?? 0, pageSize);
    all.push(...page);
    if (page.length < pageSize) return all;
  }
}

const headOf = (record: StoredAuditRecord): AuditChainHeadRecord => ({
  chainId: record.chainId,
  tenantId: record.tenantId,
  seq: record.seq,
  mac: record.mac,
  time: record.time,
});

/** Appends `count` records to a chain in an audit unit of its own; returns them. */
async function appendAlone(
  audit: AuditStorage,
  chain: AuditChainRef,
  count = 1,
): Promise<StoredAuditRecord[]> {
  return audit.transaction(chain, async (writes) => {
    const records = recordsAfter(chain, await writes.lockHead(chain.chainId), count);
    await writes.append(records);
    return records;
  });
}

/** Creates the session row, so a session unit of work has a session to lock. */
async function createSession(storage: SessionStorage, ref: SessionRef): Promise<void> {
  await storage.transaction(ref, (scope) =>
    scope.session.insertIfAbsent({
      ...ref,
      subjectId: null,
      createdAt: 1,
      lastActivityAt: 1,
      nextSeq: 1,
      itemTtlSeconds: null,
      legalHold: false,
    }),
  );
}

export function describeAuditStorageContract(name: string, createHarness: HarnessFactory): void {
  describe(`${name} audit storage`, () => {
    let harness: SessionHarness;
    let storage: SessionStorage;
    let audit: AuditStorage;

    beforeAll(async () => {
      harness = await createHarness();
      storage = harness.storage;
      audit = storage.audit!;
    });
    afterAll(() => harness.close());

    it('offers an audit storage', () => {
      expect(storage.audit).toBeDefined();
    });

    it("a session's unit of work appends to its chain, and the records read back byte for byte", async () => {
      const ref = { tenantId: uniqueTenant(), sessionId: 's1' };
      const chain = chainOf(ref.tenantId, ref.sessionId);
      await createSession(storage, ref);
      const written = await storage.transaction(ref, async (scope) => {
        expect(await scope.session.lockForWrite(2)).toBe(true);
        const records = recordsAfter(chain, await scope.audit!.lockHead(chain.chainId), 2);
        await scope.audit!.append(records);
        return records;
      });
      expect(await wholeChain(audit, chain)).toEqual(written);
      expect(await audit.findHead(chain)).toEqual(headOf(written[1]));
    });

    it('a chain with no record has no head and reads empty', async () => {
      const chain = chainOf(uniqueTenant(), 'never-audited');
      expect(await audit.findHead(chain)).toBeUndefined();
      expect(await audit.readChain(chain, 0, 10)).toEqual([]);
    });

    it('stores nothing of a unit of work that throws: neither its records nor its head', async () => {
      const ref = { tenantId: uniqueTenant(), sessionId: 's1' };
      const chain = chainOf(ref.tenantId, ref.sessionId);
      await createSession(storage, ref);
      const [first] = await appendAlone(audit, chain);
      const failure = new Error('the change failed after its audit record');
      await expect(
        storage.transaction(ref, async (scope) => {
          const head = await scope.audit!.lockHead(chain.chainId);
          await scope.audit!.append(recordsAfter(chain, head, 2));
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(await wholeChain(audit, chain)).toEqual([first]);
      expect(await audit.findHead(chain)).toEqual(headOf(first));
    });

    it('refuses a record that skips a seq, with IntegrityError, and stores nothing of the unit', async () => {
      const chain = chainOf(uniqueTenant(), 's1');
      const [first] = await appendAlone(audit, chain);
      await expect(
        audit.transaction(chain, async (writes) => {
          const head = await writes.lockHead(chain.chainId);
          const [skipping] = recordsAfter(chain, { seq: head!.seq + 1, mac: head!.mac });
          await writes.append([skipping]);
        }),
      ).rejects.toThrow(IntegrityError);
      expect(await wholeChain(audit, chain)).toEqual([first]);
    });

    it('refuses a record whose prevMac is not the head MAC, with IntegrityError', async () => {
      const chain = chainOf(uniqueTenant(), 's1');
      const [first] = await appendAlone(audit, chain);
      await expect(
        audit.transaction(chain, async (writes) => {
          const head = await writes.lockHead(chain.chainId);
          await writes.append(recordsAfter(chain, { seq: head!.seq, mac: randomBytes(32) }));
        }),
      ).rejects.toThrow(IntegrityError);
      expect(await audit.findHead(chain)).toEqual(headOf(first));
    });

    it('refuses a record that names another session than the unit of work', async () => {
      const ref = { tenantId: uniqueTenant(), sessionId: 's1' };
      const chain = chainOf(ref.tenantId, ref.sessionId);
      await createSession(storage, ref);
      await expect(
        storage.transaction(ref, async (scope) => {
          const head = await scope.audit!.lockHead(chain.chainId);
          const [record] = recordsAfter(chain, head);
          await scope.audit!.append([{ ...record, sessionId: 's2' }]);
        }),
      ).rejects.toThrow(/another chain/);
      expect(await audit.findHead(chain)).toBeUndefined();
    });

    it('one unit of work appends twice, the second continuing the first', async () => {
      const chain = chainOf(uniqueTenant(), 's1');
      const written = await audit.transaction(chain, async (writes) => {
        const first = recordsAfter(chain, await writes.lockHead(chain.chainId));
        await writes.append(first);
        const second = recordsAfter(chain, await writes.lockHead(chain.chainId), 2);
        await writes.append(second);
        return [...first, ...second];
      });
      expect((await wholeChain(audit, chain)).map((record) => record.seq)).toEqual([1, 2, 3]);
      expect(await wholeChain(audit, chain)).toEqual(written);
    });

    it('one append of more records than one SQL statement carries stores them all and moves the head once', async () => {
      const chain = chainOf(uniqueTenant(), 's1');
      // 5,000: past the rows one insert carries on every SQL engine (SQLite 2,340, Postgres
      // and MySQL 4,681), so the records go in several statements, the head moving with the last.
      const written = await audit.transaction(chain, async (writes) => {
        const records = recordsAfter(chain, await writes.lockHead(chain.chainId), 5000);
        await writes.append(records);
        return records;
      });
      expect(await wholeChain(audit, chain, 1000)).toEqual(written);
      expect(await audit.findHead(chain)).toEqual(headOf(written.at(-1)!));
    });

    it("appends to a session's chain in a unit of its own, with no session row", async () => {
      const chain = chainOf(uniqueTenant(), 'no-row');
      const written = await appendAlone(audit, chain, 3);
      expect(await wholeChain(audit, chain)).toEqual(written);
    });

    it("appends to the tenant's control chain (no session)", async () => {
      const chain = chainOf(uniqueTenant(), null);
      const written = await appendAlone(audit, chain, 2);
      expect(await wholeChain(audit, chain)).toEqual(written);
      expect(await audit.findHead(chain)).toEqual(headOf(written[1]));
    });

    it('serialises concurrent units on one chain: every seq once, no gap', async () => {
      const ref = { tenantId: uniqueTenant(), sessionId: 'busy' };
      const chain = chainOf(ref.tenantId, ref.sessionId);
      await createSession(storage, ref);
      await Promise.all([
        ...Array.from({ length: 6 }, () => appendAlone(audit, chain)),
        ...Array.from({ length: 6 }, (_, index) =>
          storage.transaction(ref, async (scope) => {
            await scope.session.lockForWrite(10 + index);
            const head = await scope.audit!.lockHead(chain.chainId);
            await scope.audit!.append(recordsAfter(chain, head));
          }),
        ),
      ]);
      const records = await wholeChain(audit, chain, 5);
      expect(records.map((record) => record.seq)).toEqual(
        Array.from({ length: 12 }, (_, index) => index + 1),
      );
      for (let index = 1; index < records.length; index++) {
        expect(records[index].prevMac).toEqual(records[index - 1].mac);
      }
    });

    it("outlives the session's data: clearing items and destroying keys keep the chain", async () => {
      const ref = { tenantId: uniqueTenant(), sessionId: 's1' };
      const chain = chainOf(ref.tenantId, ref.sessionId);
      await createSession(storage, ref);
      const written = await appendAlone(audit, chain, 2);
      await storage.transaction(ref, async (scope) => {
        await scope.items.deleteAll();
        await scope.historyOperations.deleteAll();
        await scope.dataKeys.destroyAll(5);
      });
      expect(await wholeChain(audit, chain)).toEqual(written);
    });

    it('reads a chain page by page from any seq, in seq order', async () => {
      const chain = chainOf(uniqueTenant(), 's1');
      const written = await appendAlone(audit, chain, 7);
      expect(await audit.readChain(chain, 2, 3)).toEqual(written.slice(2, 5));
      expect(await audit.readChain(chain, 7, 3)).toEqual([]);
      expect(await wholeChain(audit, chain, 2)).toEqual(written);
    });

    it("lists a tenant's heads by chain id bytes, page by page, and no other tenant's", async () => {
      const tenantId = uniqueTenant();
      const chains = ['b', 'a', 'Z', 'é', 'a '].map((sessionId) => chainOf(tenantId, sessionId));
      chains.push(chainOf(tenantId, null));
      const heads = new Map<string, AuditChainHeadRecord>();
      for (const chain of chains) {
        const records = await appendAlone(audit, chain, 1 + (heads.size % 3));
        heads.set(chain.chainId, headOf(records.at(-1)!));
      }
      await appendAlone(audit, chainOf(uniqueTenant(), 'a'));
      const byBytes = [...heads.keys()].toSorted((a, b) =>
        Buffer.compare(Buffer.from(a), Buffer.from(b)),
      );
      const listed: AuditChainHeadRecord[] = [];
      for (;;) {
        const page = await audit.listHeads(tenantId, listed.at(-1)?.chainId ?? '', 4);
        listed.push(...page);
        if (page.length < 4) break;
      }
      expect(listed).toEqual(byBytes.map((chainId) => heads.get(chainId)));
    });

    it('keeps ids that differ only in case, trailing spaces or Unicode normalisation apart', async () => {
      const base = uniqueTenant();
      const tenants = [base, `${base} `, base.toUpperCase(), `${base}\u00e9`, `${base}e\u0301`];
      for (const tenantId of tenants) await appendAlone(audit, chainOf(tenantId, 'caf\u00e9'));
      await appendAlone(audit, chainOf(base, 'cafe\u0301'));
      await appendAlone(audit, chainOf(base, 'caf\u00e9 '));
      for (const tenantId of tenants.slice(1)) {
        expect(await audit.listHeads(tenantId, '', 10)).toHaveLength(1);
      }
      expect(await audit.listHeads(base, '', 10)).toHaveLength(3);
      expect((await audit.findHead(chainOf(base, 'caf\u00e9')))!.seq).toBe(1);
    });
  });
}
