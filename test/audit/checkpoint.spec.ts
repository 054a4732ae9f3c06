import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sessionChainId, tenantChainId } from '../../src/audit/audit-chain.js';
import {
  checkpointSignatureHolds,
  headInclusionProof,
  headIsInCheckpoint,
  headsMatchCheckpoint,
  signCheckpoint,
  type AuditCheckpoint,
  type ChainHead,
} from '../../src/audit/checkpoint.js';
import { InvalidArgumentError } from '../../src/errors/index.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const heads: ChainHead[] = [
  { chainId: sessionChainId('t1', 's2'), seq: 4, headMac: randomBytes(32) },
  { chainId: tenantChainId('t1'), seq: 2, headMac: randomBytes(32) },
  { chainId: sessionChainId('t1', 's1'), seq: 7, headMac: randomBytes(32) },
];
const take = (previous: AuditCheckpoint | null = null, given = heads) =>
  signCheckpoint({
    tenantId: 't1',
    heads: given,
    fromTime: 1000,
    toTime: 2000,
    previous,
    signingKeyId: 'cp-1',
    privateKey,
    time: 3000,
  });

describe('audit checkpoints', () => {
  it('count the chains and records and hold under the public key', () => {
    const checkpoint = take();
    expect(checkpoint).toMatchObject({
      schema: 'nes.audit.checkpoint/1',
      tenantId: 't1',
      chains: 3,
      records: 13,
      previousSignature: null,
    });
    expect(checkpointSignatureHolds(checkpoint, publicKey)).toBe(true);
  });

  it.each<[string, Partial<AuditCheckpoint>]>([
    ['a count', { records: 12 }],
    ['the root', { merkleRoot: Buffer.alloc(32).toString('base64url') }],
    ['the time range', { toTime: 1999 }],
    ['the previous signature', { previousSignature: 'AA' }],
    ['the tenant', { tenantId: 't2' }],
  ])('no longer holds when %s is changed', (_name, change) => {
    expect(checkpointSignatureHolds({ ...take(), ...change }, publicKey)).toBe(false);
  });

  it('does not hold under another key, and refuses a key that is not Ed25519', () => {
    const other = generateKeyPairSync('ed25519').publicKey;
    expect(checkpointSignatureHolds(take(), other)).toBe(false);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(() => checkpointSignatureHolds(take(), rsa.publicKey)).toThrow(InvalidArgumentError);
    expect(() =>
      signCheckpoint({
        tenantId: 't1',
        heads,
        fromTime: null,
        toTime: null,
        previous: null,
        signingKeyId: 'x',
        privateKey: rsa.privateKey,
      }),
    ).toThrow(InvalidArgumentError);
  });

  it("links to the previous checkpoint's signature", () => {
    const first = take();
    const second = take(first);
    expect(second.previousSignature).toBe(first.signature);
    expect(checkpointSignatureHolds(second, publicKey)).toBe(true);
  });

  it('covers the heads whatever order they come in, and notices one moved, cut or removed', () => {
    const checkpoint = take();
    expect(headsMatchCheckpoint(heads.toReversed(), checkpoint)).toBe(true);
    expect(headsMatchCheckpoint(heads.slice(1), checkpoint)).toBe(false);
    const cut = heads.map((head, index) => (index === 0 ? { ...head, seq: head.seq - 1 } : head));
    expect(headsMatchCheckpoint(cut, checkpoint)).toBe(false);
    const rewritten = heads.map((head, index) =>
      index === 2 ? { ...head, headMac: randomBytes(32) } : head,
    );
    expect(headsMatchCheckpoint(rewritten, checkpoint)).toBe(false);
  });

  it('proves one chain head is in a checkpoint without the others', () => {
    const checkpoint = take();
    for (const head of heads) {
      const proof = headInclusionProof(heads, head.chainId);
      expect(headIsInCheckpoint(head, proof, checkpoint)).toBe(true);
      expect(headIsInCheckpoint({ ...head, seq: head.seq + 1 }, proof, checkpoint)).toBe(false);
    }
    expect(() => headInclusionProof(heads, sessionChainId('t1', 'nope'))).toThrow(
      InvalidArgumentError,
    );
  });

  it('refuses a chain listed twice and a head MAC that is not 32 bytes', () => {
    expect(() => take(null, [...heads, heads[0]])).toThrow(InvalidArgumentError);
    expect(() => take(null, [{ ...heads[0], headMac: randomBytes(31) }])).toThrow(
      InvalidArgumentError,
    );
  });
});
