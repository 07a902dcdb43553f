-- release: turn the record the token owns into a tombstone that keeps the fence (nothing happened).
-- Parameters: $1 clock_offset_ms float8, $2 key text, $3 token text, $4 retention_ms float8.
-- Returns one row: done bool, true when the token owned the record or already released it, false
--   otherwise; foreign_version int, the format version of a live row this code cannot read
--   (else null).
--
-- The tombstone keeps the token (a resent release answers true, and matches here even when it
-- races the first one) and the fence, so the next holder's fence is still greater. It drops the
-- fingerprint: a released key accepts a different request.
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
done AS (
  UPDATE {{table}} AS r SET
    state = 'released',
    fingerprint = '',
    expires_at = CASE WHEN r.state = 'released' THEN r.expires_at
      ELSE c.now + $4::float8 * interval '1 millisecond' END,
    retention = CASE WHEN r.state = 'released' THEN r.retention
      ELSE $4::float8 * interval '1 millisecond' END
  FROM c
  WHERE r.key = $2::text
    AND r.v = 1
    AND r.token = $3::text
    AND r.state IN ('in_progress', 'released')
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
