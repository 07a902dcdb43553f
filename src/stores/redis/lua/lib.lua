-- Shared by every script: lua-scripts.ts sends it in front of each one, after the script's `#!lua` line.
-- Only helpers live here; each script keeps its own argument and record checks, read in one place before any
-- write (design-review S-R-1).

-- Integers travel as strings; anything that is not an integer in [min, 2^53 - 1] is nil.
local MAX = 9007199254740991
local function int(s, min)
  local n = tonumber(s)
  if n == nil or n ~= math.floor(n) or n < min or n > MAX then return nil end
  return n
end
local function str(n) return string.format('%d', n) end

-- A record counted against a per-scope limit names its scope set in 'sk': its score follows the record's
-- expiry, and the set lives as long as its latest member. Outside begin the set is not in KEYS (the store knows
-- only the record's key there), which is why a limited store refuses a Cluster client.
local function rescore(sk, key, exp, offset)
  redis.call('ZADD', sk, str(exp), key)
  local last = redis.call('ZRANGE', sk, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', sk, str(tonumber(last[2]) - math.min(offset, 0)))
end
