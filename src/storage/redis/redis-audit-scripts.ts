/**
 * Lua scripts of the audit chains on Redis, besides the session commit (which appends a session
 * unit's records itself, see redis-commit-script.ts).
 */

/** Replies of {@link AUDIT_COMMIT_SCRIPT}. */
export const AUDIT_COMMIT_REPLY = { conflict: 0, applied: 1, ahead: 4 } as const;

/**
 * Commits an audit unit of its own (a read's event, a refused attempt, the control chain): a
 * compare-and-set on the chain head alone. No session hash is read, created or bumped, so a
 * read's event never makes a session writer conflict, and it works on a chain whose session has
 * no session hash at all.
 *
 * KEYS: records zset, head, fenced set (one chain, one slot).
 * ARGV: commit id, the packed head the unit read ('' for none), the new packed head, then seq
 * and packed record of each appended record, in seq order.
 *
 * Replies: 1 applied (or applied before: the same commit sent again after its reply was lost;
 * its first record is stored), 0 conflict (the head moved since the unit read it, or the commit
 * was fenced off after a lost reply; nothing written), 4 records sit at or above the first seq
 * although the head is the one read: the head was rolled back or deleted (nothing written).
 */
export const AUDIT_COMMIT_SCRIPT = `
local recordsKey, headKey, fencedKey = KEYS[1], KEYS[2], KEYS[3]
if (redis.call('GET', headKey) or '') ~= ARGV[2] then
  if redis.call('ZSCORE', recordsKey, ARGV[5]) then return 1 end
  return 0
end
if redis.call('SISMEMBER', fencedKey, ARGV[1]) == 1 then return 0 end
if redis.call('ZCOUNT', recordsKey, ARGV[4], '+inf') ~= 0 then return 4 end
for i = 4, #ARGV, 2 do
  redis.call('ZADD', recordsKey, ARGV[i], ARGV[i + 1])
end
redis.call('SET', headKey, ARGV[3])
return 1
`;

/** Replies of {@link AUDIT_FENCE_SCRIPT}. */
export const AUDIT_FENCE_REPLY = { notApplied: 0, applied: 1 } as const;

/**
 * Settles an audit commit whose reply was lost. KEYS: records zset, fenced set. ARGV: commit id,
 * the commit's first packed record.
 *
 * 1: applied (its first record is stored; records carry their MAC, so no other commit wrote
 * those bytes). 0: not applied, and now never will be: the id joins the fenced set (kept a day),
 * which the commit script checks before it writes.
 */
export const AUDIT_FENCE_SCRIPT = `
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], 86400000)
return 0
`;

/**
 * Adds a chain to its tenant's index: where its keys live, then its id in the ordered set.
 * Idempotent. KEYS: the index zset, the locations hash (the tenant's slot). ARGV: chain id,
 * packed location. Replies 1, or 0 when the chain id is already indexed for another session
 * (nothing changed): chain ids are unique within a tenant.
 */
export const REGISTER_AUDIT_CHAIN_SCRIPT = `
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored and stored ~= ARGV[2] then return 0 end
if not stored then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
`;
