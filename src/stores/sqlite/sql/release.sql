-- release's write: turns the live in_progress record :token owns into a tombstone that keeps
-- the fence (so the next holder's fence continues) and forgets the fingerprint (a released key
-- accepts a different request).
-- Parameters: :key, :token, :now, :expiresAt (now + retention).
-- Result: none; changes = 1 when the record was released, 0 otherwise.
UPDATE {{table}}
   SET state = 'released',
       fingerprint = '',
       completed_at = :now,
       expires_at = :expiresAt
 WHERE key = :key
   AND token = :token
   AND state = 'in_progress'
   AND expires_at > :now
