-- Creates the idempotency record table, its expiry index and its per-scope index; safe to run on every
-- start. A table made before the scope column existed gets it first (add-scope.sql, run by migrate()).
-- Placeholders (validated and substituted once, at construction): {{table}}, {{expires_index}},
--   {{scope_index}}.
-- Parameters: none. Results: none.

CREATE TABLE IF NOT EXISTS {{table}} (
  -- The engine's storage key: hex SHA-256 of scope and key.
  key             TEXT     NOT NULL PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 512),
  -- Record format version; a version this code does not know is a store error, never "no record".
  v               INTEGER  NOT NULL,
  -- 'in_progress' | 'completed' | 'released' (a tombstone that keeps the fence).
  state           TEXT     NOT NULL,
  -- Versioned request fingerprint; empty for a tombstone.
  fingerprint     TEXT     NOT NULL,
  -- The owner's random token (made by the engine) and the fence that orders holders.
  token           TEXT     NOT NULL,
  fence           INTEGER  NOT NULL,
  -- 1 when the current holder took over an expired lease, so a resent begin answers the same.
  takeover        INTEGER  NOT NULL,
  -- Times in epoch milliseconds, host clock plus the clock offset.
  lease_deadline  INTEGER  NOT NULL,
  created_at      INTEGER  NOT NULL,
  completed_at    INTEGER,
  -- Past this instant the row is absent to every operation, swept or not.
  expires_at      INTEGER  NOT NULL,
  -- The stored response, once completed: status, headers as ordered latin1 pairs, body bytes.
  status          INTEGER,
  headers         BLOB,
  body            BLOB,
  replayable      INTEGER,
  -- Hex SHA-256 of the tenant scope, written only by a store with maxRecordsPerScope (else NULL), which
  -- counts a scope's live records by it. Last, because older tables get it by ALTER TABLE.
  scope           TEXT
) STRICT;

CREATE INDEX IF NOT EXISTS {{expires_index}} ON {{table}} (expires_at);

-- Partial: a store without the limit writes no scope, and then pays nothing for this index.
CREATE INDEX IF NOT EXISTS {{scope_index}} ON {{table}} (scope, expires_at) WHERE scope IS NOT NULL;
