-- Reads the live record under a key: a row past its expiry is absent, swept or not.
-- Parameters: :key (text), :now (epoch ms: host clock plus offset).
-- Result: no row, or one row of the record's columns.
SELECT v, state, fingerprint, token, fence, takeover, lease_deadline, expires_at,
       status, headers, body, replayable
  FROM {{table}}
 WHERE key = :key
   AND expires_at > :now
