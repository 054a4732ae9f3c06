import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IntegrityError } from '../../src/errors/index.js';
import type { SessionRef } from '../../src/index.js';
import { compareAuditOrder, matchesAuditQuery } from '../../src/storage/audit-record-query.js';
import type { AuditStorage } from '../../src/storage/storage.ports.js';
import type {
  AuditChainRef,
  AuditRecordQuery,
  StoredAuditRecord,
} from '../../src/storage/storage.records.js';
import { RedisAuditStorage } from '../../src/storage/redis/redis-audit-storage.js';
import { RedisKeyLayout } from '../../src/storage/redis/redis-keys.js';
import { packAuditIndexMember } from '../../src/storage/redis/redis-record-codec.js';
import { RedisSessionStorage } from '../../src/storage/redis/redis.session-storage.js';
import { chainOf } from '../support/audit-records.js';
import { loopbackClusterForSuite } from '../support/redis-cluster-support.js';
import {
  createRedisTestStorage,
  redisReadyFor,
  type RedisTestStorage,
} from '../support/redis-support.js';

const up = await redisReadyFor('Redis audit report spec');

const NOW = 1_767_000_000_000;
const GENESIS = Buffer.alloc(32);
const SUBJECT = 'c3ViamVjdC1h';
const OTHER_SUBJECT = 'c3ViamVjdC1i';

/** What one appended record is about; the rest is filled in. */
interface Event {
  readonly time: number;
  readonly actorId?: string;
  readonly subjectRef?: string | null;
}

/** Appends `events` to `chain` in one audit unit of its own; returns the stored records. */
const appendEvents = (audit: AuditStorage, chain: AuditChainRef, events: readonly Event[]) =>
  audit.transaction(chain, async (writes) => {
    const head = await writes.lockHead(chain.chainId);
    let seq = head?.seq ?? 0;
    let prevMac = head?.mac ?? GENESIS;
    const records = events.map((event): StoredAuditRecord => {
      seq += 1;
      const mac = randomBytes(32);
      const record = {
        chainId: chain.chainId,
        seq,
        tenantId: chain.tenantId,
        sessionId: chain.sessionId,
        eventId: randomUUID(),
        time: event.time,
        action: 'session.read',
        outcome: 'success',
        actorId: event.actorId ?? 'user-1',
        subjectRef: event.subjectRef === undefined ? SUBJECT : event.subjectRef,
        macKeyId: 'mac-1',
        prevMac,
        mac,
        body: JSON.stringify({ seq }),
      };
      prevMac = mac;
      return record;
    });
    await writes.append(records);
    return records;
  });

/** Every page of the report, `limit` at a time, each page resuming after the last record. */
async function allPages(
  audit: AuditStorage,
  query: Omit<AuditRecordQuery, 'limit' | 'after'>,
  limit: number,
): Promise<StoredAuditRecord[][]> {
  const pages: StoredAuditRecord[][] = [];
  for (let after: StoredAuditRecord | undefined; ;) {
    const page = await audit.listRecords({ ...query, after, limit });
    if (page.length === 0) return pages;
    pages.push(page);
    after = page.at(-1);
  }
}

/** What the report must list, selected and ordered in process from everything written. */
const expected = (written: readonly StoredAuditRecord[], query: AuditRecordQuery) =>
  written.filter((record) => matchesAuditQuery(record, query)).toSorted(compareAuditOrder);

const ids = (records: readonly StoredAuditRecord[]) =>
  records.map((record) => `${record.chainId}#${record.seq}`);

describe.skipIf(!up)('Redis access report from indexes', () => {
  let redis: RedisTestStorage;
  let audit: RedisAuditStorage;
  let layout: RedisKeyLayout;
  let tenantId: string;

  beforeEach(async () => {
    redis = await createRedisTestStorage();
    audit = redis.storage.audit as RedisAuditStorage;
    layout = new RedisKeyLayout(redis.keyPrefix);
    tenantId = `tenant-${randomUUID()}`;
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await redis.cleanup();
  });

  /**
   * Six session chains and the control chain, records of two subjects and three actors, with
   * times that tie across chains and within one chain, out of seq order.
   */
  async function writeTrail(): Promise<StoredAuditRecord[]> {
    const written: StoredAuditRecord[] = [];
    const chains = [
      ...Array.from({ length: 6 }, (_, index) => chainOf(tenantId, `s-${index}-${randomUUID()}`)),
      chainOf(tenantId, null),
    ];
    for (const [index, chain] of chains.entries()) {
      const events: Event[] = Array.from({ length: 7 }, (_, position) => ({
        time: NOW + ((position * 3 + index) % 5),
        actorId: ['alice', 'bob', 'carol'][(position + index) % 3],
        subjectRef: position % 3 === 2 ? OTHER_SUBJECT : position === 4 ? null : SUBJECT,
      }));
      // Two units, so later commits add records (and actors) to an existing chain.
      written.push(...(await appendEvents(audit, chain, events.slice(0, 3))));
      written.push(...(await appendEvents(audit, chain, events.slice(3))));
    }
    return written;
  }

  it('pages a subject, an actor and a session across chains in (time, chain id, seq) order', async () => {
    const written = await writeTrail();
    const sessionId = written[0].sessionId!;
    for (const by of [{ subjectRef: SUBJECT }, { actorId: 'bob' }, { sessionId }]) {
      const query = { tenantId, by, fromTime: 0, toTime: NOW + 1000 };
      const want = expected(written, { ...query, limit: 1000 });
      expect(want.length).toBeGreaterThan(5);
      for (const limit of [1, 4, 1000]) {
        const pages = await allPages(audit, query, limit);
        expect(pages.every((page) => page.length <= limit)).toBe(true);
        expect(ids(pages.flat())).toEqual(ids(want));
      }
    }
  });

  it('selects fromTime <= time < toTime', async () => {
    const written = await writeTrail();
    for (const [fromTime, toTime] of [
      [NOW + 1, NOW + 3],
      [NOW + 0.5, NOW + 2.5],
      [NOW + 4, NOW + 5],
      [NOW + 2, NOW + 2],
      [-Infinity, Infinity],
    ]) {
      const query = { tenantId, by: { actorId: 'alice' }, fromTime, toTime, limit: 1000 };
      const page = await audit.listRecords(query);
      expect(ids(page)).toEqual(ids(expected(written, query)));
    }
    const edges = await audit.listRecords({
      tenantId,
      by: { subjectRef: SUBJECT },
      fromTime: NOW + 1,
      toTime: NOW + 2,
      limit: 1000,
    });
    expect(edges.length).toBeGreaterThan(0);
    expect(edges.every((record) => record.time === NOW + 1)).toBe(true);
  });

  it('keeps ids that differ only in case, trailing space or normalisation apart', async () => {
    const actors = ['Alice', 'alice', 'alice ', '\u00e9', 'e\u0301', 'x'.repeat(256), '\u{1F600}'];
    const subjects = ['YWJj', 'YWJJ', 'YWJj_'];
    const written: StoredAuditRecord[] = [];
    for (const [index, actorId] of actors.entries()) {
      const chain = chainOf(tenantId, `s-${randomUUID()}`);
      written.push(
        ...(await appendEvents(audit, chain, [
          { time: NOW + index, actorId, subjectRef: subjects[index % subjects.length] },
        ])),
      );
    }
    for (const actorId of actors) {
      const page = await audit.listRecords({
        tenantId,
        by: { actorId },
        fromTime: 0,
        toTime: NOW * 2,
        limit: 10,
      });
      expect(page.map((record) => record.actorId)).toEqual([actorId]);
    }
    for (const subjectRef of subjects) {
      const page = await audit.listRecords({
        tenantId,
        by: { subjectRef },
        fromTime: 0,
        toTime: NOW * 2,
        limit: 10,
      });
      expect(page.length).toBeGreaterThan(0);
      expect(page.every((record) => record.subjectRef === subjectRef)).toBe(true);
    }
    const lone = await audit.listRecords({
      tenantId,
      by: { actorId: '\uD800' },
      fromTime: 0,
      toTime: NOW * 2,
      limit: 10,
    });
    expect(lone).toEqual([]);
  });

  it("reads only the chains the target's registry lists", async () => {
    const mine = [0, 1, 2].map(() => chainOf(tenantId, `mine-${randomUUID()}`));
    const others = [0, 1, 2, 3].map(() => chainOf(tenantId, `other-${randomUUID()}`));
    for (const chain of mine) await appendEvents(audit, chain, [{ time: NOW }]);
    for (const chain of others) {
      await appendEvents(audit, chain, [
        { time: NOW, actorId: 'someone-else', subjectRef: OTHER_SUBJECT },
      ]);
    }
    const read = vi.spyOn(audit, 'readIndex');
    const page = await audit.listRecords({
      tenantId,
      by: { subjectRef: SUBJECT },
      fromTime: 0,
      toTime: NOW * 2,
      limit: 100,
    });
    expect(page).toHaveLength(3);
    const readChains = new Set(read.mock.calls.map(([chain]) => chain.chainId));
    expect([...readChains].toSorted()).toEqual(mine.map((chain) => chain.chainId).toSorted());
  });

  it('registers a chain for an actor once: later commits of that actor skip the registry', async () => {
    const chain = chainOf(tenantId, `s-${randomUUID()}`);
    const register = vi.spyOn(audit, 'registerChains');
    await appendEvents(audit, chain, [{ time: NOW, actorId: 'alice' }]);
    expect(register).toHaveBeenCalledTimes(1);
    await appendEvents(audit, chain, [{ time: NOW + 1, actorId: 'alice' }]);
    expect(register).toHaveBeenCalledTimes(2); // the new chains only: none this time
    expect(register.mock.calls[1][0]).toEqual([]);
    // A new actor on the existing chain: the commit is refused until the chain joins its registry.
    await appendEvents(audit, chain, [{ time: NOW + 2, actorId: 'bob', subjectRef: null }]);
    expect(register.mock.calls.at(-1)![0]).toEqual([{ chain, subjectRefs: [], actorIds: ['bob'] }]);
    const bob = await audit.listRecords({
      tenantId,
      by: { actorId: 'bob' },
      fromTime: 0,
      toTime: NOW * 2,
      limit: 10,
    });
    expect(bob.map((record) => record.seq)).toEqual([3]);
  });

  it("indexes records a session's unit of work commits, including a new actor of an existing chain", async () => {
    const ref: SessionRef = { tenantId, sessionId: `s-${randomUUID()}` };
    const chain = chainOf(tenantId, ref.sessionId);
    const storage = redis.storage;
    const commitEvent = (actorId: string, time: number) =>
      storage.transaction(ref, async (scope) => {
        await scope.session.insertIfAbsent({
          ...ref,
          subjectId: null,
          createdAt: NOW,
          lastActivityAt: NOW,
          nextSeq: 1,
          itemTtlSeconds: 60,
          legalHold: false,
        });
        const head = await scope.audit!.lockHead(chain.chainId);
        const seq = (head?.seq ?? 0) + 1;
        await scope.audit!.append([
          {
            chainId: chain.chainId,
            seq,
            tenantId,
            sessionId: ref.sessionId,
            eventId: randomUUID(),
            time,
            action: 'session.append',
            outcome: 'success',
            actorId,
            subjectRef: SUBJECT,
            macKeyId: 'mac-1',
            prevMac: head?.mac ?? GENESIS,
            mac: randomBytes(32),
            body: '{}',
          },
        ]);
      });
    await commitEvent('alice', NOW + 5);
    await commitEvent('bob', NOW + 1);
    await commitEvent('alice', NOW + 3);
    const report = (by: AuditRecordQuery['by']) =>
      audit.listRecords({ tenantId, by, fromTime: 0, toTime: NOW * 2, limit: 10 });
    expect((await report({ actorId: 'bob' })).map((record) => record.seq)).toEqual([2]);
    expect((await report({ actorId: 'alice' })).map((record) => record.seq)).toEqual([3, 1]);
    expect((await report({ sessionId: ref.sessionId })).map((record) => record.seq)).toEqual([
      2, 3, 1,
    ]);
    expect((await report({ subjectRef: SUBJECT })).map((record) => record.seq)).toEqual([2, 3, 1]);
    const keys = layout.forAuditChain(chain);
    for (const key of [keys.byTime, keys.byActor('bob'), keys.bySubject(SUBJECT)]) {
      expect(await redis.client.pttl(key)).toBe(-1);
    }
  });

  describe('damage', () => {
    let chain: AuditChainRef;
    let records: StoredAuditRecord[];
    const query = (): AuditRecordQuery => ({
      tenantId,
      by: { actorId: 'alice' },
      fromTime: 0,
      toTime: NOW * 2,
      limit: 10,
    });

    beforeEach(async () => {
      chain = chainOf(tenantId, `s-${randomUUID()}`);
      records = await appendEvents(audit, chain, [
        { time: NOW, actorId: 'alice' },
        { time: NOW + 1, actorId: 'alice' },
      ]);
    });

    it('skips a registry entry whose chain has no record (a commit that failed after it)', async () => {
      await audit.registerChains([
        {
          chain: chainOf(tenantId, `s-${randomUUID()}`),
          subjectRefs: [SUBJECT],
          actorIds: ['alice'],
        },
      ]);
      expect(ids(await audit.listRecords(query()))).toEqual(ids(records));
    });

    it('skips an index entry whose record is not there', async () => {
      await redis.client.zadd(
        layout.forAuditChain(chain).byActor('alice'),
        0,
        packAuditIndexMember(NOW, 99),
      );
      expect(ids(await audit.listRecords(query()))).toEqual(ids(records));
    });

    it.each([
      ['a member that is not a packed time and seq', `${packAuditIndexMember(NOW, 1)}x`],
      ['a member with a seq that is not hex', `${packAuditIndexMember(NOW, 1).slice(0, 14)}zz`],
      ['a member with a time its record does not have', packAuditIndexMember(NOW + 7, 1)],
      ['a member of a record by another actor', 'other'],
    ])('raises IntegrityError for %s', async (_name, member) => {
      const keys = layout.forAuditChain(chain);
      if (member === 'other') {
        await appendEvents(audit, chain, [{ time: NOW + 2, actorId: 'bob' }]);
        await redis.client.zadd(keys.byActor('alice'), 0, packAuditIndexMember(NOW + 2, 3));
      } else {
        await redis.client.zadd(keys.byActor('alice'), 0, member);
      }
      await expect(audit.listRecords(query())).rejects.toBeInstanceOf(IntegrityError);
    });

    it('raises IntegrityError for a registry entry with no chain location', async () => {
      await redis.client.zadd(layout.auditRegistry(tenantId, { actorId: 'alice' }), 0, 'ghost');
      await expect(audit.listRecords(query())).rejects.toBeInstanceOf(IntegrityError);
    });
  });
});

describe.skipIf(!up)('Redis access report on a Redis Cluster', () => {
  const cluster = loopbackClusterForSuite();

  it('reports a subject and an actor across sessions in different slots', async () => {
    const client = cluster.client();
    const storage = new RedisSessionStorage({
      client,
      keyPrefix: `nes-${randomUUID().slice(0, 8)}:`,
    });
    try {
      const audit = storage.audit;
      const layout = new RedisKeyLayout(storage.keyPrefix);
      const tenantId = `tenant-${randomUUID()}`;
      const chains = [
        ...Array.from({ length: 6 }, () => chainOf(tenantId, `s-${randomUUID()}`)),
        chainOf(tenantId, null),
      ];
      const slots = new Set<number>();
      for (const chain of chains) {
        slots.add(await client.cluster('KEYSLOT', layout.forAuditChain(chain).records));
      }
      expect(slots.size).toBeGreaterThan(2);
      const written: StoredAuditRecord[] = [];
      for (const [index, chain] of chains.entries()) {
        written.push(
          ...(await appendEvents(audit, chain, [
            { time: NOW + (index % 2), actorId: 'alice' },
            { time: NOW, actorId: 'bob', subjectRef: OTHER_SUBJECT },
          ])),
        );
        written.push(...(await appendEvents(audit, chain, [{ time: NOW + 1, actorId: 'carol' }])));
      }
      for (const by of [{ subjectRef: SUBJECT }, { actorId: 'carol' }]) {
        const query = { tenantId, by, fromTime: 0, toTime: NOW * 2 };
        const pages = await allPages(audit, query, 3);
        expect(ids(pages.flat())).toEqual(ids(expected(written, { ...query, limit: 1000 })));
        expect(pages.flat().length).toBeGreaterThan(6);
      }
    } finally {
      await storage.close();
      client.disconnect();
    }
  });
});
