import { sign, verify, type KeyObject } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { InvalidArgumentError } from '../errors/index.js';
import { AUDIT_MAC_LENGTH, canonicalJson } from './audit-chain.js';
import { lengthPrefixed, uint64 } from './length-prefixed.js';
import { merkleInclusionProof, merkleRoot, verifyMerkleInclusion } from './merkle.js';

/** Schema id of every checkpoint. */
export const CHECKPOINT_SCHEMA = 'nes.audit.checkpoint/1';

const HEAD_LEAF_DOMAIN = 'nes.audit.head.v1';

/** The head of one chain: its last record's seq and MAC. */
export interface ChainHead {
  readonly chainId: string;
  readonly seq: number;
  readonly headMac: Uint8Array;
}

/** What a checkpoint states about a tenant's trail, before it is signed. */
export interface AuditCheckpointBody {
  readonly schema: typeof CHECKPOINT_SCHEMA;
  /** UUIDv7. */
  readonly checkpointId: string;
  readonly tenantId: string;
  /** When it was taken, ms since the epoch. */
  readonly time: number;
  /** Chains of the tenant, and records in them (the sum of their heads' seq). */
  readonly chains: number;
  readonly records: number;
  /** Time of the oldest and newest record covered, ms since the epoch; null for none. */
  readonly fromTime: number | null;
  readonly toTime: number | null;
  /** base64url of the RFC 6962 Merkle root over the chain heads, sorted by chain id. */
  readonly merkleRoot: string;
  /** base64url of the previous checkpoint's signature; null for the tenant's first. */
  readonly previousSignature: string | null;
  /** Which signing key signed it, so an auditor picks the right public key. */
  readonly signingKeyId: string;
}

/**
 * A signed checkpoint of one tenant's trail: Ed25519 over the canonical JSON of the body.
 *
 * @publicApi
 */
export interface AuditCheckpoint extends AuditCheckpointBody {
  /** base64url of the Ed25519 signature. */
  readonly signature: string;
}

/** The leaf of one chain head in a checkpoint's tree: length-prefixed domain, id, seq, MAC. */
export function checkpointLeaf(head: ChainHead): Buffer {
  if (head.headMac.length !== AUDIT_MAC_LENGTH) {
    throw new InvalidArgumentError('audit checkpoint: a chain head MAC must be 32 bytes');
  }
  return lengthPrefixed([HEAD_LEAF_DOMAIN, head.chainId, uint64(head.seq), head.headMac]);
}

/** Heads in the order a checkpoint covers them: by the UTF-8 bytes of the chain id. */
export function sortedHeads(heads: readonly ChainHead[]): ChainHead[] {
  const sorted = heads.toSorted((a, b) =>
    Buffer.compare(Buffer.from(a.chainId, 'utf8'), Buffer.from(b.chainId, 'utf8')),
  );
  for (let index = 1; index < sorted.length; index += 1) {
    if (sorted[index].chainId === sorted[index - 1].chainId) {
      throw new InvalidArgumentError('audit checkpoint: a chain appears twice among the heads');
    }
  }
  return sorted;
}

function requireEd25519(key: KeyObject, type: 'private' | 'public'): void {
  if (key.type !== type || key.asymmetricKeyType !== 'ed25519') {
    throw new InvalidArgumentError(
      `audit checkpoint: the signing key must be an Ed25519 ${type} key`,
    );
  }
}

/**
 * Takes a checkpoint of one tenant's trail: the Merkle root over every chain head, the counts,
 * the time range and the previous checkpoint's signature, signed with Ed25519.
 */
export function signCheckpoint(input: {
  readonly tenantId: string;
  readonly heads: readonly ChainHead[];
  readonly fromTime: number | null;
  readonly toTime: number | null;
  readonly previous: AuditCheckpoint | null;
  readonly signingKeyId: string;
  readonly privateKey: KeyObject;
  /** @default Date.now() */
  readonly time?: number;
}): AuditCheckpoint {
  requireEd25519(input.privateKey, 'private');
  const heads = sortedHeads(input.heads);
  const time = input.time ?? Date.now();
  const body: AuditCheckpointBody = {
    schema: CHECKPOINT_SCHEMA,
    checkpointId: uuidv7({ msecs: time }),
    tenantId: input.tenantId,
    time,
    chains: heads.length,
    records: heads.reduce((total, head) => total + head.seq, 0),
    fromTime: input.fromTime,
    toTime: input.toTime,
    merkleRoot: merkleRoot(heads.map(checkpointLeaf)).toString('base64url'),
    previousSignature: input.previous?.signature ?? null,
    signingKeyId: input.signingKeyId,
  };
  const signature = sign(null, Buffer.from(canonicalJson(body), 'utf8'), input.privateKey);
  return { ...body, signature: signature.toString('base64url') };
}

/** Whether the checkpoint's signature holds under `publicKey` (an auditor's offline check). */
export function checkpointSignatureHolds(
  checkpoint: AuditCheckpoint,
  publicKey: KeyObject,
): boolean {
  requireEd25519(publicKey, 'public');
  const { signature, ...body } = checkpoint;
  return verify(
    null,
    Buffer.from(canonicalJson(body), 'utf8'),
    publicKey,
    Buffer.from(signature, 'base64url'),
  );
}

/** Whether `heads` are exactly the heads `checkpoint` covers (same root and count). */
export function headsMatchCheckpoint(
  heads: readonly ChainHead[],
  checkpoint: AuditCheckpointBody,
): boolean {
  const sorted = sortedHeads(heads);
  return (
    sorted.length === checkpoint.chains &&
    merkleRoot(sorted.map(checkpointLeaf)).toString('base64url') === checkpoint.merkleRoot
  );
}

/** A proof that one chain's head is in a checkpoint, without the other heads. */
export interface HeadInclusionProof {
  readonly index: number;
  readonly treeSize: number;
  /** base64url of each sibling hash, leaf to root. */
  readonly path: readonly string[];
}

/** The inclusion proof of the head of `chainId` among `heads` (all heads of the checkpoint). */
export function headInclusionProof(
  heads: readonly ChainHead[],
  chainId: string,
): HeadInclusionProof {
  const sorted = sortedHeads(heads);
  const index = sorted.findIndex((head) => head.chainId === chainId);
  if (index === -1) throw new InvalidArgumentError('audit checkpoint: no head of that chain');
  return {
    index,
    treeSize: sorted.length,
    path: merkleInclusionProof(sorted.map(checkpointLeaf), index).map((hash) =>
      hash.toString('base64url'),
    ),
  };
}

/** Whether `proof` shows `head` is in `checkpoint` (check the signature separately). */
export function headIsInCheckpoint(
  head: ChainHead,
  proof: HeadInclusionProof,
  checkpoint: AuditCheckpointBody,
): boolean {
  return (
    proof.treeSize === checkpoint.chains &&
    verifyMerkleInclusion(
      checkpointLeaf(head),
      proof.index,
      proof.treeSize,
      proof.path.map((hash) => Buffer.from(hash, 'base64url')),
      Buffer.from(checkpoint.merkleRoot, 'base64url'),
    )
  );
}
