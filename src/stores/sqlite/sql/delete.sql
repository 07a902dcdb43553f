-- delete's write: purges the row under a key, live or expired.
-- Parameters: :key.
-- Result: none; changes = number of rows removed (0 or 1).
DELETE FROM {{table}}
 WHERE key = :key
