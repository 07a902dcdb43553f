#!lua
-- complete: store the response iff the token owns the record, whatever its lease deadline.
-- KEYS[1]  the record (prefix:key); with a per-scope limit, its scope set (field 'sk') is rescored too
-- ARGV[1]  token
-- ARGV[2]  status, integer 100-599
-- ARGV[3]  replayable '1'|'0'
-- ARGV[4]  headers, the store's binary encoding of ordered [name, value] pairs (opaque here)
-- ARGV[5]  body bytes
-- ARGV[6]  retention ms, integer >= 0
-- ARGV[7]  clock offset ms, integer (0 in production)
-- returns  {'completed'} | {'already_completed'} (same token: a resent complete) | {'not_owner'}
-- errors   IDEMPOTENCY_ARGUMENT (bad ARGV), IDEMPOTENCY_UNDECODABLE (foreign type, unknown v, bad field)
-- MAX, int, str, fetch and rescore come from lib.lua, sent in front of this script.

local key, token, status, replayable, headers, body = KEYS[1], ARGV[1], int(ARGV[2], 100),
  ARGV[3], ARGV[4], ARGV[5]
local retentionMs, offset = int(ARGV[6], 0), int(ARGV[7], -MAX)
if key == nil or token == nil or status == nil or status > 599
  or (replayable ~= '0' and replayable ~= '1') or headers == nil or body == nil
  or retentionMs == nil or offset == nil then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT complete needs 1 key and 7 valid arguments')
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

local expires = now + retentionMs
-- The set first: a foreign value under its name fails here, before the record is touched.
if f[5] then rescore(f[5], key, expires, offset) end
redis.call('HSET', key, 'state', 'completed', 'status', str(status), 'replayable', replayable,
  'headers', headers, 'body', body, 'completed', str(now), 'exp', str(expires))
redis.call('PEXPIREAT', key, str(expires - math.min(offset, 0)))
return { 'completed' }
