-- sweep: delete one bounded batch of expired rows.
-- Parameters: $1 clock_offset_ms float8, $2 batch_size int.
-- Returns one row: deleted int, the number of rows this batch removed.
--
-- SKIP LOCKED lets concurrent sweepers and live traffic pass each other. The expiry is checked
-- again on the row the DELETE locks: between the candidate scan and the delete, a begin may have
-- taken over the expired row and made it live again (design-review S-PG-6). The candidate scan
-- walks the expires_at index; the full expiry test then skips in_progress rows a heartbeat kept.
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
gone AS (
  DELETE FROM {{table}} AS r
  USING c
  WHERE r.key IN (
      SELECT x.key FROM {{table}} x, c
      WHERE x.expires_at <= c.now
        AND CASE WHEN x.state = 'in_progress' THEN x.lease_until + x.retention ELSE x.expires_at END
          <= c.now
      ORDER BY x.expires_at
      LIMIT $2::int
      FOR UPDATE OF x SKIP LOCKED
    )
    AND CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
      <= c.now
  RETURNING 1
)
SELECT count(*)::int AS deleted FROM gone
