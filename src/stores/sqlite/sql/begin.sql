-- begin's write: a new in_progress record owned by :token, replacing an absent, expired or
-- released row, or an in_progress one whose lease passed (takeover). The caller decided which in
-- the same IMMEDIATE transaction, after reading the row with select.sql.
-- Parameters: :key, :v (format version), :fingerprint, :token, :fence (previous fence + 1),
--   :takeover (0 or 1), :leaseDeadline, :now, :expiresAt (lease deadline + retention), all ms,
--   :scope (hex SHA-256 of the tenant scope on a store with maxRecordsPerScope, else NULL, which
--   leaves a row's scope as it was: a key's scope never changes, since the key hashes it).
-- Result: none (one row written).
INSERT INTO {{table}} (key, v, state, fingerprint, token, fence, takeover, lease_deadline,
                       created_at, completed_at, expires_at, status, headers, body, replayable, scope)
VALUES (:key, :v, 'in_progress', :fingerprint, :token, :fence, :takeover, :leaseDeadline,
        :now, NULL, :expiresAt, NULL, NULL, NULL, NULL, :scope)
ON CONFLICT (key) DO UPDATE
   SET v = excluded.v,
       state = excluded.state,
       fingerprint = excluded.fingerprint,
       token = excluded.token,
       fence = excluded.fence,
       takeover = excluded.takeover,
       lease_deadline = excluded.lease_deadline,
       created_at = excluded.created_at,
       completed_at = NULL,
       expires_at = excluded.expires_at,
       status = NULL,
       headers = NULL,
       body = NULL,
       replayable = NULL,
       scope = coalesce(excluded.scope, scope)
