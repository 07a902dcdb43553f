-- migration: the idempotency record table, its sweep index and its per-scope index. Safe to run
-- again (IF NOT EXISTS), and on a table an earlier version made (it adds the scope column). The table
-- and index names below were validated and quoted when this text was made. The schema must already
-- exist.
--
-- One row per key. Format version 1 (column v); a reader that meets another version refuses the
-- row.
--   state          in_progress | completed | released (released: a tombstone that keeps the fence)
--   fingerprint    the request fingerprint; '' on a tombstone
--   token          the owner token (random, minted by the engine)
--   fence          +1 on every acquisition, kept across release
--   previous_fence, takeover   what the acquisition answered, so a resent begin answers the same
--   lease_until    the lease deadline; NOT indexed, so the heartbeat (extend) is a HOT update
--   retention      how long the row outlives its lease (in_progress) or its completion/release
--   expires_at     indexed, for the sweep. completed/released rows expire at expires_at; an
--                  in_progress row lives until lease_until + retention, which extend pushes without
--                  touching this column (unless the row has a scope), so expires_at is a lower bound
--                  that the sweep rechecks
--   status, replayable, headers, body   the stored response once completed; headers is a
--                  two-dimensional bytea array of [name, value] pairs in order, latin1 bytes
--   scope          hex SHA-256 of the tenant scope, written only by a store with maxRecordsPerScope
--                  (else NULL). On a row with a scope, extend moves expires_at too, so that it is
--                  exact and begin counts the scope's live records on the (scope, expires_at) index
-- Never UNLOGGED: an unlogged table is emptied after a crash, and every key would run again.
CREATE TABLE IF NOT EXISTS {{table}} (
  key            text        PRIMARY KEY,
  v              smallint    NOT NULL,
  state          text        NOT NULL,
  fingerprint    text        NOT NULL,
  token          text        NOT NULL,
  fence          bigint      NOT NULL,
  previous_fence bigint      NOT NULL,
  takeover       boolean     NOT NULL,
  lease_until    timestamptz NOT NULL,
  retention      interval    NOT NULL,
  expires_at     timestamptz NOT NULL,
  created_at     timestamptz NOT NULL,
  completed_at   timestamptz,
  status         smallint,
  replayable     boolean,
  headers        bytea[],
  body           bytea,
  scope          text
) WITH (
  -- Room on each page for the heartbeat's new row versions (HOT updates), and vacuum that keeps up
  -- with a table whose rows are all short-lived.
  fillfactor = 85,
  autovacuum_vacuum_scale_factor = 0.02
);

-- A table made before the scope column gets it here. Looked up first: ALTER TABLE takes an ACCESS
-- EXCLUSIVE lock on the table even when IF NOT EXISTS then skips, and this runs on every start.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute
                  WHERE attrelid = '{{table}}'::regclass AND attname = 'scope' AND NOT attisdropped) THEN
    ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS scope text;
  END IF;
END
$$;

CREATE INDEX IF NOT EXISTS {{index}} ON {{table}} (expires_at);

-- Partial: a store without the limit writes no scope, and then pays nothing for this index. On a
-- large existing table, creating it blocks writes while it is built: create it beforehand with
-- CREATE INDEX CONCURRENTLY under this name to avoid that.
CREATE INDEX IF NOT EXISTS {{scope_index}} ON {{table}} (scope, expires_at) WHERE scope IS NOT NULL;
