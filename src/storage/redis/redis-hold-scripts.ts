/**
 * Lua scripts of the legal holds and the erasure ledger on Redis. Each runs on keys of one hash
 * tag ('holds' or 'erasures'), so one slot on a Cluster, and is one atomic step. Records are
 * packed by the caller and compared byte for byte, never parsed here: a change is a
 * compare-and-set against the record the caller read.
 */

/** Fails the script before any write unless each KEYS[i] is absent or of type ARGV-given kind. */
const TYPE_CHECK = `
local function checkTypes(kinds)
  for k = 1, #kinds do
    local kind = redis.call('TYPE', KEYS[k]).ok
    if kind ~= 'none' and kind ~= kinds[k] then
      return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
    end
  end
  return nil
end
`;

/** Replies of the record scripts, first element of the reply array (or the reply itself). */
export const RECORD_REPLY = {
  /** No record with that id (or, for an insert, the id exists already: nothing written). */
  none: 0,
  /** Written: the reply goes on with the record as stored now. */
  written: 1,
  /** The stored record is not the one the caller read: the reply goes on with it. */
  changed: 2,
} as const;

/**
 * Stores a new hold. KEYS: records hash, all ids, active ids, the tenant's ids, the tenant's
 * active ids, the active set of its target (session or subject). ARGV: hold id, packed record,
 * '1' when it is active. Replies 1 stored, 0 the id exists (nothing written).
 */
export const INSERT_HOLD_SCRIPT = `${TYPE_CHECK}
local refused = checkTypes({ 'hash', 'zset', 'zset', 'zset', 'zset', 'set' })
if refused then return refused end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  redis.call('ZADD', KEYS[5], 0, ARGV[1])
  redis.call('SADD', KEYS[6], ARGV[1])
end
return 1
`;

/**
 * Releases an active hold. KEYS: records hash, active ids, the tenant's active ids, the active
 * set of its target. ARGV: hold id, the packed record as read (active), the released record.
 * Replies {1, record} released, {0} no such hold, {2, record} the stored record is another
 * than the one read (released meanwhile): nothing written.
 */
export const RELEASE_HOLD_SCRIPT = `${TYPE_CHECK}
local refused = checkTypes({ 'hash', 'zset', 'zset', 'set' })
if refused then return refused end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return { 0 } end
if current ~= ARGV[2] then return { 2, current } end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return { 1, ARGV[3] }
`;

/**
 * The holds whose ids are in any of the sets KEYS[2..]: KEYS[1] the records hash. Replies
 * {ids, packed records} (a record is false when the hash lacks it).
 */
export const READ_HOLD_SETS_SCRIPT = `
local ids = redis.call('SUNION', unpack(KEYS, 2))
if #ids == 0 then return { {}, {} } end
return { ids, redis.call('HMGET', KEYS[1], unpack(ids)) }
`;

/**
 * One page of a ZSET of ids (score 0) and their records. KEYS: records hash, the ids zset.
 * ARGV: ZRANGEBYLEX start, limit. Replies {ids, packed records}.
 */
export const READ_PAGE_SCRIPT = `
local ids = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return { {}, {} } end
return { ids, redis.call('HMGET', KEYS[1], unpack(ids)) }
`;

/**
 * Stores a new ledger entry. KEYS: records hash, ids zset. ARGV: erasure id, packed entry.
 * Replies 1 stored, 0 the id exists (nothing written).
 */
export const INSERT_ERASURE_SCRIPT = `${TYPE_CHECK}
local refused = checkTypes({ 'hash', 'zset' })
if refused then return refused end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`;

/**
 * Replaces a record if it is still the one read. KEYS: records hash. ARGV: id, packed record
 * as read, the new packed record. Replies {1, record} replaced, {0} none, {2, record} changed.
 */
export const REPLACE_RECORD_SCRIPT = `${TYPE_CHECK}
local refused = checkTypes({ 'hash' })
if refused then return refused end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return { 0 } end
if current ~= ARGV[2] then return { 2, current } end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return { 1, ARGV[3] }
`;
