import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  auditRecordOf,
  canonicalJson,
  sealAuditEvent,
  sessionChainId,
  tenantChainId,
  type AuditRecord,
} from '../../src/audit/audit-chain.js';
import { currentAuditContext, runAs } from '../../src/audit/audit-context.js';
import {
  AUDIT_SCHEMA,
  MAX_AUDIT_ID_LENGTH,
  buildAuditEvent,
  type AuditEventInput,
} from '../../src/audit/audit-event.js';
import { verifyChain } from '../../src/audit/chain-verifier.js';
import {
  checkpointLeaf,
  checkpointSignatureHolds,
  headInclusionProof,
  headIsInCheckpoint,
  headsMatchCheckpoint,
  signCheckpoint,
  sortedHeads,
} from '../../src/audit/checkpoint.js';
import { lengthPrefixed } from '../../src/audit/length-prefixed.js';
import { merkleInclusionProof, merkleRoot, verifyMerkleInclusion } from '../../src/audit/merkle.js';
import { InvalidArgumentError } from '../../src/errors/index.js';
import { thrownBy } from '../support/thrown-by.js';

// Edges of the audit layer's pure functions, found by mutation testing (StrykerJS on
// src/audit): boundaries, exact formats and the branches the main specs do not reach.

const input: AuditEventInput = {
  action: 'session.read',
  outcome: 'success',
  actor: { type: 'user', id: 'u-1', tenantId: 't1' },
  target: { tenantId: 't1' },
  time: 1000,
};
const refusal = (change: Record<string, unknown>) => {
  const error = thrownBy(() => buildAuditEvent({ ...input, ...change }));
  expect(error).toBeInstanceOf(InvalidArgumentError);
  return (error as Error).message;
};
/** Records as an async stream of pages of `size`, as a storage adapter reads them. */
async function* inPages<T>(records: readonly T[], size: number) {
  for (let start = 0; start < records.length; start += size)
    yield records.slice(start, start + size);
}
const withActorId = (id: string) => ({ actor: { type: 'user', id, tenantId: 't1' } });
/** The actor id an event is built with, or how building it failed. */
const actorIdOf = (id: string) => {
  try {
    return buildAuditEvent({ ...input, ...withActorId(id) } as AuditEventInput).actor.id;
  } catch (error) {
    return error instanceof InvalidArgumentError ? 'refused' : 'other error';
  }
};

describe('audit event edges', () => {
  it('names its schema nes.audit/1', () => {
    expect(AUDIT_SCHEMA).toBe('nes.audit/1');
  });

  it.each(['\u001f', '\u007f', '\u0080', '\u009f', '\u2028', '\u2029'])(
    'refuses an id holding %j, also as its last character',
    (character) => {
      expect([`a${character}b`, `ab${character}`].map(actorIdOf)).toEqual(['refused', 'refused']);
    },
  );

  it.each([' ', '~', '\u00a0'])('takes an id holding %j', (character) => {
    expect(actorIdOf(`a${character}b`)).toBe(`a${character}b`);
  });

  it('takes ids of exactly the longest length, not one more', () => {
    const longest = 'x'.repeat(MAX_AUDIT_ID_LENGTH);
    expect(buildAuditEvent({ ...input, ...withActorId(longest) } as AuditEventInput).actor.id).toBe(
      longest,
    );
    expect(refusal(withActorId(`${longest}x`))).toMatch(/actor\.id/);
  });

  it('takes time 0 and refuses -1', () => {
    expect(buildAuditEvent({ ...input, time: 0 }).time).toBe(0);
    expect(refusal({ time: -1 })).toMatch(/time/);
  });

  it.each([
    [{ outcome: 'maybe' }, 'audit event: outcome must be one of success, failure, denied'],
    [{ source: { requestId: '' } }, 'source.requestId'],
    [{ target: { tenantId: 't1', subjectRef: '' } }, 'target.subjectRef'],
    [{ keys: { kekIds: [''] } }, 'keys.kekIds'],
    [{ actor: { type: 'user', id: 'u', tenantId: '' } }, 'actor.tenantId'],
    [{ actor: { type: 'user', id: 'u', tenantId: 't', onBehalfOf: '' } }, 'actor.onBehalfOf'],
    [{ actor: { type: 'user', id: 7, tenantId: 't' } }, 'actor.id'],
    [{ actor: undefined }, 'actor.type'],
    [{ target: undefined }, 'target.tenantId'],
  ])('refuses %j naming the field', (change, field) => {
    expect(refusal(change)).toContain(field);
  });

  it('leaves out optional fields that are not given', () => {
    const event = buildAuditEvent({
      ...input,
      source: { requestId: 'r-1' },
      keys: { dekIds: ['d-1'] },
      target: { tenantId: 't1', sessionId: 's1' },
    });
    expect(event.source).toStrictEqual({ requestId: 'r-1' });
    expect(event.keys).toStrictEqual({ dekIds: ['d-1'] });
    expect(event.target).toStrictEqual({ tenantId: 't1', sessionId: 's1' });
  });
});

describe('audit chain edges', () => {
  it('formats chain ids exactly', () => {
    expect(tenantChainId('acme')).toBe('tenant.YWNtZQ');
    expect(sessionChainId('acme', 's1')).toBe('session.YWNtZQ.czE');
  });

  it('refuses to canonicalise a value with no JSON form', () => {
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
  });

  it('length-prefixes strings by their UTF-8 bytes, and bytes as given', () => {
    expect(lengthPrefixed(['é', Uint8Array.of(1, 2)]).toString('hex')).toBe(
      '00000002c3a9000000020102',
    );
  });
});

describe('audit context edges', () => {
  it('holds no source when none is given', () => {
    runAs({ type: 'user', id: 'u', tenantId: 't' }, () => {
      expect(currentAuditContext()).toStrictEqual({
        actor: { type: 'user', id: 'u', tenantId: 't' },
      });
    });
  });
});

describe('chain verifier edges', () => {
  const macKey = randomBytes(32);
  const chainId = sessionChainId('t1', 's1');
  const records: AuditRecord[] = [];
  let previous: { seq: number; mac: Buffer } | undefined;
  for (let index = 0; index < 6; index += 1) {
    const event = sealAuditEvent(buildAuditEvent({ ...input, time: 1000 + index }), {
      chainId,
      macKeyId: 'mk-1',
      macKey,
      previous,
    });
    previous = { seq: event.chain.seq, mac: Buffer.from(event.chain.mac, 'base64url') };
    records.push(auditRecordOf(event));
  }
  const macOf = (seq: number) => Buffer.from(records[seq - 1].chain.mac, 'base64url');
  const macKeyFor = () => macKey;

  it('looks each key id up once', async () => {
    const asked: string[] = [];
    const result = await verifyChain(records, {
      chainId,
      macKeyFor: (id) => {
        asked.push(id);
        return macKey;
      },
    });
    expect(result.ok).toBe(true);
    expect(asked).toEqual(['mk-1']);
  });

  it('takes pages of records from an async stream', async () => {
    expect(await verifyChain(inPages(records, 3), { chainId, macKeyFor })).toMatchObject({
      ok: true,
      verifiedThroughSeq: 6,
    });
  });

  it('names a replayed record (a seq seen before) and a seq that is not a whole number', async () => {
    expect(
      await verifyChain([records[0], records[1], records[1]], { chainId, macKeyFor }),
    ).toMatchObject({ ok: false, firstBadSeq: 2, reason: 'prev_mac_mismatch' });
    const fractional = { ...records[1], chain: { ...records[1].chain, seq: 1.5 } };
    expect(await verifyChain([records[0], fractional], { chainId, macKeyFor })).toMatchObject({
      firstBadSeq: 2,
      reason: 'malformed',
    });
  });

  it('names a prevMac that is not 32 bytes', async () => {
    const short = { ...records[1], chain: { ...records[1].chain, prevMac: 'AAAA' } };
    expect(await verifyChain([records[0], short], { chainId, macKeyFor })).toMatchObject({
      firstBadSeq: 2,
      reason: 'malformed',
    });
  });

  it('ignores prevMacBeforeFrom when verifying from seq 1', async () => {
    expect(
      await verifyChain(records, { chainId, macKeyFor, prevMacBeforeFrom: randomBytes(32) }),
    ).toMatchObject({ ok: true });
  });

  it('holds at exactly the checkpointed head, and past a checkpoint before fromSeq', async () => {
    expect(
      await verifyChain(records, {
        chainId,
        macKeyFor,
        checkpointedHead: { seq: 6, headMac: macOf(6) },
      }),
    ).toMatchObject({ ok: true, verifiedThroughSeq: 6 });
    expect(
      await verifyChain(records.slice(4), {
        chainId,
        macKeyFor,
        fromSeq: 5,
        prevMacBeforeFrom: macOf(4),
        checkpointedHead: { seq: 3, headMac: macOf(3) },
      }),
    ).toMatchObject({ ok: true, verifiedThroughSeq: 6 });
  });

  it('calls a range with no records past fromSeq truncated, not missing', async () => {
    expect(
      await verifyChain([], {
        chainId,
        macKeyFor,
        fromSeq: 3,
        prevMacBeforeFrom: macOf(2),
        checkpointedHead: { seq: 6, headMac: macOf(6) },
      }),
    ).toMatchObject({ ok: false, firstBadSeq: 3, reason: 'truncated' });
  });
});

describe('checkpoint edges', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const heads = ['b', 'a', 'c'].map((id, index) => ({
    chainId: sessionChainId('t1', id),
    seq: index + 1,
    headMac: randomBytes(32),
  }));
  const signWith = (key: KeyObject) =>
    signCheckpoint({
      tenantId: 't1',
      heads,
      fromTime: null,
      toTime: null,
      previous: null,
      signingKeyId: 'cp',
      privateKey: key,
      time: 5000,
    });
  const checkpoint = signWith(privateKey);

  it('takes the given time, and carries it in its UUIDv7 id', () => {
    expect(checkpoint.time).toBe(5000);
    expect(Number.parseInt(checkpoint.checkpointId.replaceAll('-', '').slice(0, 12), 16)).toBe(
      5000,
    );
  });

  it('encodes a head leaf as its length-prefixed domain, chain id, seq and MAC', () => {
    const mac = Buffer.alloc(32, 9);
    expect(checkpointLeaf({ chainId: 'c', seq: 2, headMac: mac }).toString('hex')).toBe(
      lengthPrefixed([
        'nes.audit.head.v1',
        'c',
        Buffer.from('0000000000000002', 'hex'),
        mac,
      ]).toString('hex'),
    );
  });

  it('sorts heads by the UTF-8 bytes of their chain id', () => {
    // U+FF61 sorts after U+1F600 by UTF-16 code units, before it by UTF-8 bytes.
    const ids = sortedHeads([
      { chainId: '\u{1F600}', seq: 1, headMac: Buffer.alloc(32) },
      { chainId: '\uFF61', seq: 1, headMac: Buffer.alloc(32) },
    ]).map((head) => head.chainId);
    expect(ids).toEqual(['\uFF61', '\u{1F600}']);
  });

  it('refuses a public key to sign with and a private key to verify with', () => {
    expect(() => signWith(publicKey)).toThrow(InvalidArgumentError);
    expect(() => checkpointSignatureHolds(checkpoint, privateKey)).toThrow(InvalidArgumentError);
  });

  it('does not match heads or a proof when the chain count disagrees', () => {
    expect(headsMatchCheckpoint(heads, { ...checkpoint, chains: 2 })).toBe(false);
    const proof = headInclusionProof(heads, heads[0].chainId);
    expect(headIsInCheckpoint(heads[0], proof, checkpoint)).toBe(true);
    expect(headIsInCheckpoint(heads[0], proof, { ...checkpoint, chains: 4 })).toBe(false);
  });
});

describe('merkle edges', () => {
  const leaves = [1, 2, 3, 4, 5].map((byte) => Uint8Array.of(byte));
  const root = merkleRoot(leaves);

  it('refuses a negative or fractional index for a proof', () => {
    expect(() => merkleInclusionProof(leaves, -1)).toThrow(RangeError);
    expect(() => merkleInclusionProof(leaves, 1.5)).toThrow(RangeError);
  });

  it('does not verify with a fractional index or size, an index past the size, or a proof of the wrong length', () => {
    const proof = merkleInclusionProof(leaves, 4);
    expect(verifyMerkleInclusion(leaves[4], 4, 5, proof, root)).toBe(true);
    expect(verifyMerkleInclusion(leaves[4], 4.5, 5, proof, root)).toBe(false);
    expect(verifyMerkleInclusion(leaves[4], 4, 5.5, proof, root)).toBe(false);
    expect(verifyMerkleInclusion(leaves[4], -1, 5, proof, root)).toBe(false);
    expect(verifyMerkleInclusion(leaves[4], 5, 5, proof, root)).toBe(false);
    expect(verifyMerkleInclusion(leaves[4], 6, 5, proof, root)).toBe(false);
    expect(verifyMerkleInclusion(leaves[4], 4, 5, [...proof, proof[0]], root)).toBe(false);
    const first = merkleInclusionProof(leaves, 0);
    expect(verifyMerkleInclusion(leaves[0], 0, 5, first.slice(0, -1), root)).toBe(false);
    expect(verifyMerkleInclusion(leaves[0], 0, 5, first, root.subarray(0, 16))).toBe(false);
  });

  it('verifies the right-most leaf of every tree size (the shift past the last full subtree)', () => {
    for (let size = 1; size <= 17; size += 1) {
      const all = Array.from({ length: size }, (_, index) => Uint8Array.of(index));
      const proof = merkleInclusionProof(all, size - 1);
      expect(verifyMerkleInclusion(all[size - 1], size - 1, size, proof, merkleRoot(all))).toBe(
        true,
      );
    }
  });
});
