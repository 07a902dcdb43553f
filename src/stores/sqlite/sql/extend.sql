-- extend's write: pushes the lease deadline (and with it the expiry) of the live in_progress record
-- :token owns, whether or not its deadline already passed, as long as nobody took it over.
-- Parameters: :key, :token, :now, :leaseDeadline (now + lease), :expiresAt (deadline + retention).
-- Result: none; changes = 1 when the lease was pushed, 0 otherwise.
UPDATE {{table}}
   SET lease_deadline = :leaseDeadline,
       expires_at = :expiresAt
 WHERE key = :key
   AND token = :token
   AND state = 'in_progress'
   AND expires_at > :now
