/**
 * Lua scripts of the audit chains on Redis, besides the session commit (which appends a session
 * unit's records itself, see redis-commit-script.ts).
 */

/** Replies of {@link AUDIT_COMMIT_SCRIPT}. */
export const AUDIT_COMMIT_REPLY = {
  conflict: 0,
  applied: 1,
  ahead: 4,
  unregistered: 5,
  wrongType: 6,
} as const;

/**
 * Lua that returns 6 unless every audit key the commit writes holds its own type or nothing:
 * the records and index zsets a zset, the head a string. Checked before anything is written (a
 * script that fails half-way keeps what it already wrote; SET would even overwrite a zset head).
 * `keys` is a Lua expression of a table of {key, type} pairs.
 */
export function auditKeyTypeCheck(keys: string): string {
  return `for _, expected in ipairs(${keys}) do
  local stored = redis.call('TYPE', expected[1]).ok
  if stored ~= 'none' and stored ~= expected[2] then return 6 end
end`;
}

/**
 * Commits an audit unit of its own (a read's event, a refused attempt, the control chain): a
 * compare-and-set on the chain head alone. No session hash is read, created or bumped, so a
 * read's event never makes a session writer conflict, and it works on a chain whose session has
 * no session hash at all.
 *
 * KEYS: records zset, head, fenced set, then the chain's access-report index zsets (one chain,
 * one slot).
 * ARGV: commit id, the packed head the unit read ('' for none), the new packed head, the number
 * of records n, the positions in KEYS of index zsets that must exist already (space-separated,
 * '' for none), then seq and packed record of each appended record in seq order, then the
 * position in KEYS and member of each index entry (written at score 0).
 *
 * Replies: 1 applied (or applied before: the same commit sent again after its reply was lost;
 * its first record is stored), 0 conflict (the head moved since the unit read it, or the commit
 * was fenced off after a lost reply; nothing written), 4 records sit at or above the first seq
 * although the head is the one read: the head was rolled back or deleted (nothing written),
 * 5 an index zset that must exist does not: the chain is not yet in that subject's or actor's
 * registry (nothing written; register it, then commit without the check), 6 an audit key holds
 * another type of value than this module writes there (nothing written).
 */
export const AUDIT_COMMIT_SCRIPT = `
local recordsKey, headKey, fencedKey = KEYS[1], KEYS[2], KEYS[3]
local indexFrom = 6 + 2 * tonumber(ARGV[4])
local typed = { { recordsKey, 'zset' }, { headKey, 'string' }, { fencedKey, 'set' } }
for k = 4, #KEYS do typed[#typed + 1] = { KEYS[k], 'zset' } end
${auditKeyTypeCheck('typed')}
if (redis.call('GET', headKey) or '') ~= ARGV[2] then
  if redis.call('ZSCORE', recordsKey, ARGV[7]) then return 1 end
  return 0
end
if redis.call('SISMEMBER', fencedKey, ARGV[1]) == 1 then return 0 end
if redis.call('ZCOUNT', recordsKey, ARGV[6], '+inf') ~= 0 then return 4 end
for i = indexFrom, #ARGV, 2 do
  local n = tonumber(ARGV[i])
  if n == nil or n <= 3 or KEYS[n] == nil then return redis.error_reply('ERR bad audit key index') end
end
for position in string.gmatch(ARGV[5], '%d+') do
  local n = tonumber(position)
  if n <= 3 or KEYS[n] == nil then return redis.error_reply('ERR bad audit key index') end
  if redis.call('EXISTS', KEYS[n]) == 0 then return 5 end
end
for i = 6, indexFrom - 1, 2 do
  redis.call('ZADD', recordsKey, ARGV[i], ARGV[i + 1])
end
for i = indexFrom, #ARGV, 2 do
  redis.call('ZADD', KEYS[tonumber(ARGV[i])], 0, ARGV[i + 1])
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
 * Adds a chain to its tenant's index (where its keys live, then its id in the ordered set) and
 * to the access-report registries of its session, subjects and actors. Idempotent.
 * KEYS: the index zset, the locations hash, then the registry zsets (the tenant's slot).
 * ARGV: chain id, packed location. Replies 1, or 0 when the chain id is already indexed for
 * another session (nothing changed): chain ids are unique within a tenant.
 */
export const REGISTER_AUDIT_CHAIN_SCRIPT = `
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored and stored ~= ARGV[2] then return 0 end
if not stored then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
for k = 1, #KEYS do
  if k ~= 2 then redis.call('ZADD', KEYS[k], 0, ARGV[1]) end
end
return 1
`;

/**
 * Reads one page of a chain's access-report index with the records it points at, in one round
 * trip. KEYS: the index zset, the records zset (one slot). ARGV: BYLEX min and max, count.
 * Replies, per index member in order, an array of the member and every record stored at its
 * seq (none when the record is not there; the caller checks the rest).
 */
export const READ_AUDIT_INDEX_SCRIPT = `
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYLEX', 'LIMIT', 0, tonumber(ARGV[3]))
local reply = {}
for i, member in ipairs(members) do
  local entry = { member }
  local seq = #member == 28 and tonumber(string.sub(member, 15), 16) or nil
  if seq then
    seq = string.format('%.0f', seq)
    for _, record in ipairs(redis.call('ZRANGE', KEYS[2], seq, seq, 'BYSCORE')) do
      entry[#entry + 1] = record
    end
  end
  reply[i] = entry
end
return reply
`;

/** Replies of {@link APPEND_CHECKPOINT_SCRIPT}. */
export const CHECKPOINT_APPEND_REPLY = { taken: 0, stored: 1 } as const;

/**
 * Appends a tenant's checkpoint unless one with its seq is stored: checkpoints are append-only,
 * and a replica that lost the race for a seq takes the next one over. KEYS: the tenant's
 * checkpoint zset. ARGV: seq, packed checkpoint. Replies 1 stored, 0 the seq is taken (nothing
 * written).
 */
export const APPEND_CHECKPOINT_SCRIPT = `
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) ~= 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
`;
