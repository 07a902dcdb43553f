#!lua
-- begin: take the record for a token, or say why not; one atomic step, every check before any write.
-- KEYS[1]  the record (prefix:key)
-- KEYS[2]  only with a per-scope limit: the scope's sorted set (prefix:scope:<scope hash>), member = KEYS[1],
--          score = that record's expiry; a record it creates keeps the set's name in its field 'sk'
-- ARGV[1]  fingerprint
-- ARGV[2]  token (the engine's, so a resent begin finds its own record)
-- ARGV[3]  lease ms, integer > 0
-- ARGV[4]  retention ms, integer >= 0
-- ARGV[5]  clock offset ms, integer (0 in production)
-- ARGV[6]  only with KEYS[2]: most live records in the scope, integer > 0
-- returns  {'acquired', fence, takeover '1'|'0', previousFence}
--        | {'replay', status, replayable '1'|'0', headers, body}
--        | {'in_progress', leaseRemainingMs}
--        | {'mismatch'}
--        | {'scope_full', retryAfterMs} (no live record under KEYS[1], and the scope holds ARGV[6] live ones)
-- errors   IDEMPOTENCY_ARGUMENT (bad ARGV), IDEMPOTENCY_UNDECODABLE (foreign type, unknown v, bad field)
-- Only a begin that creates a record is counted against the limit; an existing record is never refused.
-- Numbers go out as strings: a table with nil inside is truncated, and Lua numbers print as %.14g.
-- MAX, int, str, fetch and rescore come from lib.lua, sent in front of this script.

local key, scopeSet, fp, token = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local leaseMs, retentionMs, offset = int(ARGV[3], 1), int(ARGV[4], 0), int(ARGV[5], -MAX)
if key == nil or fp == nil or token == nil or token == '' or leaseMs == nil or retentionMs == nil
  or offset == nil then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT begin needs 1 key and 5 valid arguments')
end
local limit = scopeSet and int(ARGV[6], 1)
if scopeSet and not limit then
  return redis.error_reply('IDEMPOTENCY_ARGUMENT begin with a scope set needs a limit > 0 in ARGV[6]')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + offset

-- Load: a key that is not ours to read is an error, never "no record". TYPE rather than lib's fetch: for a new key,
-- the usual case here, that is one call where fetch makes two (HMGET, then EXISTS).
local kind = redis.call('TYPE', key)['ok']
local rec = nil
if kind ~= 'none' then
  if kind ~= 'hash' then
    return redis.error_reply('IDEMPOTENCY_UNDECODABLE the key holds a ' .. kind)
  end
  -- The response's fields too, in the same call: a replay is then TIME, TYPE and this.
  local f = redis.call('HMGET', key, 'v', 'state', 'fp', 'token', 'fence', 'lease', 'exp', 'prev',
    'takeover', 'sk', 'status', 'replayable', 'headers', 'body')
  if f[1] ~= '1' then
    return redis.error_reply('IDEMPOTENCY_UNDECODABLE unknown record version ' .. tostring(f[1]))
  end
  local state, fence, lease, exp, prev = f[2], int(f[5], 1), int(f[6], -MAX), int(f[7], -MAX),
    int(f[8], 0)
  if (state ~= 'in_progress' and state ~= 'completed' and state ~= 'released') or not f[3]
    or not f[4] or not fence or not lease or not exp or not prev
    or (f[9] ~= '0' and f[9] ~= '1') then
    return redis.error_reply('IDEMPOTENCY_UNDECODABLE record fields are missing or malformed')
  end
  -- Past its expiry the record is absent, whether or not Redis has swept it yet.
  if exp > now then
    rec = { state = state, fp = f[3], token = f[4], fence = fence, lease = lease, prev = f[8],
      takeover = f[9], sk = f[10], status = f[11], replayable = f[12], headers = f[13], body = f[14] }
  end
end

-- Writes the record; `sk` names the scope set that counts it (nil: not counted).
local function acquire(fence, previous, takeover, sk)
  local lease = now + leaseMs
  local exp = lease + retentionMs
  -- The set first: a foreign value under its name fails here, before the record is touched.
  if sk then rescore(sk, key, exp, offset) end
  if kind ~= 'none' then redis.call('DEL', key) end
  redis.call('HSET', key, 'v', '1', 'state', 'in_progress', 'fp', fp, 'token', token,
    'fence', str(fence), 'prev', str(previous), 'takeover', takeover, 'lease', str(lease),
    'exp', str(exp), 'created', str(now))
  if sk then redis.call('HSET', key, 'sk', sk) end
  -- Physical expiry never comes before the logical one, whatever the (test-only) offset.
  redis.call('PEXPIREAT', key, str(exp - math.min(offset, 0)))
  return { 'acquired', str(fence), takeover, str(previous) }
end

if rec == nil then
  if scopeSet then
    -- A new record: count the scope's live ones (expiry > now) and refuse past the limit.
    redis.call('ZREMRANGEBYSCORE', scopeSet, '-inf', str(now))
    if redis.call('ZCARD', scopeSet) >= limit then
      local first = redis.call('ZRANGE', scopeSet, 0, 0, 'WITHSCORES')
      return { 'scope_full', str(math.max(0, tonumber(first[2]) - now)) }
    end
  end
  return acquire(1, 0, '0', scopeSet)
end
-- 422 before 409: the fingerprint is compared in every state but a tombstone.
if rec.state ~= 'released' and rec.fp ~= fp then return { 'mismatch' } end
if rec.state == 'released' then return acquire(rec.fence + 1, rec.fence, '0', rec.sk) end
if rec.state == 'completed' then
  if not int(rec.status, 100) or (rec.replayable ~= '0' and rec.replayable ~= '1') or not rec.headers
    or not rec.body then
    return redis.error_reply('IDEMPOTENCY_UNDECODABLE completed record without a response')
  end
  return { 'replay', rec.status, rec.replayable, rec.headers, rec.body }
end
if rec.token == token then return { 'acquired', str(rec.fence), rec.takeover, rec.prev } end
if now < rec.lease then return { 'in_progress', str(rec.lease - now) } end
return acquire(rec.fence + 1, rec.fence, '1', rec.sk)
