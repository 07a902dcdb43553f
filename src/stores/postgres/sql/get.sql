-- get: the live record under a key, for inspection.
-- Parameters: $1 clock_offset_ms float8, $2 key text.
-- Returns at most one row: v int, state text, fence float8, fingerprint text, token text,
--   lease_deadline_ms float8, expires_at_ms float8 (epoch ms, the store's clock), status int,
--   replayable bool, headers bytea[][], body bytea.
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
live AS (
  SELECT r.*,
    CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
      AS until
  FROM {{table}} r
  WHERE r.key = $2::text
)
SELECT l.v::int, l.state, l.fence::float8, l.fingerprint, l.token,
  round(extract(epoch FROM l.lease_until) * 1000)::float8 AS lease_deadline_ms,
  round(extract(epoch FROM l.until) * 1000)::float8 AS expires_at_ms,
  l.status::int, l.replayable, l.headers, l.body
FROM live l, c
WHERE l.until > c.now
