-- Shared by every script: lua-scripts.ts sends it in front of each one, after the script's `#!lua` line.
-- Only helpers live here, the read of a record's fields among them; each script keeps its own argument and field
-- checks, all made before any write (design-review S-R-1). A `redis.call` costs about half a microsecond of Redis
-- CPU beyond its command's own time (measured on 7.0), so a script makes as few as its checks allow.

-- Integers travel as strings; anything that is not an integer in [min, 2^53 - 1] is nil.
local MAX = 9007199254740991
local function int(s, min)
  local n = tonumber(s)
  if n == nil or n ~= math.floor(n) or n < min or n > MAX then return nil end
  return n
end
local function str(n) return string.format('%d', n) end

-- The record's fields `v` and then those asked for, in one call on the usual path. Returns the fields, or nil when
-- there is no key, or nil and an error reply when the key holds something that is not a version 1 record (another
-- type, or a hash without our version): such a key is an error, never "no record".
local function fetch(key, ...)
  local f = redis.pcall('HMGET', key, 'v', ...)
  if f.err then
    return nil, redis.error_reply('IDEMPOTENCY_UNDECODABLE the key holds a ' .. redis.call('TYPE', key)['ok'])
  end
  if f[1] == '1' then return f end
  if not f[1] and redis.call('EXISTS', key) == 0 then return nil end
  return nil, redis.error_reply('IDEMPOTENCY_UNDECODABLE unknown record version ' .. tostring(f[1]))
end

-- A record counted against a per-scope limit names its scope set in 'sk': its score follows the record's
-- expiry, and the set lives as long as its latest member. Outside begin the set is not in KEYS (the store knows
-- only the record's key there), which is why a limited store refuses a Cluster client.
local function rescore(sk, key, exp, offset)
  redis.call('ZADD', sk, str(exp), key)
  local last = redis.call('ZRANGE', sk, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', sk, str(tonumber(last[2]) - math.min(offset, 0)))
end
