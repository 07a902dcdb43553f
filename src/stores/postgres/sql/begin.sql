-- begin: take the record under a key, or say who has it, in one statement.
-- Parameters: $1 clock_offset_ms float8, $2 key text, $3 fingerprint text, $4 token text,
--   $5 lease_ms float8, $6 retention_ms float8; on a store with maxRecordsPerScope also $7 scope
--   text (hex SHA-256 of the tenant scope) and $8 max_records_per_scope int.
-- Returns at most one row: outcome text, v int, state text, fence float8, previous_fence float8,
--   takeover bool, lease_remaining_ms float8, status int, replayable bool, headers bytea[][],
--   body bytea, and with maxRecordsPerScope retry_after_ms float8. outcome is 'acquired' | 'replay'
--   | 'in_progress' | 'mismatch' | 'scope_full' (only with maxRecordsPerScope; only retry_after_ms
--   set: the time until the scope's earliest live record expires), or 'stale' when the row this
--   statement's snapshot shows is older than the one the upsert saw. On 'stale' or on no row, run it
--   again.
--
-- Two statements in one file: the lines between "-- [limited]" and "-- [/limited]" are sent only by
-- a store with maxRecordsPerScope. Without it, begin is the statement it was before the limit
-- existed: no count, no scope, not even the planning of them.
--
-- Why run again: when a concurrent begin inserted the row after this statement's snapshot was
-- taken, ON CONFLICT sees and locks that row, but the fallback SELECT below reads the snapshot and
-- finds nothing (design-review S-PG-1). The next run's snapshot includes the row. In exchange,
-- replays, conflicts and mismatches write nothing (the upsert's WHERE is false), where an
-- always-updating upsert would write a row version on every one of them.
--
-- A row is live until lease_until + retention while in_progress, until expires_at otherwise; a row
-- that is no longer live is absent, swept or not: it is overwritten and the fence restarts at 1.
-- EXCLUDED.created_at is this statement's now, read once from clock_timestamp() (never now(), which
-- is the transaction's start).
--
-- With the limit, a begin that would create a record (no live row under the key in this snapshot)
-- is refused, writing nothing, when the scope already holds $8 live records. held counts them on
-- the partial (scope, expires_at) index, earliest first and no further than $8; expires_at is exact
-- on a row with a scope (extend moves it there). The count reads this statement's snapshot:
-- parallel begins of new keys in one scope do not see each other's rows, so together they can pass
-- the limit by at most their own number (READ COMMITTED; see the store's maxRecordsPerScope).
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
-- [limited]
held AS MATERIALIZED (
  SELECT count(*) AS n, min(h.expires_at) AS first
  FROM (
    -- now as a scalar subquery, so that it bounds the index scan instead of filtering after it.
    SELECT x.expires_at FROM {{table}} x
    WHERE x.scope = $7::text AND x.expires_at > (SELECT c.now FROM c)
    ORDER BY x.expires_at
    LIMIT $8::int
  ) h
),
refused AS MATERIALIZED (
  SELECT greatest(0, ceil(extract(epoch FROM held.first - c.now) * 1000))::float8 AS retry_after_ms
  FROM held, c
  WHERE held.n >= $8::int
    AND NOT EXISTS (
      SELECT 1 FROM {{table}} k
      WHERE k.key = $2::text
        AND CASE WHEN k.state = 'in_progress' THEN k.lease_until + k.retention ELSE k.expires_at END
          > c.now)
),
-- [/limited]
taken AS (
  INSERT INTO {{table}} AS r (
    key, v, state, fingerprint, token, fence, previous_fence, takeover,
    lease_until, retention, expires_at, created_at
    -- [limited]
    , scope
    -- [/limited]
  )
  SELECT $2::text, 1, 'in_progress', $3::text, $4::text, 1, 0, false,
    c.now + $5::float8 * interval '1 millisecond',
    $6::float8 * interval '1 millisecond',
    c.now + ($5::float8 + $6::float8) * interval '1 millisecond',
    c.now
    -- [limited]
    , $7::text
    -- [/limited]
  FROM c
  -- [limited]
  WHERE NOT EXISTS (SELECT 1 FROM refused)
  -- [/limited]
  ON CONFLICT (key) DO UPDATE SET
    v = 1,
    state = 'in_progress',
    fingerprint = EXCLUDED.fingerprint,
    token = EXCLUDED.token,
    fence = CASE
      WHEN CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
        <= EXCLUDED.created_at THEN 1
      ELSE r.fence + 1 END,
    previous_fence = CASE
      WHEN CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
        <= EXCLUDED.created_at THEN 0
      ELSE r.fence END,
    -- Only a live in_progress row can be acquired while in progress: its lease passed.
    takeover = r.state = 'in_progress' AND r.lease_until + r.retention > EXCLUDED.created_at,
    lease_until = EXCLUDED.lease_until,
    retention = EXCLUDED.retention,
    expires_at = EXCLUDED.expires_at,
    created_at = EXCLUDED.created_at,
    completed_at = NULL,
    status = NULL,
    replayable = NULL,
    headers = NULL,
    body = NULL
    -- [limited]
    , scope = EXCLUDED.scope
    -- [/limited]
  WHERE CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
      <= EXCLUDED.created_at
    OR (r.v = 1 AND (
      r.state = 'released'
      OR (r.state = 'in_progress' AND r.fingerprint = EXCLUDED.fingerprint
        AND r.token <> EXCLUDED.token AND r.lease_until <= EXCLUDED.created_at)))
  RETURNING r.fence, r.previous_fence, r.takeover
)
SELECT 'acquired' AS outcome, 1 AS v, 'in_progress' AS state, t.fence::float8 AS fence,
  t.previous_fence::float8 AS previous_fence, t.takeover, NULL::float8 AS lease_remaining_ms,
  NULL::int AS status, NULL::boolean AS replayable, NULL::bytea[] AS headers, NULL::bytea AS body
  -- [limited]
  , NULL::float8 AS retry_after_ms
  -- [/limited]
FROM taken t
UNION ALL
-- [limited]
SELECT 'scope_full', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, f.retry_after_ms
FROM refused f
UNION ALL
-- [/limited]
SELECT
  CASE
    WHEN CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
      <= c.now OR r.state = 'released' THEN 'stale'
    WHEN r.fingerprint <> $3::text THEN 'mismatch'
    WHEN r.state = 'completed' THEN 'replay'
    -- A resent begin of the owner: the same answer again, nothing changed.
    WHEN r.token = $4::text THEN 'acquired'
    WHEN r.lease_until <= c.now THEN 'stale'
    ELSE 'in_progress'
  END,
  r.v::int, r.state, r.fence::float8, r.previous_fence::float8, r.takeover,
  greatest(0, ceil(extract(epoch FROM r.lease_until - c.now) * 1000))::float8,
  r.status::int, r.replayable, r.headers, r.body
  -- [limited]
  , NULL
  -- [/limited]
FROM {{table}} r, c
WHERE r.key = $2::text AND NOT EXISTS (SELECT 1 FROM taken)
  -- [limited]
  AND NOT EXISTS (SELECT 1 FROM refused)
  -- [/limited]
