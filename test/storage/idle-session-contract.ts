import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  supportsMaintenance,
  type SessionRef,
  type SessionStorage,
} from '../../src/index.js';
import type { StorageMaintenance } from '../../src/storage/storage.ports.js';
import type { SessionRecord } from '../../src/storage/storage.records.js';
import type { HarnessFactory, SessionHarness } from '../support/session-harness.js';
import { newSessionRecord } from '../support/session-records.js';
import { rejectionOf } from '../support/thrown-by.js';

/*
 * What the idle-session purge needs of an adapter: a scan of the session rows of every tenant
 * whose last activity is before a time, in keyset pages by (last activity, tenant bytes,
 * session bytes). Sessions are created and aged through the storage port (a write unit's
 * lockForWrite records its activity time). The scan sees every session of the store, so each
 * test has a store of its own.
 */

/** The callers' clock of the scans; sessions were last active relative to it. */
const NOW = 1_767_000_000_000;

/** A session's place in the scan, as the tests compare it. */
type Found = [tenantId: string, sessionId: string, lastActivityAt: number];

const foundOf = (record: SessionRecord): Found => [
  record.tenantId,
  record.sessionId,
  record.lastActivityAt,
];

/** A cursor-shaped string: base64url JSON. */
const base64Json = (value: unknown): string =>
  Buffer.from(JSON.stringify(value)).toString('base64url');

/** The scan order of the tests' expectations: activity, then tenant and session by bytes. */
const byScanOrder = (a: Found, b: Found): number =>
  a[2] - b[2] ||
  Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])) ||
  Buffer.compare(Buffer.from(a[1]), Buffer.from(b[1]));

export function describeIdleSessionScanContract(name: string, createHarness: HarnessFactory): void {
  describe(`${name} idle-session scan`, () => {
    let harness: SessionHarness;
    let storage: SessionStorage;
    let maintenance: StorageMaintenance;

    beforeEach(async () => {
      harness = await createHarness();
      storage = harness.storage;
      if (!supportsMaintenance(storage)) throw new Error(`${name} offers no maintenance`);
      maintenance = storage.maintenance;
    });
    afterEach(async () => {
      await harness?.close();
    });

    /** Creates the session if needed and records its activity at `at`, as a write unit does. */
    const activeAt = (ref: SessionRef, at: number): Promise<boolean> =>
      storage.transaction(ref, async (scope) => {
        await scope.session.insertIfAbsent(newSessionRecord(ref));
        return scope.session.lockForWrite(at);
      });

    const scan = (before: number, cursor: string | undefined, limit: number) =>
      maintenance.listIdleSessions!(before, cursor, limit);

    /** Every page of the scan before `before`, `limit` sessions each. */
    const scanAll = async (before: number, limit: number) => {
      const pages: Array<{ found: Found[]; cursor: string | undefined }> = [];
      let cursor: string | undefined;
      do {
        const page = await scan(before, cursor, limit);
        pages.push({ found: page.sessions.map(foundOf), cursor: page.cursor });
        cursor = page.cursor;
        if (pages.length > 50) throw new Error('the scan does not end');
      } while (cursor !== undefined);
      return pages;
    };

    it('offers the scan', () => {
      expect('listIdleSessions' in maintenance).toBe(true);
    });

    it('lists sessions of every tenant last active before `before` (exclusive), by activity, tenant and session', async () => {
      const sessions: Found[] = [
        ['tenant-b', 's1', NOW - 5_000],
        ['tenant-a', 's2', NOW - 1_000],
        ['tenant-a', 's1', NOW - 1_000],
        ['tenant-b', 's0', NOW - 1_000],
        ['tenant-a', 's3', NOW - 9_000],
        ['tenant-a', 'at-before', NOW],
        ['tenant-b', 'after', NOW + 1],
        ['tenant-c', 'just-before', NOW - 1],
      ];
      for (const [tenantId, sessionId, at] of sessions) {
        expect(await activeAt({ tenantId, sessionId }, at)).toBe(true);
      }

      const [page, ...more] = await scanAll(NOW, 100);
      expect(more).toEqual([]);
      expect(page).toEqual({
        found: [
          ['tenant-a', 's3', NOW - 9_000],
          ['tenant-b', 's1', NOW - 5_000],
          ['tenant-a', 's1', NOW - 1_000],
          ['tenant-a', 's2', NOW - 1_000],
          ['tenant-b', 's0', NOW - 1_000],
          ['tenant-c', 'just-before', NOW - 1],
        ],
        cursor: undefined,
      });
      // `before` itself is not idle; one past it is.
      expect((await scanAll(NOW + 1, 100))[0].found.map(([, id]) => id)).toContain('at-before');
      expect(await scanAll(NOW - 9_000, 100)).toEqual([{ found: [], cursor: undefined }]);
      // The whole session row comes back, as stored.
      const [first] = (await scan(NOW, undefined, 1)).sessions;
      expect(first).toEqual({
        ...newSessionRecord({ tenantId: 'tenant-a', sessionId: 's3' }),
        lastActivityAt: NOW - 9_000,
      });
    });

    it('pages with a cursor: a full page returns one, a short page none, and no session twice', async () => {
      for (let i = 1; i <= 5; i++) {
        await activeAt({ tenantId: `tenant-${i % 2}`, sessionId: `s${i}` }, NOW - 1_000 * i);
      }
      const pages = await scanAll(NOW, 2);
      expect(pages.map((page) => page.found.map(([, id]) => id))).toEqual([
        ['s5', 's4'],
        ['s3', 's2'],
        ['s1'],
      ]);
      expect(pages.map((page) => page.cursor === undefined)).toEqual([false, false, true]);

      // A last page that happens to be full returns a cursor; the page after it is empty.
      const exact = await scanAll(NOW, 5);
      expect(exact.map((page) => page.found.length)).toEqual([5, 0]);
      expect(exact.map((page) => page.cursor === undefined)).toEqual([false, true]);
    });

    it('keeps ids that differ only by case, a trailing space or normalisation apart, ordered by bytes', async () => {
      const tenants = ['Tenant', 'tenant', 'a', 'a ', '\u00e9', 'e\u0301'];
      const sessions = ['S', 's', 'x', 'x ', 'caf\u00e9', 'cafe\u0301'];
      const expected: Found[] = [];
      for (const [index, at] of [NOW - 2_000, NOW - 1_000].entries()) {
        for (const tenantId of tenants) {
          const sessionId = `session-${index}`;
          await activeAt({ tenantId, sessionId }, at);
          expected.push([tenantId, sessionId, at]);
        }
        for (const sessionId of sessions) {
          await activeAt({ tenantId: `ids-${index}`, sessionId }, at);
          expected.push([`ids-${index}`, sessionId, at]);
        }
      }
      expected.sort(byScanOrder);
      expect((await scanAll(NOW, 100))[0].found).toEqual(expected);
      // One by one, and three by three: the cursor's comparison of ids is by bytes too.
      for (const limit of [1, 3]) {
        const pages = await scanAll(NOW, limit);
        expect(pages.flatMap((page) => page.found)).toEqual(expected);
      }
    });

    it('carries any id through the cursor: quotes, backslashes, a tab, astral and noncharacters', async () => {
      const ids = ['"quoted"', 'back\\slash', 'tab\tbed', '\u{1f600}', '\uffff', 'plain'];
      for (const id of ids) await activeAt({ tenantId: id, sessionId: id }, NOW - 500);
      const expected = ids.map((id): Found => [id, id, NOW - 500]).toSorted(byScanOrder);
      const pages = await scanAll(NOW, 1);
      expect(pages.flatMap((page) => page.found)).toEqual(expected);
      // The same cursor gives the same next page: it names a place, not a position.
      const first = await scan(NOW, undefined, 2);
      const again = await scan(NOW, first.cursor, 2);
      expect((await scan(NOW, first.cursor, 2)).sessions).toEqual(again.sessions);
      expect(again.sessions.map(foundOf)).toEqual(expected.slice(2, 4));
    });

    it('continues after the cursor when the listed sessions were deleted between pages', async () => {
      for (let i = 1; i <= 5; i++) {
        await activeAt({ tenantId: 'tenant', sessionId: `s${i}` }, NOW - 100 * (6 - i));
      }
      const seen: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await scan(NOW, cursor, 2);
        seen.push(page.sessions.map((record) => record.sessionId));
        for (const { tenantId, sessionId } of page.sessions) {
          await storage.transaction({ tenantId, sessionId }, (scope) =>
            scope.session.deleteSession!(),
          );
        }
        cursor = page.cursor;
      } while (cursor !== undefined);
      expect(seen).toEqual([['s1', 's2'], ['s3', 's4'], ['s5']]);
      expect(await scanAll(NOW, 10)).toEqual([{ found: [], cursor: undefined }]);
    });

    it('finds a session touched during the scan on a later page only while its new activity is before `before`', async () => {
      const before = NOW;
      for (let i = 1; i <= 6; i++) {
        await activeAt({ tenantId: 'tenant', sessionId: `s${i}` }, NOW - 1_000 * (7 - i));
      }
      const first = await scan(before, undefined, 2);
      expect(first.sessions.map((record) => record.sessionId)).toEqual(['s1', 's2']);

      // Not yet reached: s3 active now (no longer idle), s4 active at before itself (not idle
      // either), s5 active later but still idle (found, in its new place).
      await activeAt({ tenantId: 'tenant', sessionId: 's3' }, NOW + 5_000);
      await activeAt({ tenantId: 'tenant', sessionId: 's4' }, before);
      await activeAt({ tenantId: 'tenant', sessionId: 's5' }, before - 1);
      // Already passed: s1 active again past the cursor but still idle (found again: pages may
      // overlap); s2 active now (not found).
      await activeAt({ tenantId: 'tenant', sessionId: 's1' }, before - 10);
      await activeAt({ tenantId: 'tenant', sessionId: 's2' }, NOW + 5_000);

      const rest: Found[] = [];
      let cursor = first.cursor;
      while (cursor !== undefined) {
        const page = await scan(before, cursor, 2);
        rest.push(...page.sessions.map(foundOf));
        cursor = page.cursor;
      }
      expect(rest).toEqual([
        ['tenant', 's6', NOW - 1_000],
        ['tenant', 's1', before - 10],
        ['tenant', 's5', before - 1],
      ]);
    });

    it("never moves a session's activity back: a unit locking with an earlier time keeps the later one", async () => {
      const ref = { tenantId: 'tenant', sessionId: 'busy' };
      await activeAt(ref, NOW - 1_000);
      // A job locks the session with the activity time it read; an append committed a later
      // one in between. The session must not look idle for longer than it is.
      await activeAt(ref, NOW - 100_000);
      const [page] = await scanAll(NOW, 10);
      expect(page.found).toEqual([['tenant', 'busy', NOW - 1_000]]);
    });

    it('refuses a cursor no page returned with InvalidArgumentError', async () => {
      await activeAt({ tenantId: 'tenant', sessionId: 'session' }, NOW - 1_000);
      for (const cursor of [
        'not a cursor',
        '',
        base64Json({ lastActivityAt: 1 }),
        base64Json([1, 'tenant']),
        base64Json([1, 'tenant', 'session', 1]),
        base64Json(['1', 'tenant', 'session']),
        base64Json([1.5, 'tenant', 'session']),
        base64Json([1, 'tenant', 2]),
        base64Json([1, null, 'session']),
        base64Json([2 ** 53, 'tenant', 'session']),
      ]) {
        const error = await rejectionOf(() => scan(NOW, cursor, 10));
        expect(error, cursor).toBeInstanceOf(InvalidArgumentError);
        expect(error.message).toMatch(/cursor passed to listIdleSessions/);
      }
    });

    it('refuses a `before` or a `limit` that is not a whole number with InvalidArgumentError', async () => {
      const bad = maintenance as unknown as {
        listIdleSessions(...args: unknown[]): Promise<unknown>;
      };
      for (const before of [1.5, Number.NaN, Infinity, 2 ** 53, '1767000000000', null, undefined]) {
        const error = await rejectionOf(() => bad.listIdleSessions(before, undefined, 10));
        expect(error, String(before)).toBeInstanceOf(InvalidArgumentError);
        expect(error.message).toMatch(/listIdleSessions takes `before`/);
      }
      for (const limit of [0, -1, 1.5, Number.NaN, '10', null, undefined]) {
        const error = await rejectionOf(() => bad.listIdleSessions(NOW, undefined, limit));
        expect(error, String(limit)).toBeInstanceOf(InvalidArgumentError);
        expect(error.message).toMatch(/listIdleSessions takes a page `limit`/);
      }
    });
  });
}
