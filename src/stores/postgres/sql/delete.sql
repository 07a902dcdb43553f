-- delete: purge the record under a key; an in_progress one only when forced.
-- Parameters: $1 clock_offset_ms float8, $2 key text, $3 force bool.
-- Returns one row: outcome text, 'deleted' | 'absent' | 'refused_in_progress'.
--
-- A row past its expiry is absent: it is removed all the same, and the answer is 'absent'.
WITH c AS MATERIALIZED (
  SELECT clock_timestamp() + $1::float8 * interval '1 millisecond' AS now
),
gone AS (
  DELETE FROM {{table}} AS r
  USING c
  WHERE r.key = $2::text
    AND ($3::boolean OR r.state <> 'in_progress' OR r.lease_until + r.retention <= c.now)
  RETURNING CASE WHEN r.state = 'in_progress' THEN r.lease_until + r.retention ELSE r.expires_at END
    > c.now AS was_live
)
SELECT CASE
  WHEN EXISTS (SELECT 1 FROM gone WHERE was_live) THEN 'deleted'
  WHEN EXISTS (SELECT 1 FROM gone) THEN 'absent'
  WHEN NOT $3::boolean AND EXISTS (
    SELECT 1 FROM {{table}} r, c
    WHERE r.key = $2::text AND r.state = 'in_progress' AND r.lease_until + r.retention > c.now
  ) THEN 'refused_in_progress'
  ELSE 'absent'
END AS outcome
