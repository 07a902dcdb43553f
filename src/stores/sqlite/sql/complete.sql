-- complete's write: stores the response on the live in_progress record :token owns.
-- Parameters: :key, :token, :now, :expiresAt (now + retention), :status, :headers (BLOB of
--   length-prefixed latin1 pairs), :body (BLOB), :replayable (0 or 1).
-- Result: none; changes = 1 when the record was completed, 0 otherwise.
UPDATE {{table}}
   SET state = 'completed',
       completed_at = :now,
       expires_at = :expiresAt,
       status = :status,
       headers = :headers,
       body = :body,
       replayable = :replayable
 WHERE key = :key
   AND token = :token
   AND state = 'in_progress'
   AND expires_at > :now
