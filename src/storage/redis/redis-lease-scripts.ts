/**
 * Lua scripts of the job leases on Redis: one per change, each on the job's lease hash alone
 * (one key, so one slot on a Cluster), timed by the server's clock (`TIME`), so replicas with
 * skewed clocks agree on who holds a lease. Times and tokens travel as decimal strings.
 */

/** Replies of the lease scripts, first element of the reply array. */
export const LEASE_REPLY = {
  /** No lease for the caller: another owner holds it, the caller's was lost, or none exists. */
  none: 0,
  /** The lease as the script left it: the reply goes on with the token and the expiry. */
  lease: 1,
  /** The key holds another type than a hash, or its fields are not what the module writes. */
  damaged: 2,
} as const;

/**
 * The server's clock in epoch ms as `now`, then the stored lease as `owner`, `token`,
 * `expiresAt` (token 0 and expiry 0 when there is none), or a damaged reply when the key holds
 * something this module never writes.
 */
const READ_LEASE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local kind = redis.call('TYPE', KEYS[1]).ok
local owner, token, expiresAt = false, 0, 0
if kind ~= 'none' then
  if kind ~= 'hash' then return { 2 } end
  local fields = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expiresAt')
  owner = fields[1]
  if not owner or owner == '' then return { 2 } end
  if not fields[2] or not string.match(fields[2], '^[1-9]%d*$') then return { 2 } end
  if not fields[3] or not string.match(fields[3], '^%d+$') then return { 2 } end
  token, expiresAt = tonumber(fields[2]), tonumber(fields[3])
end
`;

/** Formats a Lua number as whole decimal digits (tostring would switch to exponents). */
const DIGITS = `local function digits(n) return string.format('%.0f', n) end`;

/** Prefix of the lease hash fields that pin it for a running fenced unit of work. */
export const LEASE_PIN_PREFIX = 'pin:';

/**
 * `pinned(now)`: whether a fenced unit of work still pins the lease (a field 'pin:<unit>'
 * whose time has not come); drops the pins that lapsed.
 */
const PINNED = `
local function pinned(now)
  local fields = redis.call('HGETALL', KEYS[1])
  local active = false
  for f = 1, #fields, 2 do
    if string.sub(fields[f], 1, ${LEASE_PIN_PREFIX.length}) == '${LEASE_PIN_PREFIX}' then
      local pin = tonumber(fields[f + 1])
      if pin and pin > now then active = true else redis.call('HDEL', KEYS[1], fields[f]) end
    end
  end
  return active
end
`;

/**
 * Takes the lease, or extends it for its owner. KEYS: the lease hash. ARGV: owner, ttl ms.
 * Replies {1, token, expiresAt} taken (token + 1, when nobody held it or it lapsed) or extended
 * (same token, when the owner holds it), {0} while another owner holds it or a fenced unit of
 * work of the lapsed holder still pins it, {2} damaged.
 */
export const ACQUIRE_LEASE_SCRIPT = `${DIGITS}
${PINNED}
${READ_LEASE}
if expiresAt > now then
  if owner ~= ARGV[1] then return { 0 } end
else
  -- As a locked lease row on SQL: nobody takes it afresh while a fenced unit runs.
  if pinned(now) then return { 0 } end
  token = token + 1
end
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', digits(token), 'expiresAt', digits(expires))
return { 1, digits(token), digits(expires) }
`;

/**
 * Extends a lease its holder still holds. KEYS: the lease hash. ARGV: owner, token, ttl ms.
 * Replies {1, token, expiresAt} extended, {0} lost (another token, another owner, or lapsed),
 * {2} damaged.
 */
export const RENEW_LEASE_SCRIPT = `${DIGITS}
${READ_LEASE}
if owner ~= ARGV[1] or token ~= tonumber(ARGV[2]) or expiresAt <= now then return { 0 } end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'expiresAt', digits(expires))
return { 1, digits(token), digits(expires) }
`;

/**
 * Lapses a lease its holder still holds, now; the hash and its token stay. KEYS: the lease
 * hash. ARGV: owner, token. Replies {1, token, now} released, {0} no longer held (nothing
 * changed), {2} damaged.
 */
export const RELEASE_LEASE_SCRIPT = `${DIGITS}
${READ_LEASE}
if owner ~= ARGV[1] or token ~= tonumber(ARGV[2]) or expiresAt <= now then return { 0 } end
redis.call('HSET', KEYS[1], 'expiresAt', digits(now))
return { 1, digits(token), digits(now) }
`;

/**
 * Reads a lease, checked as the other scripts check it. KEYS: the lease hash. Replies
 * {1, token, expiresAt, owner}, {0} never taken, {2} damaged.
 */
export const READ_LEASE_SCRIPT = `${DIGITS}
${READ_LEASE}
if token == 0 then return { 0 } end
return { 1, digits(token), digits(expiresAt), owner }
`;

/**
 * Fences a unit of work with a lease: checks that the lease still has this owner and token and
 * is unexpired by the server's clock, or that this unit pinned it before (then it may have
 * lapsed since), and pins it for the unit for `pin ms` more: until the pin is dropped or lapses,
 * nobody takes the lease afresh. KEYS: the lease hash. ARGV: owner, token, pin field, pin ms.
 * Replies {1, token, expiresAt} fenced, {0} not held (nothing changed), {2} damaged.
 */
export const PIN_LEASE_SCRIPT = `${DIGITS}
${READ_LEASE}
if owner ~= ARGV[1] or token ~= tonumber(ARGV[2]) then return { 0 } end
local pin = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '0') or 0
if expiresAt <= now and pin <= now then return { 0 } end
redis.call('HSET', KEYS[1], ARGV[3], digits(now + tonumber(ARGV[4])))
return { 1, digits(token), digits(expiresAt) }
`;
