#!lua flags=no-writes
-- get: the live record, for inspection; read-only, so it still answers when Redis is out of memory.
-- KEYS[1]  the record (prefix:key)
-- ARGV[1]  clock offset ms, integer (0 in production)
-- returns  {'none'}
--        | {'record', state, fence, fingerprint, token, leaseDeadline, expiresAt,
--           status ('' until completed), replayable ('' until completed), headers, body}
-- errors   IDEMPOTENCY_ARGUMENT (bad ARGV), IDEMPOTENCY_UNDECODABLE (foreign type, unknown v, bad field)
-- MAX, int, str, fetch and rescore come from lib.lua, sent in front of this script.

local key, offset = KEYS[1], int(ARGV[1], -MAX)
if key == nil or offset == nil then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT get needs 1 key and 1 valid argument')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + offset

local f, undecodable = fetch(key, 'state', 'fence', 'fp', 'token', 'lease', 'exp', 'status',
  'replayable', 'headers', 'body')
if undecodable then return undecodable end
if f == nil then return { 'none' } end
local state, exp = f[2], int(f[7], -MAX)
if (state ~= 'in_progress' and state ~= 'completed' and state ~= 'released') or not int(f[3], 1)
  or not f[4] or not f[5] or not int(f[6], -MAX) or not exp then
  return redis.error_reply('IDEMPOTENCY_UNDECODABLE record fields are missing or malformed')
end
if exp <= now then return { 'none' } end
if state == 'completed' and (not int(f[8], 100) or (f[9] ~= '0' and f[9] ~= '1') or not f[10]
  or not f[11]) then
  return redis.error_reply('IDEMPOTENCY_UNDECODABLE completed record without a response')
end
return { 'record', state, f[3], f[4], f[5], f[6], f[7], f[8] or '', f[9] or '', f[10] or '',
  f[11] or '' }
