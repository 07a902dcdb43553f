-- complete: store the response iff the token owns the record, whatever its lease deadline.
-- Parameters: $1 clock_offset_ms float8, $2 key text, $3 token text, $4 retention_ms float8,
--   $5 status int, $6 replayable bool, $7 headers bytea[][] ([name, value] pairs), $8 body bytea.
-- Returns one row: done bool, true when the token owns the record or already completed it, false
--   otherwise; foreign_version int, the format version of a live row this code cannot read
--   (else null).
--
-- A record the token already completed is matched too and left as it was (the CASEs), so a resent
-- complete answers true even when it races the first one: under READ COMMITTED the UPDATE rechecks
-- its WHERE on the row version the first one committed, where a separate SELECT would read a stale
-- snapshot and answer false.
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
done AS (
  UPDATE {{table}} AS r SET
    state = 'completed',
    completed_at = CASE WHEN r.state = 'completed' THEN r.completed_at ELSE c.now END,
    expires_at = CASE WHEN r.state = 'completed' THEN r.expires_at
      ELSE c.now + $4::float8 * interval '1 millisecond' END,
    retention = CASE WHEN r.state = 'completed' THEN r.retention
      ELSE $4::float8 * interval '1 millisecond' END,
    status = CASE WHEN r.state = 'completed' THEN r.status ELSE $5::smallint END,
    replayable = CASE WHEN r.state = 'completed' THEN r.replayable ELSE $6::boolean END,
    headers = CASE WHEN r.state = 'completed' THEN r.headers ELSE $7::bytea[] END,
    body = CASE WHEN r.state = 'completed' THEN r.body ELSE $8::bytea END
  FROM c
  WHERE r.key = $2::text
    AND r.v = 1
    AND r.token = $3::text
    AND r.state IN ('in_progress', 'completed')
    AND CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
      > c.now
  RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM done) AS done,
  -- A live row in another format version is not "no record": the caller must hear it is unreadable.
  (SELECT r.v::int FROM {{table}} r, c
    WHERE r.key = $2::text AND r.v <> 1
      AND CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
        > c.now) AS foreign_version
