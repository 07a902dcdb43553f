-- extend: push the lease deadline of the record the token owns (the heartbeat).
-- Parameters: $1 clock_offset_ms float8, $2 key text, $3 token text, $4 lease_ms float8,
--   $5 retention_ms float8.
-- Returns one row: done bool, true when the token owns the record, or completed it (a no-op: the
--   heartbeat may land after complete); false when the lease was lost;
--   foreign_version int, the format version of a live row this code cannot read (else null).
--
-- Only unindexed columns change, so the heartbeat can be a HOT update: expires_at keeps the value
-- begin gave it, and the sweep rechecks lease_until + retention before it deletes an in_progress
-- row. Except on a row with a scope (a store with maxRecordsPerScope wrote it): there expires_at
-- follows lease_until + retention, since begin counts the scope's live records by it, and such a
-- heartbeat is an ordinary update.
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
done AS (
  UPDATE {{table}} AS r SET
    lease_until = CASE WHEN r.state = 'in_progress'
      THEN c.now + $4::float8 * interval '1 millisecond' ELSE r.lease_until END,
    retention = CASE WHEN r.state = 'in_progress'
      THEN $5::float8 * interval '1 millisecond' ELSE r.retention END,
    expires_at = CASE WHEN r.state = 'in_progress' AND r.scope IS NOT NULL
      THEN c.now + $4::float8 * interval '1 millisecond' + $5::float8 * interval '1 millisecond'
      ELSE r.expires_at END
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
