import type { AuditChainHeadRecord, AuditChainRef, StoredAuditRecord } from '../storage.records.js';
import type { RedisAuditChainKeys } from './redis-keys.js';
import { packAuditHead, packAuditRecord, unpackAuditHead } from './redis-record-codec.js';

/** One chain a unit of work locked, with the records it appends, packed for the commit. */
export interface LockedAuditChain {
  readonly chain: AuditChainRef;
  readonly keys: RedisAuditChainKeys;
  /**
   * The stored head exactly as the unit read it, empty for none: the commit compares the
   * stored head with these bytes, so any move (or edit) since is a conflict.
   */
  readonly headBytes: Buffer;
  /** seq and packed record of each appended record, in seq order. */
  readonly members: Array<[seq: string, member: Buffer]>;
  /** The head after the last appended record, packed; undefined while nothing is appended. */
  newHead: Buffer | undefined;
}

/**
 * The audit chains of one attempt of a unit of work: heads read and records appended, kept
 * until the commit. A new buffer per attempt, so a unit run again after a conflict writes only
 * its last run's records.
 */
export class AuditChainBuffer {
  private readonly chains = new Map<string, LockedAuditChain>();

  /** Records the head the unit read (`stored` null for none) and returns it unpacked. */
  lock(
    chain: AuditChainRef,
    keys: RedisAuditChainKeys,
    stored: Buffer | null,
  ): AuditChainHeadRecord | undefined {
    const head = stored ? unpackAuditHead(stored, chain) : undefined;
    this.chains.set(chain.chainId, {
      chain,
      keys,
      headBytes: stored ?? Buffer.alloc(0),
      members: [],
      newHead: undefined,
    });
    return head;
  }

  /**
   * Buffers records the binding checked to continue the locked head. Packs them now, so a
   * record that cannot be stored fails the unit's work, not its commit.
   */
  append(chain: AuditChainRef, records: readonly StoredAuditRecord[]): void {
    const locked = this.chains.get(chain.chainId);
    if (!locked) throw new Error('Audit records appended to a chain the unit did not lock');
    const members = records.map((record): [string, Buffer] => [
      String(record.seq),
      packAuditRecord(record),
    ]);
    const newHead = packAuditHead(chain, records.at(-1)!);
    locked.members.push(...members);
    locked.newHead = newHead;
  }

  /** The chains with records to write. */
  get appended(): LockedAuditChain[] {
    return [...this.chains.values()].filter((locked) => locked.members.length > 0);
  }
}

/** Chains getting their first record: they join their tenant's index before the commit. */
export const newChains = (appended: readonly LockedAuditChain[]): AuditChainRef[] =>
  appended.filter((locked) => locked.headBytes.length === 0).map((locked) => locked.chain);
