import { createHash, type KeyObject } from 'node:crypto';
import { ConfigurationError, StorageUnavailableError } from '../errors/index.js';
import type {
  AuditChainHeadRecord,
  AuditChainRef,
  AuditStorage,
  StoredCheckpoint,
} from '../storage/index.js';
import { canonicalJson, parseChainId } from './audit-chain.js';
import {
  checkpointSignatureHolds,
  headsMatchCheckpoint,
  signCheckpoint,
  sortedHeads,
  type AuditCheckpoint,
  type ChainHead,
} from './checkpoint.js';

/**
 * The key checkpoints are signed with, and the id auditors know its public key by.
 *
 * @publicApi
 */
export interface CheckpointSigner {
  readonly keyId: string;
  /** Absent when checkpoints are only verified here (a command line, an auditor's host). */
  readonly privateKey?: KeyObject;
  readonly publicKey: KeyObject;
}

/** The default id of a signing key: `ed25519:` and the first 16 hex digits of SHA-256(SPKI). */
export function signingKeyIdOf(publicKey: KeyObject): string {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return `ed25519:${createHash('sha256').update(spki).digest('hex').slice(0, 16)}`;
}

/** Heads per page when a checkpoint lists every chain of a tenant. */
const HEADS_PAGE = 500;

/** Where a chain's keys are, from its id (a session's chain, or the tenant's). */
export function chainRefOfId(tenantId: string, chainId: string): AuditChainRef {
  return { chainId, tenantId, sessionId: parseChainId(chainId)?.sessionId ?? null };
}

/** Every head of the tenant's chains, read page by page, in chain id order. */
export async function* tenantHeads(
  storage: AuditStorage,
  tenantId: string,
): AsyncGenerator<AuditChainHeadRecord> {
  for (let after = ''; ;) {
    const page = await storage.listHeads(tenantId, after, HEADS_PAGE);
    yield* page;
    if (page.length < HEADS_PAGE) return;
    after = page.at(-1)!.chainId;
  }
}

/** Every head of the tenant's chains, as a checkpoint covers them, with its last record's time. */
async function allHeads(storage: AuditStorage, tenantId: string) {
  const heads: Array<{ head: ChainHead; time: number }> = [];
  for await (const head of tenantHeads(storage, tenantId)) {
    heads.push({
      head: { chainId: head.chainId, seq: head.seq, headMac: head.mac },
      time: head.time,
    });
  }
  return heads;
}

/** The stored heads of a checkpoint, as chain heads. */
export function headsOf(stored: StoredCheckpoint): ChainHead[] {
  const parsed = JSON.parse(stored.heads) as Array<[string, number, string]>;
  return parsed.map(([chainId, seq, mac]) => ({
    chainId,
    seq,
    headMac: Buffer.from(mac, 'base64url'),
  }));
}

/** The storage's checkpoint methods, or a ConfigurationError naming what is missing. */
export function checkpointStore(storage: AuditStorage) {
  if (!storage.appendCheckpoint || !storage.latestCheckpoint) {
    throw new ConfigurationError(
      "This storage keeps no audit checkpoints (it has no appendCheckpoint or latestCheckpoint); verify without them, or use one of the module's stores (SQL, Redis, memory), which all keep them",
    );
  }
  return {
    append: (checkpoint: StoredCheckpoint) => storage.appendCheckpoint!(checkpoint),
    latest: (tenantId: string) => storage.latestCheckpoint!(tenantId),
  };
}

/**
 * Takes, signs and stores the tenant's next checkpoint: the Merkle root over every chain head
 * now, linked to the previous checkpoint by its signature. Two replicas taking one at once:
 * the second finds its seq taken and takes the next one over.
 */
export async function takeCheckpoint(
  storage: AuditStorage,
  signer: CheckpointSigner & { readonly privateKey: KeyObject },
  tenantId: string,
): Promise<AuditCheckpoint> {
  const store = checkpointStore(storage);
  for (let attempt = 0; attempt < 5; attempt++) {
    const previousStored = await store.latest(tenantId);
    const previous = previousStored
      ? (JSON.parse(previousStored.checkpoint) as AuditCheckpoint)
      : null;
    const heads = await allHeads(storage, tenantId);
    const times = heads.map((entry) => entry.time);
    const firstTimes = previous
      ? [previous.fromTime ?? Number.POSITIVE_INFINITY]
      : await Promise.all(
          heads.map(async ({ head }) => {
            const [first] = await storage.readChain(chainRefOfId(tenantId, head.chainId), 0, 1);
            return first?.time ?? Number.POSITIVE_INFINITY;
          }),
        );
    const fromTime = Math.min(...firstTimes);
    const checkpoint = signCheckpoint({
      tenantId,
      heads: heads.map((entry) => entry.head),
      fromTime: Number.isFinite(fromTime) ? fromTime : null,
      toTime: times.length > 0 ? Math.max(...times) : null,
      previous,
      signingKeyId: signer.keyId,
      privateKey: signer.privateKey,
      // Later than the previous one even within its millisecond, so a verifier can tell which
      // of two copies is the newer by time alone.
      time: Math.max(Date.now(), (previous?.time ?? 0) + 1),
    });
    const stored = await store.append({
      tenantId,
      seq: (previousStored?.seq ?? 0) + 1,
      checkpointId: checkpoint.checkpointId,
      time: checkpoint.time,
      checkpoint: canonicalJson(checkpoint),
      heads: JSON.stringify(
        sortedHeads(heads.map((entry) => entry.head)).map((head) => [
          head.chainId,
          head.seq,
          Buffer.from(head.headMac).toString('base64url'),
        ]),
      ),
    });
    if (stored) return checkpoint;
  }
  throw new StorageUnavailableError(
    `Checkpoints of tenant '${tenantId}' kept being taken by other replicas at once; retry`,
  );
}

/** Why a tenant's checkpoint does not vouch for its trail. */
export type CheckpointBreak =
  /** The signature does not hold under the configured public key: forged or edited. */
  | 'checkpoint_signature'
  /** The heads stored with it are not the ones its signed root covers: edited. */
  | 'checkpoint_heads'
  /** The database holds no checkpoint as recent as the copy given from outside: deleted. */
  | 'checkpoint_missing';

/**
 * The outcome of checking a tenant's checkpoint.
 *
 * @publicApi
 */
export interface CheckpointCheck {
  readonly ok: boolean;
  readonly checkpointId?: string;
  readonly reason?: CheckpointBreak;
}

/**
 * The checkpoint a verification measures the chains against, checked: the database's latest,
 * or `external` (a copy from a sink outside the database) when it is newer. The database must
 * hold the checkpoint it measures against, with the heads its signed root covers. Returns the
 * heads by chain id when it holds.
 */
export async function checkedCheckpoint(
  storage: AuditStorage,
  publicKey: KeyObject,
  tenantId: string,
  external: AuditCheckpoint | undefined,
): Promise<{ check: CheckpointCheck; heads?: Map<string, ChainHead> } | undefined> {
  const latest = await checkpointStore(storage).latest(tenantId);
  const stored = latest && (JSON.parse(latest.checkpoint) as AuditCheckpoint);
  // An older outside copy adds nothing: the newer stored one is signed too. (A copy as old as
  // the stored one but another checkpoint is not older: it was taken from a stored one since
  // deleted, or forged; checkpoint times rise strictly.)
  const reference =
    external &&
    (!stored ||
      external.tenantId !== tenantId ||
      external.time > stored.time ||
      (external.time === stored.time && external.checkpointId !== stored.checkpointId))
      ? external
      : stored;
  if (!reference) return undefined;
  const checkpointId = reference.checkpointId;
  if (reference.tenantId !== tenantId || !checkpointSignatureHolds(reference, publicKey)) {
    return { check: { ok: false, checkpointId, reason: 'checkpoint_signature' } };
  }
  if (
    !latest ||
    stored!.checkpointId !== checkpointId ||
    stored!.signature !== reference.signature
  ) {
    // The database no longer holds the newest checkpoint a sink saw: deleted or replaced.
    return { check: { ok: false, checkpointId, reason: 'checkpoint_missing' } };
  }
  const heads = headsOf(latest);
  if (!headsMatchCheckpoint(heads, reference)) {
    return { check: { ok: false, checkpointId, reason: 'checkpoint_heads' } };
  }
  return {
    check: { ok: true, checkpointId },
    heads: new Map(heads.map((head) => [head.chainId, head])),
  };
}
