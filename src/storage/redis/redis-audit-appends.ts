import type { AuditChainHeadRecord, AuditChainRef, StoredAuditRecord } from '../storage.records.js';
import type { RedisAuditChainKeys } from './redis-keys.js';
import {
  packAuditHead,
  packAuditIndexMember,
  packAuditRecord,
  unpackAuditHead,
} from './redis-record-codec.js';

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
  /** Index key and member of each access-report index entry of the appended records. */
  readonly indexEntries: Array<[key: string, member: string]>;
  /** Subjects and actors of the appended records: the chain joins their registries. */
  readonly subjectRefs: Set<string>;
  readonly actorIds: Set<string>;
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
      indexEntries: [],
      subjectRefs: new Set(),
      actorIds: new Set(),
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
    const { keys } = locked;
    for (const record of records) {
      const member = packAuditIndexMember(record.time, record.seq);
      locked.indexEntries.push([keys.byTime, member], [keys.byActor(record.actorId), member]);
      locked.actorIds.add(record.actorId);
      if (record.subjectRef !== null) {
        locked.indexEntries.push([keys.bySubject(record.subjectRef), member]);
        locked.subjectRefs.add(record.subjectRef);
      }
    }
  }

  /** The chains with records to write. */
  get appended(): LockedAuditChain[] {
    return [...this.chains.values()].filter((locked) => locked.members.length > 0);
  }
}

/**
 * A chain about to get records, with the subjects and actors they name: it joins its tenant's
 * index and registries before the commit.
 */
export interface AuditChainRegistration {
  readonly chain: AuditChainRef;
  readonly subjectRefs: readonly string[];
  readonly actorIds: readonly string[];
}

/**
 * The registrations of the chains a unit appends to (`onlyNew`: of the chains getting their
 * first record, which register before their first commit, unasked).
 */
export const chainRegistrations = (
  appended: readonly LockedAuditChain[],
  onlyNew = false,
): AuditChainRegistration[] =>
  appended
    .filter((locked) => !onlyNew || locked.headBytes.length === 0)
    .map((locked) => ({
      chain: locked.chain,
      subjectRefs: [...locked.subjectRefs],
      actorIds: [...locked.actorIds],
    }));

/**
 * The KEYS of a chain's index entries (distinct, in first-use order), each entry as the 1-based
 * position of its key in them and its member, and the positions of the subject and actor
 * indexes the commit checks to exist: a chain with records registered before its first commit,
 * so a later commit registers again only when it starts a subject or actor index (reply 5).
 */
export function indexEntryKeys(locked: LockedAuditChain): {
  readonly keys: string[];
  readonly entries: Array<[position: number, member: string]>;
  readonly mustExist: number[];
} {
  const positions = new Map<string, number>();
  const entries = locked.indexEntries.map(([key, member]): [number, string] => {
    let position = positions.get(key);
    if (position === undefined) {
      position = positions.size + 1;
      positions.set(key, position);
    }
    return [position, member];
  });
  const mustExist =
    locked.headBytes.length === 0
      ? []
      : [...positions].filter(([key]) => key !== locked.keys.byTime).map(([, at]) => at);
  return { keys: [...positions.keys()], entries, mustExist };
}
