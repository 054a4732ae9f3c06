/**
 * The one Lua script that commits a unit of work of the Redis adapter: a compare-and-set on the
 * session's `version`, then every buffered write, the version bump and the expiry, atomically.
 *
 * KEYS: session hash, items zset, data-keys hash, operations hash (one hash tag, one slot).
 * ARGV: expected version ('' when the session hash had none), commit id, PEXPIREAT ms ('0' =
 * PERSIST), then the buffered operations, each an op code followed by its fixed arguments.
 *
 * Replies: 1 applied (or applied before: the same commit sent again after its reply was lost,
 * e.g. by a host client that resends unanswered commands after a reconnect),
 * 0 conflict (another writer committed since the snapshot; nothing written),
 * 2 an inserted item's seq is already stored (nothing written).
 */
export const COMMIT_OP = {
  /** HSET session field value */
  setSessionField: 'HS',
  /** HDEL session field */
  deleteSessionField: 'HD',
  /** ZADD items seq member */
  addItem: 'ZA',
  /** ZREMRANGEBYSCORE items seq seq */
  removeItem: 'ZR',
  /** DEL items */
  clearItems: 'ZD',
  /** HSET keys dekId packed */
  setDataKey: 'KS',
  /** HSET ops operationId packed */
  setOperation: 'OS',
  /** DEL ops */
  clearOperations: 'OD',
} as const;

/** Replies of the commit script. */
export const COMMIT_REPLY = { conflict: 0, applied: 1, duplicateSeq: 2 } as const;

/** How many commit ids the session hash remembers (`recent_commits`, newest first). */
export const RECENT_COMMITS_KEPT = 16;

/** How many arguments follow each op code. */
const ARITY = `{ HS = 2, HD = 1, ZA = 2, ZR = 1, ZD = 0, KS = 2, OS = 2, OD = 0 }`;

export const COMMIT_SCRIPT = `
local sessionKey, itemsKey, keysKey, opsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local current = redis.call('HGET', sessionKey, 'version') or ''
local recent = redis.call('HGET', sessionKey, 'recent_commits') or ''
if current ~= ARGV[1] then
  if string.find(' ' .. recent .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then return 1 end
  return 0
end
local arity = ${ARITY}

-- Check first, write after: a script that fails half-way keeps what it already wrote.
local cleared, removed, i = false, {}, 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'ZD' then
    cleared, removed = true, {}
  elseif op == 'ZR' then
    removed[ARGV[i + 1]] = true
  elseif op == 'ZA' then
    local seq = ARGV[i + 1]
    if not cleared and not removed[seq] and redis.call('ZCOUNT', itemsKey, seq, seq) > 0 then
      return 2
    end
  elseif arity[op] == nil then
    return redis.error_reply('ERR unknown commit op')
  end
  i = i + 1 + arity[op]
end

i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'HS' then
    redis.call('HSET', sessionKey, ARGV[i + 1], ARGV[i + 2])
  elseif op == 'HD' then
    redis.call('HDEL', sessionKey, ARGV[i + 1])
  elseif op == 'ZA' then
    redis.call('ZADD', itemsKey, ARGV[i + 1], ARGV[i + 2])
  elseif op == 'ZR' then
    redis.call('ZREMRANGEBYSCORE', itemsKey, ARGV[i + 1], ARGV[i + 1])
  elseif op == 'ZD' then
    redis.call('DEL', itemsKey)
  elseif op == 'KS' then
    redis.call('HSET', keysKey, ARGV[i + 1], ARGV[i + 2])
  elseif op == 'OS' then
    redis.call('HSET', opsKey, ARGV[i + 1], ARGV[i + 2])
  elseif op == 'OD' then
    redis.call('DEL', opsKey)
  end
  i = i + 1 + arity[op]
end

redis.call('HINCRBY', sessionKey, 'version', 1)
-- The newest ids, so a resend is recognised even after other writers committed meanwhile.
local ids = { ARGV[2] }
for id in string.gmatch(recent, '%S+') do
  if #ids >= ${RECENT_COMMITS_KEPT} then break end
  ids[#ids + 1] = id
end
redis.call('HSET', sessionKey, 'recent_commits', table.concat(ids, ' '))
for _, key in ipairs(KEYS) do
  if ARGV[3] == '0' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIREAT', key, ARGV[3])
  end
end
return 1
`;
