import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { auditRecordOf, sessionChainId, type AuditRecord } from '../../src/audit/audit-chain.js';
import { buildAuditEvent } from '../../src/audit/audit-event.js';
import { verifyChain } from '../../src/audit/chain-verifier.js';
import { sealedEvents } from '../support/sealed-chain.js';

const macKey = randomBytes(32);
const chainId = sessionChainId('t1', 's1');
const keys = new Map([['mk-1', macKey]]);
const macKeyFor = (id: string) => keys.get(id);

const bodyAt = (index: number) =>
  buildAuditEvent({
    action: 'session.append',
    outcome: 'success',
    actor: { type: 'user', id: 'u-1', tenantId: 't1' },
    target: { tenantId: 't1', sessionId: 's1', count: index + 1 },
    time: 1_767_225_600_000 + index,
  });

/** Seals `bodies` into a chain in order, under `key`: the records as the trail stores them. */
const seal = (bodies: ReturnType<typeof bodyAt>[], key = macKey, id = chainId): AuditRecord[] =>
  sealedEvents(bodies, { chainId: id, macKeyId: 'mk-1', macKey: key }).map(auditRecordOf);

/** The records as a stream, as a storage adapter pages them out. */
async function* streamOf(records: AuditRecord[]) {
  yield* records;
}

const chain = seal(Array.from({ length: 6 }, (_, index) => bodyAt(index)));
const headOf = (records: AuditRecord[], seq = records.length) => ({
  seq,
  headMac: Buffer.from(records[seq - 1].chain.mac, 'base64url'),
});

describe('verifyChain', () => {
  it('verifies an intact chain, with or without its checkpointed head', async () => {
    expect(await verifyChain(chain, { chainId, macKeyFor })).toEqual({
      ok: true,
      chainId,
      verifiedThroughSeq: 6,
    });
    expect(
      await verifyChain(chain, { chainId, macKeyFor, checkpointedHead: headOf(chain, 4) }),
    ).toMatchObject({ ok: true, verifiedThroughSeq: 6 });
  });

  it('reads records from an async iterable, one at a time', async () => {
    expect(await verifyChain(streamOf(chain), { chainId, macKeyFor })).toMatchObject({ ok: true });
  });

  it.each<[string, () => AuditRecord[], number, string]>([
    [
      'an edited field',
      () =>
        chain.map((r) =>
          r.chain.seq === 3 ? { ...r, body: r.body.replace('"count":3', '"count":99') } : r,
        ),
      3,
      'mac_mismatch',
    ],
    ['a deleted record', () => chain.filter((r) => r.chain.seq !== 3), 3, 'gap'],
    [
      'two records swapped (their seq exchanged)',
      () =>
        chain.map((r) =>
          r.chain.seq === 3
            ? { ...chain[3], chain: { ...chain[3].chain, seq: 3 } }
            : r.chain.seq === 4
              ? { ...chain[2], chain: { ...chain[2].chain, seq: 4 } }
              : r,
        ),
      3,
      'prev_mac_mismatch',
    ],
    [
      'a record inserted',
      () => {
        const forged = seal([bodyAt(9)], randomBytes(32))[0];
        return [
          ...chain.slice(0, 2),
          { ...forged, chain: { ...forged.chain, seq: 3, prevMac: chain[1].chain.mac } },
          ...chain.slice(2).map((r) => ({ ...r, chain: { ...r.chain, seq: r.chain.seq + 1 } })),
        ];
      },
      3,
      'mac_mismatch',
    ],
    [
      'a record spliced from another chain',
      () => {
        const other = seal([bodyAt(0), bodyAt(1), bodyAt(2)], macKey, sessionChainId('t1', 's2'));
        return [...chain.slice(0, 2), other[2], ...chain.slice(3)];
      },
      3,
      'wrong_chain',
    ],
    [
      'a spliced record whose chain id was rewritten',
      () => {
        const other = seal([bodyAt(0), bodyAt(1), bodyAt(2)], macKey, sessionChainId('t1', 's2'));
        const spliced = {
          ...other[2],
          chain: { ...other[2].chain, chainId, prevMac: chain[1].chain.mac },
        };
        return [...chain.slice(0, 2), spliced, ...chain.slice(3)];
      },
      3,
      'mac_mismatch',
    ],
    [
      'a key id the trail does not know',
      () =>
        chain.map((r) =>
          r.chain.seq === 2 ? { ...r, chain: { ...r.chain, macKeyId: 'mk-9' } } : r,
        ),
      2,
      'unknown_key',
    ],
    [
      'a record without its chain fields',
      () => chain.map((r) => (r.chain.seq === 4 ? ({ body: r.body } as AuditRecord) : r)),
      4,
      'malformed',
    ],
    [
      'a MAC that is not 32 bytes',
      () =>
        chain.map((r) => (r.chain.seq === 5 ? { ...r, chain: { ...r.chain, mac: 'AAAA' } } : r)),
      5,
      'malformed',
    ],
  ])('names %s, at the first bad seq', async (_name, tamper, firstBadSeq, reason) => {
    expect(await verifyChain(tamper(), { chainId, macKeyFor })).toMatchObject({
      ok: false,
      verifiedThroughSeq: firstBadSeq - 1,
      firstBadSeq,
      reason,
    });
  });

  it('never asks for a key without an id (a record missing its chain fields)', async () => {
    const asked: unknown[] = [];
    const records = chain.map((r) => (r.chain.seq === 2 ? ({ body: r.body } as AuditRecord) : r));
    const result = await verifyChain(records, {
      chainId,
      macKeyFor: (id) => {
        asked.push(id);
        return macKeyFor(id);
      },
    });
    expect(result).toMatchObject({ ok: false, firstBadSeq: 2, reason: 'malformed' });
    expect(asked).toEqual(['mk-1']);
  });

  it('names a tail cut below the checkpointed head', async () => {
    expect(
      await verifyChain(chain.slice(0, 4), {
        chainId,
        macKeyFor,
        checkpointedHead: headOf(chain, 6),
      }),
    ).toMatchObject({ ok: false, verifiedThroughSeq: 4, firstBadSeq: 5, reason: 'truncated' });
  });

  it('names a full rewrite with the stolen MAC key by its checkpointed head', async () => {
    const bodies = chain.map((r) => JSON.parse(r.body) as ReturnType<typeof bodyAt>);
    const rewritten = seal(
      bodies.map((body) => ({ ...body, target: { ...body.target, count: 0 } })),
    );
    expect(await verifyChain(rewritten, { chainId, macKeyFor })).toMatchObject({ ok: true });
    expect(
      await verifyChain(rewritten, { chainId, macKeyFor, checkpointedHead: headOf(chain, 5) }),
    ).toMatchObject({ ok: false, firstBadSeq: 5, reason: 'checkpoint_mismatch' });
  });

  it('names a chain deleted whole that a checkpoint lists', async () => {
    expect(
      await verifyChain([], { chainId, macKeyFor, checkpointedHead: headOf(chain, 6) }),
    ).toMatchObject({ ok: false, verifiedThroughSeq: 0, firstBadSeq: 1, reason: 'missing' });
  });

  it('verifies a range from a given seq, trusting the MAC before it', async () => {
    expect(
      await verifyChain(chain.slice(2), {
        chainId,
        macKeyFor,
        fromSeq: 3,
        prevMacBeforeFrom: Buffer.from(chain[1].chain.mac, 'base64url'),
      }),
    ).toMatchObject({ ok: true, verifiedThroughSeq: 6 });
    expect(await verifyChain(chain.slice(2), { chainId, macKeyFor, fromSeq: 3 })).toMatchObject({
      ok: false,
      firstBadSeq: 3,
      reason: 'prev_mac_mismatch',
    });
  });
});
