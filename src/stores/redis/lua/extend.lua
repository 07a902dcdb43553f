#!lua
-- extend: push the lease deadline of the record the token owns.
-- KEYS[1]  the record (prefix:key); with a per-scope limit, its scope set (field 'sk') is rescored too
-- ARGV[1]  token
-- ARGV[2]  lease ms from the store's now, integer > 0
-- ARGV[3]  retention ms, integer >= 0 (kept after the new deadline)
-- ARGV[4]  clock offset ms, integer (0 in production)
-- returns  {'extended'} | {'already_completed'} (a heartbeat that lost the race with complete)
--        | {'not_owner'}
-- errors   IDEMPOTENCY_ARGUMENT (bad ARGV), IDEMPOTENCY_UNDECODABLE (foreign type, unknown v, bad field)
-- MAX, int, str, fetch and rescore come from lib.lua, sent in front of this script.

local key, token = KEYS[1], ARGV[1]
local leaseMs, retentionMs, offset = int(ARGV[2], 1), int(ARGV[3], 0), int(ARGV[4], -MAX)
if key == nil or token == nil or leaseMs == nil or retentionMs == nil or offset == nil then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT extend needs 1 key and 4 valid arguments')
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
if exp <= now or f[3] ~= token or state == 'released' then return { 'not_owner' } end
if state == 'completed' then return { 'already_completed' } end

local lease = now + leaseMs
local expires = lease + retentionMs
-- The set first: a foreign value under its name fails here, before the record is touched.
if f[5] then rescore(f[5], key, expires, offset) end
redis.call('HSET', key, 'lease', str(lease), 'exp', str(expires))
redis.call('PEXPIREAT', key, str(expires - math.min(offset, 0)))
return { 'extended' }
