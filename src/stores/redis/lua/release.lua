#!lua
-- release: turn the record the token owns into a tombstone that keeps the fence (and the token).
-- KEYS[1]  the record (prefix:key); with a per-scope limit, its scope set (field 'sk') is rescored too
-- ARGV[1]  token
-- ARGV[2]  retention ms, integer >= 0 (the tombstone's life)
-- ARGV[3]  clock offset ms, integer (0 in production)
-- returns  {'released'} | {'already_released'} (same token: a resent release) | {'not_owner'}
--        | {'completed'} (the token completed it: a stored response is never released)
-- errors   IDEMPOTENCY_ARGUMENT (bad ARGV), IDEMPOTENCY_UNDECODABLE (foreign type, unknown v, bad field)
-- MAX, int, str, fetch and rescore come from lib.lua, sent in front of this script.

local key, token, retentionMs, offset = KEYS[1], ARGV[1], int(ARGV[2], 0), int(ARGV[3], -MAX)
if key == nil or token == nil or retentionMs == nil or offset == nil then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT release needs 1 key and 3 valid arguments')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + offset

local f, undecodable = fetch(key, 'state', 'token', 'exp', 'sk')
if undecodable then return undecodable end
if f == nil then return { 'not_owner' } end
local state, exp = f[2], int(f[4], -MAX)
if (state ~= 'in_progress' and state ~= 'completed' and state ~= 'released') or not f[3]
  or not exp then
  return redis.error_reply('IDEMPOTENCY_UNDECODABLE record fields are missing or malformed')
end
if exp <= now or f[3] ~= token then return { 'not_owner' } end
if state == 'released' then return { 'already_released' } end
if state == 'completed' then return { 'completed' } end

local expires = now + retentionMs
-- The set first: a foreign value under its name fails here, before the record is touched.
if f[5] then rescore(f[5], key, expires, offset) end
redis.call('HSET', key, 'state', 'released', 'fp', '', 'released', str(now), 'exp', str(expires))
redis.call('PEXPIREAT', key, str(expires - math.min(offset, 0)))
return { 'released' }
