import { auditKeyTypeCheck } from './redis-audit-scripts.js';
import { SESSION_FIELDS } from './redis-record-codec.js';

/**
 * The one Lua script that commits a unit of work of the Redis adapter: a compare-and-set on the
 * session's `version` (and on the head of every audit chain the unit appends to), then every
 * buffered write, the version bump and the expiry, atomically.
 *
 * KEYS: session hash, items zset, data-keys hash, operations hash, expiry index zset, then the
 * records zset, head and access-report index zsets of each audit chain the unit appends to (one
 * hash tag, one slot), then on a standalone server only the lease hash of each job fencing the
 * unit (another slot). Only the first five get the session's expiry: audit records outlive the
 * session.
 * ARGV: expected version ('' when the session hash had none), commit id, PEXPIREAT ms ('0' =
 * PERSIST), then the buffered operations, each an op code followed by its fixed arguments.
 *
 * The expiry index (KEYS[5]) changes only with the items it indexes: an entry goes in with its
 * item (EA after ZA), out with it (ER after ZR), and the whole index with a clear (ZD). The
 * session hash field `expiry_indexed` is set once every stored item is indexed: by a commit that
 * finds no items zset or clears it, or by a rebuild (ED, EA..., HS).
 *
 * A session deletion (SD) deletes the five keys but keeps the session hash's `version` (and
 * `recent_commits`): the version goes on rising, so a unit that read the session before fails
 * its compare-and-set, and the caller gives what is left an expiry (PEXPIREAT).
 *
 * Replies: 1 applied (or applied before: the same commit sent again after its reply was lost,
 * e.g. by a host client that resends unanswered commands after a reconnect),
 * 0 conflict (another writer committed since the snapshot; nothing written),
 * 2 an inserted item's seq is not above every stored score: the session's sequence counter is
 * behind its items (rolled back, or the session hash lost while items remain; nothing written),
 * 3 an item to delete or replace is no longer the member the unit read at that score, or is not alone
 * there: the set was altered outside the module (nothing written),
 * 4 an audit chain holds records at or above the first seq the unit appends although its head
 * is the one the unit read: the head was rolled back or deleted outside the module (nothing
 * written),
 * 5 an audit index zset checked to exist does not: its chain must join the tenant's registry of
 * that subject or actor first (nothing written),
 * 6 an audit key holds another type of value than this module writes there (nothing written),
 * 7 a job lease fencing the unit no longer has its owner and token, or lapsed by the server's
 * clock and is no longer pinned by the unit (nothing written),
 * 8 the expiry index holds another type of value than a zset (nothing written).
 * A data-key or operations hash of another type is refused as WRONGTYPE, before any write.
 */
export const COMMIT_OP = {
  /** HSET session field value */
  setSessionField: 'HS',
  /** HDEL session field */
  deleteSessionField: 'HD',
  /** ZADD items seq member */
  addItem: 'ZA',
  /** ZREM items member, checked first to be the one member at score seq */
  removeItem: 'ZR',
  /**
   * Replaces a stored item in place (re-encryption under another data key): seq, the member
   * stored now, the new member. Checked first: that member is the one member at score seq.
   * The item keeps its seq and expiry, so its expiry index entry stays as it is.
   */
  replaceItem: 'ZX',
  /** DEL items, and DEL the expiry index with them */
  clearItems: 'ZD',
  /** ZADD expiry 0 entry: the index entry of an item inserted with an expiry (after its ZA) */
  addExpiryEntry: 'EA',
  /** ZREM expiry entry: the index entry of an item deleted (after its ZR) */
  removeExpiryEntry: 'ER',
  /** DEL expiry: a rebuild of the index starts from nothing */
  clearExpiryIndex: 'ED',
  /**
   * Deletes the session: DEL of the session hash, items, data keys, operations and expiry
   * index, keeping only the version (which goes on rising, so every unit that read the session
   * before fails its compare-and-set) and the recent commit ids. The audit chain keys stay.
   */
  deleteSession: 'SD',
  /**
   * Checked only (standalone server): lease key index (into KEYS), owner, token, the unit's pin
   * field. The lease has that owner and token and is unexpired by the server's clock, or the
   * unit's pin on it is (it pinned the lease when it was fenced); else reply 7.
   */
  leaseFence: 'LF',
  /** HSET keys dekId packed */
  setDataKey: 'KS',
  /** HSET ops operationId packed */
  setOperation: 'OS',
  /** DEL ops */
  clearOperations: 'OD',
  /**
   * Audit chain check and head move: records key index, head key index (into KEYS), the packed
   * head the unit read ('' for none), the new packed head, the first seq appended. Checked: the
   * head is still the one read and no record sits at or above the first seq.
   */
  auditChain: 'AC',
  /** ZADD audit records: records key index, seq, packed record. */
  auditRecord: 'AR',
  /** ZADD an access-report index entry at score 0: index key index, packed index member. */
  auditIndex: 'AI',
  /**
   * Checked only: the index zset (key index) exists already, so the chain is in the registry
   * of its subject or actor; else reply 5 and nothing is written.
   */
  auditIndexExists: 'AE',
} as const;

/** Replies of the commit script. */
export const COMMIT_REPLY = {
  conflict: 0,
  applied: 1,
  counterBehind: 2,
  itemMoved: 3,
  auditAhead: 4,
  auditUnregistered: 5,
  auditWrongType: 6,
  leaseLost: 7,
  expiryIndexWrongType: 8,
} as const;

/** KEYS before the audit chains' keys in the commit script. */
export const SESSION_COMMIT_KEYS = 5;

/** How many commit ids the session hash remembers (`recent_commits`, newest first). */
export const RECENT_COMMITS_KEPT = 16;

/** How many arguments follow each op code. */
const ARITY = `{ HS = 2, HD = 1, ZA = 2, ZR = 2, ZX = 3, ZD = 0, EA = 1, ER = 1, ED = 0, SD = 0, LF = 4, KS = 2, OS = 2, OD = 0, AC = 5, AR = 3, AI = 2, AE = 1 }`;

export const COMMIT_SCRIPT = `
local sessionKey, itemsKey, keysKey, opsKey, expiryKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local current = redis.call('HGET', sessionKey, 'version') or ''
local recent = redis.call('HGET', sessionKey, 'recent_commits') or ''
if current ~= ARGV[1] then
  if string.find(' ' .. recent .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then return 1 end
  return 0
end
local arity = ${ARITY}
-- An audit key named by its index into KEYS; never one of the session's own four.
local function auditKey(index)
  local n = tonumber(index)
  if n == nil or n <= ${SESSION_COMMIT_KEYS} or KEYS[n] == nil then return nil end
  return KEYS[n]
end

-- Check first, write after: a script that fails half-way keeps what it already wrote.
-- pending: members this commit inserts, by seq. top: the highest stored score (read once).
local cleared, pending, removed, top, i = false, {}, {}, nil, 4
-- Whether the commit deletes the session (SD): no item is left unindexed after it.
local deleted = false
-- Whether every stored item is indexed already (a session written before the index is not).
local indexed = redis.call('HEXISTS', sessionKey, '${SESSION_FIELDS.expiryIndexed}') == 1
local hadItems = redis.call('EXISTS', itemsKey) == 1
local expiryType = redis.call('TYPE', expiryKey).ok
if expiryType ~= 'none' and expiryType ~= 'zset' then return 8 end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'LF' then
    -- A job's lease, by the server's clock (as the lease scripts read it): else nothing is written.
    local n = tonumber(ARGV[i + 1])
    local lease = n and n > ${SESSION_COMMIT_KEYS} and KEYS[n]
    if not lease then return redis.error_reply('ERR bad lease key index') end
    if redis.call('TYPE', lease).ok ~= 'hash' then return 7 end
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    local held = redis.call('HMGET', lease, 'owner', 'token', 'expiresAt')
    if held[1] ~= ARGV[i + 2] or held[2] ~= ARGV[i + 3] then return 7 end
    local pin = tonumber(redis.call('HGET', lease, ARGV[i + 4]) or '0') or 0
    if (tonumber(held[3]) or 0) <= now and pin <= now then return 7 end
  elseif op == 'ZD' then
    cleared, pending, removed = true, {}, {}
  elseif op == 'SD' then
    cleared, pending, removed, deleted = true, {}, {}, true
  elseif op == 'ZR' then
    local seq, member = ARGV[i + 1], ARGV[i + 2]
    if pending[seq] == member then
      pending[seq] = nil
    elseif cleared or removed[seq] then
      return 3
    else
      -- Exactly this member, alone at its score: never "whatever has this score".
      local score = redis.call('ZSCORE', itemsKey, member)
      if not score or tonumber(score) ~= tonumber(seq) then return 3 end
      if redis.call('ZCOUNT', itemsKey, seq, seq) ~= 1 then return 3 end
      removed[seq] = true
    end
  elseif op == 'ZX' then
    local seq, member = ARGV[i + 1], ARGV[i + 2]
    if cleared or removed[seq] or pending[seq] then return 3 end
    local score = redis.call('ZSCORE', itemsKey, member)
    if not score or tonumber(score) ~= tonumber(seq) then return 3 end
    if redis.call('ZCOUNT', itemsKey, seq, seq) ~= 1 then return 3 end
    -- Replaced once per commit: a second op on this seq would see the old member.
    removed[seq] = true
  elseif op == 'ZA' then
    local seq = ARGV[i + 1]
    pending[seq] = ARGV[i + 2]
    if not cleared then
      -- Positions come from next_seq, above every stored item: one at or above an inserted
      -- seq means the counter is behind its items (or a score was altered).
      if top == nil then
        local highest = redis.call('ZRANGE', itemsKey, 0, 0, 'REV', 'WITHSCORES')
        top = highest[2] and (tonumber(highest[2]) or math.huge) or false
      end
      if top and top >= tonumber(seq) then return 2 end
    end
  elseif op == 'AC' then
    local records, head = auditKey(ARGV[i + 1]), auditKey(ARGV[i + 2])
    if not records or not head then return redis.error_reply('ERR bad audit key index') end
    ${auditKeyTypeCheck("{ { records, 'zset' }, { head, 'string' } }")}
    -- The head is the audit chain's lock: another append since the unit read it is a conflict.
    if (redis.call('GET', head) or '') ~= ARGV[i + 3] then return 0 end
    if redis.call('ZCOUNT', records, ARGV[i + 5], '+inf') ~= 0 then return 4 end
  elseif op == 'AR' or op == 'AI' then
    local key = auditKey(ARGV[i + 1])
    if not key then return redis.error_reply('ERR bad audit key index') end
    ${auditKeyTypeCheck("{ { key, 'zset' } }")}
  elseif op == 'AE' then
    local index = auditKey(ARGV[i + 1])
    if not index then return redis.error_reply('ERR bad audit key index') end
    if redis.call('EXISTS', index) == 0 then return 5 end
  elseif op == 'KS' or op == 'OS' then
    -- HSET fails on another type only when it runs, after the writes before it.
    local stored = redis.call('TYPE', op == 'KS' and keysKey or opsKey).ok
    if stored ~= 'none' and stored ~= 'hash' then
      return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
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
    redis.call('ZREM', itemsKey, ARGV[i + 2])
  elseif op == 'ZX' then
    redis.call('ZREM', itemsKey, ARGV[i + 2])
    redis.call('ZADD', itemsKey, ARGV[i + 1], ARGV[i + 3])
  elseif op == 'ZD' then
    redis.call('DEL', itemsKey, expiryKey)
  elseif op == 'EA' then
    redis.call('ZADD', expiryKey, 0, ARGV[i + 1])
  elseif op == 'ER' then
    redis.call('ZREM', expiryKey, ARGV[i + 1])
  elseif op == 'ED' then
    redis.call('DEL', expiryKey)
  elseif op == 'SD' then
    redis.call('DEL', sessionKey, itemsKey, keysKey, opsKey, expiryKey)
    if current ~= '' then redis.call('HSET', sessionKey, 'version', current) end
  elseif op == 'KS' then
    redis.call('HSET', keysKey, ARGV[i + 1], ARGV[i + 2])
  elseif op == 'OS' then
    redis.call('HSET', opsKey, ARGV[i + 1], ARGV[i + 2])
  elseif op == 'OD' then
    redis.call('DEL', opsKey)
  elseif op == 'AC' then
    redis.call('SET', auditKey(ARGV[i + 2]), ARGV[i + 4])
  elseif op == 'AR' then
    redis.call('ZADD', auditKey(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3])
  elseif op == 'AI' then
    redis.call('ZADD', auditKey(ARGV[i + 1]), 0, ARGV[i + 2])
  end
  i = i + 1 + arity[op]
end

-- No item older than the index is left once there were none, or this commit cleared them.
if deleted or (not indexed and (not hadItems or cleared)) then
  redis.call('HSET', sessionKey, '${SESSION_FIELDS.expiryIndexed}', '1')
end
redis.call('HINCRBY', sessionKey, 'version', 1)
-- The newest ids, so a resend is recognised even after other writers committed meanwhile.
local ids = { ARGV[2] }
for id in string.gmatch(recent, '%S+') do
  if #ids >= ${RECENT_COMMITS_KEPT} then break end
  ids[#ids + 1] = id
end
redis.call('HSET', sessionKey, 'recent_commits', table.concat(ids, ' '))
for k = 1, ${SESSION_COMMIT_KEYS} do
  if ARGV[3] == '0' then
    redis.call('PERSIST', KEYS[k])
  else
    redis.call('PEXPIREAT', KEYS[k], ARGV[3])
  end
end
return 1
`;

/** Replies of the fence script. */
export const FENCE_REPLY = { notApplied: 0, applied: 1, unknown: 2 } as const;

/**
 * Settles a commit whose reply was lost. KEYS: the session hash. ARGV: the commit id, the
 * version the commit expected ('' for none).
 *
 * 1: the commit was applied (its id is among the recent commits).
 * 0: it was not, and now never will be: the version moves on, so the commit, should it still
 * arrive (a host client that resends unanswered commands after a reconnect), fails its
 * compare-and-set. A session hash that does not exist yet gets only the version, expiring
 * after a day unless a later commit gives it a session.
 * 2: unknown, when more commits happened since the expected version than the recent ids list
 * (the id may have been pushed out); nothing is changed.
 */
export const FENCE_SCRIPT = `
local recent = redis.call('HGET', KEYS[1], 'recent_commits') or ''
if string.find(' ' .. recent .. ' ', ' ' .. ARGV[1] .. ' ', 1, true) then return 1 end
local listed = 0
for _ in string.gmatch(recent, '%S+') do listed = listed + 1 end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local expected = tonumber(ARGV[2] == '' and '0' or ARGV[2])
if current == nil or expected == nil or current - expected > listed then return 2 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'version', '0')
  redis.call('PEXPIRE', KEYS[1], 86400000)
else
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
return 0
`;
