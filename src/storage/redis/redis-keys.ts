import { createHash } from 'node:crypto';
import { ConfigurationError } from '../../errors/index.js';
import type { AuditChainRef, SessionRef } from '../storage.records.js';

/** Prefix of every key the Redis adapter writes, unless the options name another. */
export const DEFAULT_REDIS_KEY_PREFIX = 'nes:';

// Braces would start a hash tag of their own and split a session across cluster slots.
const KEY_PREFIX_PATTERN = /^[A-Za-z0-9_:.-]{1,40}$/;

/** The five keys holding one session; they share one hash tag, so one cluster slot. */
export interface RedisSessionKeys {
  /** HASH: the session record, the commit version and the expiry bookkeeping. */
  readonly session: string;
  /** ZSET: score = seq, member = packed item. */
  readonly items: string;
  /** HASH: dekId -> packed data-key record. */
  readonly dataKeys: string;
  /** HASH: operationId -> packed history-operation record. */
  readonly operations: string;
  /**
   * ZSET, the per-item expiry index: score 0, member = expiry index entry (expiresAt, then
   * seq, as fixed-width decimals) of every item that has an expiry, so ZRANGE BYLEX reads it
   * in (expiresAt, seq) order. Kept by the commit script with the items it indexes.
   */
  readonly expiry: string;
}

/**
 * The keys of one audit chain, in the slot of its session (or of its tenant, for the tenant's
 * control chain). They never get the session's expiry and no clear or delete path touches them:
 * an audit record outlives the items it describes.
 */
export interface RedisAuditChainKeys {
  /** ZSET: score = seq, member = packed audit record. */
  readonly records: string;
  /** STRING: the packed chain head (last seq, MAC and time). */
  readonly head: string;
  /** SET: ids of audit commits whose reply was lost and that were fenced off (expires). */
  readonly fenced: string;
  /**
   * ZSET of the access report: every record of the chain, score 0, member = packed index
   * member (time, then seq), so ZRANGE BYLEX reads it in (time, seq) order.
   */
  readonly byTime: string;
  /** ZSET as {@link byTime}, the chain's records about subject `subjectRef`. */
  bySubject(subjectRef: string): string;
  /** ZSET as {@link byTime}, the chain's records by actor `actorId`. */
  byActor(actorId: string): string;
}

/** What an access report selects by, and so which of a tenant's chain registries it reads. */
export type RedisAuditTarget =
  { readonly sessionId: string } | { readonly subjectRef: string } | { readonly actorId: string };

/** A tenant's index of its audit chains, in the tenant's own slot. */
export interface RedisAuditIndexKeys {
  /** ZSET: score 0, member = chain id, so ZRANGE BYLEX lists chain ids by their bytes. */
  readonly chains: string;
  /** HASH: chain id -> where its keys live (packed chain location). */
  readonly locations: string;
}

/** The keys of the legal holds (one hash tag, one slot). */
export interface RedisHoldKeys {
  /** HASH: holdId -> packed hold record. */
  readonly records: string;
  /** ZSET: score 0, member = every hold id, so ZRANGE BYLEX lists them by their bytes. */
  readonly all: string;
  /** ZSET as {@link all}, the active holds only. */
  readonly active: string;
  /** ZSET as {@link all}, the tenant's holds. */
  ofTenant(tenantId: string): string;
  /** ZSET as {@link all}, the tenant's active holds. */
  activeOfTenant(tenantId: string): string;
  /** SET: ids of the active holds on one session. */
  onSession(tenantId: string, sessionId: string): string;
  /** SET: ids of the active holds on one subject. */
  onSubject(tenantId: string, subjectId: string): string;
}

/** The keys of the erasure ledger (one hash tag, one slot). */
export interface RedisErasureLedgerKeys {
  /** HASH: erasureId -> packed ledger entry. */
  readonly records: string;
  /** ZSET: score 0, member = every erasure id, listed by its bytes. */
  readonly ids: string;
}

/** The subject index of one (tenant, subject): both keys in one slot. */
export interface RedisSubjectIndexKeys {
  /**
   * ZSET: score 0, member = id of each session that may name the subject (added before the
   * session's creating commit), so ZRANGE BYLEX lists them by their bytes.
   */
  readonly sessions: string;
  /**
   * HASH: session id -> the session version from which the entry may be stale: the version
   * the creating commit gives the session hash (or the version a rebuild read). An entry
   * goes only once the session hash, at that version or a later one, names no such subject.
   */
  readonly tokens: string;
}

/**
 * The hash tag of a session: base64url of the tenant id, '.', base64url of the session id.
 * base64url has neither braces nor '.', so the tag is brace-free and no two refs share one.
 */
export function redisSessionTag(ref: SessionRef): string {
  return `${base64url(ref.tenantId)}.${base64url(ref.sessionId)}`;
}

/**
 * The hash tag of a tenant's own keys (its audit index, checkpoints and control chain): 'tenant:'
 * and the base64url of the tenant id. ':' is in neither base64url nor a session tag, so it is
 * never a session's tag, and it is never empty (an empty `{}` would be no hash tag at all).
 */
export function redisTenantTag(tenantId: string): string {
  return `tenant:${base64url(tenantId)}`;
}

const base64url = (id: string): string => Buffer.from(id, 'utf8').toString('base64url');

/**
 * The session whose hash tag is `tag`, or undefined when `tag` is not one {@link redisSessionTag}
 * builds (another writer's key): the ids must encode back to exactly this tag.
 */
export function sessionRefOfTag(tag: string): SessionRef | undefined {
  const parts = tag.split('.');
  if (parts.length !== 2) return undefined;
  const ref = {
    tenantId: Buffer.from(parts[0], 'base64url').toString('utf8'),
    sessionId: Buffer.from(parts[1], 'base64url').toString('utf8'),
  };
  return redisSessionTag(ref) === tag ? ref : undefined;
}

/** Throws ConfigurationError unless `keyPrefix` is 1-40 characters of [A-Za-z0-9_:.-]. */
export function validateRedisKeyPrefix(keyPrefix: string): void {
  if (typeof keyPrefix !== 'string' || !KEY_PREFIX_PATTERN.test(keyPrefix)) {
    const shown =
      typeof keyPrefix === 'string' ? JSON.stringify(keyPrefix.slice(0, 60)) : typeof keyPrefix;
    throw new ConfigurationError(
      `Redis keyPrefix must be 1-40 characters from A-Z a-z 0-9 _ : . - (no braces); got ${shown}. Use e.g. 'nes:'`,
    );
  }
}

/** Builds the adapter's key names under one prefix. */
export class RedisKeyLayout {
  constructor(readonly prefix: string = DEFAULT_REDIS_KEY_PREFIX) {
    validateRedisKeyPrefix(prefix);
  }

  /** The keys of the session with hash tag `tag` (see {@link redisSessionTag}). */
  forTag(tag: string): RedisSessionKeys {
    const base = `${this.prefix}{${tag}}:`;
    return {
      session: `${base}session`,
      items: `${base}items`,
      dataKeys: `${base}keys`,
      operations: `${base}ops`,
      expiry: `${base}expiry`,
    };
  }

  /** SCAN pattern of every session's items zset under this prefix (the prefix has no glob). */
  get itemsPattern(): string {
    return `${this.prefix}{*}:items`;
  }

  /** The session tag of an items key that {@link itemsPattern} matched; undefined for another key. */
  tagOfItemsKey(key: string): string | undefined {
    const head = `${this.prefix}{`;
    const tail = '}:items';
    if (!key.startsWith(head) || !key.endsWith(tail)) return undefined;
    return key.slice(head.length, key.length - tail.length);
  }

  /** The keys of the session `ref`. */
  forSession(ref: SessionRef): RedisSessionKeys {
    return this.forTag(redisSessionTag(ref));
  }

  /**
   * The keys of an audit chain: under its session's tag, or under the tenant's tag for the
   * control chain (`sessionId` null). The chain id is in the name as base64url.
   */
  forAuditChain(chain: AuditChainRef): RedisAuditChainKeys {
    const tag =
      chain.sessionId === null
        ? redisTenantTag(chain.tenantId)
        : redisSessionTag({ tenantId: chain.tenantId, sessionId: chain.sessionId });
    const base = `${this.prefix}{${tag}}:audit:${base64url(chain.chainId)}:`;
    return {
      records: `${base}records`,
      head: `${base}head`,
      fenced: `${base}fenced`,
      byTime: `${base}by-time`,
      bySubject: (subjectRef) => `${base}by-subject:${base64url(subjectRef)}`,
      byActor: (actorId) => `${base}by-actor:${base64url(actorId)}`,
    };
  }

  /**
   * ZSET in the tenant's slot: score 0, member = id of each chain that may hold records about
   * `target` (written before the records' commit, so it never misses a committed record). Ids
   * are base64url in the name, so ids differing in any byte get keys of their own.
   */
  auditRegistry(tenantId: string, target: RedisAuditTarget): string {
    const base = `${this.prefix}{${redisTenantTag(tenantId)}}:audit-by-`;
    if ('sessionId' in target) return `${base}session:${base64url(target.sessionId)}`;
    if ('subjectRef' in target) return `${base}subject:${base64url(target.subjectRef)}`;
    return `${base}actor:${base64url(target.actorId)}`;
  }

  /**
   * ZSET in the tenant's slot: the tenant's signed checkpoints, score = seq, member = packed
   * checkpoint. Appended by a script that refuses a seq already taken; never trimmed.
   */
  auditCheckpoints(tenantId: string): string {
    return `${this.prefix}{${redisTenantTag(tenantId)}}:audit-checkpoints`;
  }

  /** The audit chain index of a tenant. */
  auditIndex(tenantId: string): RedisAuditIndexKeys {
    const base = `${this.prefix}{${redisTenantTag(tenantId)}}:`;
    return { chains: `${base}audit-chains`, locations: `${base}audit-chain-sessions` };
  }

  /**
   * HASH of job `job`'s lease (owner, token, expiresAt), alone under its own hash tag: 'job:'
   * and the base64url of the job name, which no session or tenant tag can be. It never expires
   * and release keeps it, so the token never goes back.
   */
  jobLease(job: string): string {
    return `${this.prefix}{job:${base64url(job)}}:lease`;
  }

  /**
   * The keys of the legal holds, all under the hash tag 'holds' (one slot, which no session,
   * tenant or job tag can be), so every hold call is one script on a Cluster too. Ids are
   * members and fields as their UTF-8 bytes and base64url in key names.
   */
  holds(): RedisHoldKeys {
    const base = `${this.prefix}{holds}:`;
    return {
      records: `${base}records`,
      all: `${base}ids`,
      active: `${base}active`,
      ofTenant: (tenantId) => `${base}tenant:${base64url(tenantId)}:ids`,
      activeOfTenant: (tenantId) => `${base}tenant:${base64url(tenantId)}:active`,
      onSession: (tenantId, sessionId) =>
        `${base}on-session:${base64url(tenantId)}.${base64url(sessionId)}`,
      onSubject: (tenantId, subjectId) =>
        `${base}on-subject:${base64url(tenantId)}.${base64url(subjectId)}`,
    };
  }

  /** The keys of the erasure ledger, under the hash tag 'erasures' (one slot). */
  erasureLedger(): RedisErasureLedgerKeys {
    const base = `${this.prefix}{erasures}:`;
    return { records: `${base}records`, ids: `${base}ids` };
  }

  /**
   * The subject index of one subject of a tenant, in a slot of its own: the hash tag 'subject:'
   * and SHA-256 of tenant and subject (length-prefixed), so a lookup reads one slot and needs
   * no scan, and no key name spells a subject's id (an index entry that outlives an erasure
   * names the subject by nothing readable).
   */
  subjectIndex(tenantId: string, subjectId: string): RedisSubjectIndexKeys {
    const digest = createHash('sha256');
    for (const part of [tenantId, subjectId]) {
      const bytes = Buffer.from(part, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      digest.update(length).update(bytes);
    }
    const base = `${this.prefix}{subject:${digest.digest('base64url')}}:`;
    return { sessions: `${base}sessions`, tokens: `${base}tokens` };
  }

  /**
   * STRING, set once every session of the store is in the subject index (sessions written
   * before the index existed are added by a rebuild first). Alone under its own hash tag.
   */
  get subjectIndexComplete(): string {
    return `${this.prefix}{subject-index}:complete`;
  }

  /** SCAN pattern of every session hash under this prefix. */
  get sessionPattern(): string {
    return `${this.prefix}{*}:session`;
  }

  /** The session tag of a session hash key {@link sessionPattern} matched; undefined otherwise. */
  tagOfSessionKey(key: string): string | undefined {
    const head = `${this.prefix}{`;
    const tail = '}:session';
    if (!key.startsWith(head) || !key.endsWith(tail)) return undefined;
    return key.slice(head.length, key.length - tail.length);
  }

  /**
   * STRING holding the tag of the session that owns data key `dekId`, so a key can be found by
   * id alone. It lives in another slot than the session, so it is written outside the commit.
   */
  dataKeyPointer(dekId: string): string {
    return `${this.prefix}dek:${dekId}`;
  }
}
