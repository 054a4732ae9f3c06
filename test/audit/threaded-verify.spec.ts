import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecordOf, sessionChainId, type AuditRecord } from '../../src/audit/audit-chain.js';
import { buildAuditEvent } from '../../src/audit/audit-event.js';
import type { verifyChain as VerifyChain } from '../../src/audit/chain-verifier.js';
import { MacCheckPool as SourceMacCheckPool } from '../../src/audit/mac-check-pool.js';
import { firstMacMismatch, packMacPage } from '../../src/audit/mac-check.js';
import { compileLibrary, type CompiledLibrary } from '../support/compiled-library.js';
import { sealedEvents } from '../support/sealed-chain.js';

/*
 * A long chain's MACs are checked on worker threads while the verifier walks its links. The
 * workers run compiled JavaScript, so these tests load the verifier and the pool from a build,
 * and hold it to the same answers as the verifier on one thread: the first break in chain
 * order, whichever thread found it.
 */

const macKey = randomBytes(32);
const chainId = sessionChainId('t1', 's1');
const macKeyFor = (id: string) => (id === 'mk-1' ? macKey : undefined);
const RECORDS = 3000;
const PAGE = 100;

const sealChain = (count: number): AuditRecord[] =>
  sealedEvents(
    Array.from({ length: count }, (_, index) =>
      buildAuditEvent({
        action: 'session.read',
        outcome: 'success',
        actor: { type: 'user', id: 'u-1', tenantId: 't1' },
        target: { tenantId: 't1', sessionId: 's1', count: index },
        time: 1_767_225_600_000 + index,
      }),
    ),
    { chainId, macKeyId: 'mk-1', macKey },
  ).map(auditRecordOf);

/** The records in pages, as a storage adapter streams them. */
async function* pagesOf(records: readonly AuditRecord[]) {
  for (let from = 0; from < records.length; from += PAGE) yield records.slice(from, from + PAGE);
}

/** Records as a storage adapter's chain links. */
const linksOf = (records: readonly AuditRecord[]) =>
  records.map((record) => ({
    seq: record.chain.seq,
    macKeyId: record.chain.macKeyId,
    prevMac: Buffer.from(record.chain.prevMac, 'base64url'),
    mac: Buffer.from(record.chain.mac, 'base64url'),
    body: record.body,
  }));

const edited = (records: AuditRecord[], seq: number): AuditRecord[] =>
  records.map((record) =>
    record.chain.seq === seq
      ? { ...record, body: record.body.replace('"session.read"', '"session.pop"') }
      : record,
  );

describe('verifying a long chain with MAC checks on worker threads', () => {
  let library: CompiledLibrary;
  let verifyChain: typeof VerifyChain;
  let pool: SourceMacCheckPool;
  const chain = sealChain(RECORDS);

  beforeAll(async () => {
    library = compileLibrary();
    const audit = new URL('./audit/', library.entryUrl);
    ({ verifyChain } = (await import(new URL('chain-verifier.js', audit).href)) as {
      verifyChain: typeof VerifyChain;
    });
    const { MacCheckPool } = (await import(new URL('mac-check-pool.js', audit).href)) as {
      MacCheckPool: typeof SourceMacCheckPool;
    };
    pool = MacCheckPool.open(2)!;
  }, 60_000);

  afterAll(async () => {
    await pool?.close();
    library?.dispose();
  });

  const threaded = (records: AuditRecord[], extra = {}) =>
    verifyChain(pagesOf(records), { chainId, macKeyFor, macCheckPool: pool, ...extra });

  it('starts its workers from the build (from the TypeScript sources there are none to start)', () => {
    expect(pool).toBeDefined();
    expect(pool.threads).toBe(2);
    expect(SourceMacCheckPool.open(2)).toBeUndefined();
  });

  it('has a worker name the first record of a packed page whose MAC does not hold', async () => {
    const links = linksOf(edited(chain.slice(0, PAGE), 38));
    const page = () => packMacPage(chainId, links, () => macKey);
    expect(await pool.firstMismatch(page())).toBe(37);
    links[37] = { ...links[37], body: chain[37].body };
    expect(await pool.firstMismatch(page())).toBe(-1);
  });

  it("hands a checked page's buffer back, to pack the next page into", async () => {
    const first = packMacPage(chainId, linksOf(chain.slice(0, PAGE)), () => macKey);
    const size = first.buffer.byteLength;
    expect(await pool.firstMismatch(first)).toBe(-1);
    const spare = pool.spareBuffer();
    expect(spare?.byteLength).toBe(size);
    const next = packMacPage(
      chainId,
      linksOf(edited(chain, PAGE + 5).slice(PAGE, 2 * PAGE)),
      () => macKey,
      spare,
    );
    expect(next.buffer).toBe(spare);
    expect(await pool.firstMismatch(next)).toBe(4);
  });

  it('packs into a new buffer when the spare one is too small', () => {
    const spare = new ArrayBuffer(16);
    const page = packMacPage(chainId, linksOf(chain.slice(0, PAGE)), () => macKey, spare);
    expect(page.buffer).not.toBe(spare);
    expect(firstMacMismatch(page)).toBe(-1);
  });

  it('verifies an intact chain through its last record', async () => {
    expect(await threaded(chain)).toEqual({ ok: true, chainId, verifiedThroughSeq: RECORDS });
  });

  it.each([1, 100, 101, 1777, RECORDS])(
    'names an edit of record %i as mac_mismatch, as one thread does',
    async (seq) => {
      const records = edited(chain, seq);
      const expected = {
        ok: false,
        chainId,
        verifiedThroughSeq: seq - 1,
        firstBadSeq: seq,
        reason: 'mac_mismatch',
      };
      expect(await threaded(records)).toEqual(expected);
      expect(await verifyChain(pagesOf(records), { chainId, macKeyFor })).toEqual(expected);
    },
  );

  it('reports an edit before a later gap, though the walk reaches the gap first', async () => {
    const records = edited(chain, 1500).filter((record) => record.chain.seq !== 2900);
    expect(await threaded(records)).toMatchObject({ firstBadSeq: 1500, reason: 'mac_mismatch' });
  });

  it('reports a gap before a later edit', async () => {
    const records = edited(chain, 2900).filter((record) => record.chain.seq !== 1500);
    expect(await threaded(records)).toMatchObject({
      verifiedThroughSeq: 1499,
      firstBadSeq: 1500,
      reason: 'gap',
    });
  });

  it('reports the first of two edits', async () => {
    expect(await threaded(edited(edited(chain, 2500), 640))).toMatchObject({
      firstBadSeq: 640,
      reason: 'mac_mismatch',
    });
  });

  it('names a tail cut below the checkpointed head', async () => {
    const head = chain.at(-1)!.chain;
    expect(
      await threaded(chain.slice(0, 2000), {
        checkpointedHead: { seq: head.seq, headMac: Buffer.from(head.mac, 'base64url') },
      }),
    ).toMatchObject({ ok: false, verifiedThroughSeq: 2000, reason: 'truncated' });
  });

  it('checks records signed under a key the verifier does not hold as unknown_key', async () => {
    const records = chain.map((record) =>
      record.chain.seq === 2222
        ? { ...record, chain: { ...record.chain, macKeyId: 'mk-9' } }
        : record,
    );
    expect(await threaded(records)).toMatchObject({ firstBadSeq: 2222, reason: 'unknown_key' });
  });
});
