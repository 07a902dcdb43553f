#!lua
-- delete: purge a record; an in_progress one only with force (a retry may then run beside the holder).
-- KEYS[1]  the record (prefix:key); with a per-scope limit, its member of the scope set (field 'sk') too
-- ARGV[1]  force '1'|'0' (with force an undecodable value is purged too: the operator's way out)
-- ARGV[2]  clock offset ms, integer (0 in production)
-- returns  {'deleted'} | {'absent'} | {'refused_in_progress'}
-- errors   IDEMPOTENCY_ARGUMENT (bad ARGV), IDEMPOTENCY_UNDECODABLE (without force only)
-- MAX, int, str, fetch and rescore come from lib.lua, sent in front of this script.

local key, force, offset = KEYS[1], ARGV[1], int(ARGV[2], -MAX)
if key == nil or (force ~= '0' and force ~= '1') or offset == nil then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT delete needs 1 key and 2 valid arguments')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + offset

local kind = redis.call('TYPE', key)['ok']
if kind == 'none' then return { 'absent' } end
local f = kind == 'hash' and redis.call('HMGET', key, 'v', 'state', 'exp', 'sk') or {}
local state, exp = f[2], int(f[3], -MAX)
-- Frees the record's place in its scope set, if it is counted in one (see begin.lua; the set is not in
-- KEYS, so a limited store refuses a Cluster client). A purge must not fail on a foreign value there: pcall.
local function drop()
  if f[4] then redis.pcall('ZREM', f[4], key) end
  redis.call('DEL', key)
end
if kind ~= 'hash' or f[1] ~= '1' or not exp
  or (state ~= 'in_progress' and state ~= 'completed' and state ~= 'released') then
  if force == '1' then
    drop()
    return { 'deleted' }
  end
  return redis.error_reply('IDEMPOTENCY_UNDECODABLE the key does not hold a version 1 record')
end
if exp <= now then
  drop()
  return { 'absent' }
end
if state == 'in_progress' and force ~= '1' then return { 'refused_in_progress' } end
drop()
return { 'deleted' }
