-- How many live records a scope holds, counting no further than the limit, and the earliest expiry
-- among them: begin runs it, in its IMMEDIATE transaction, before creating a record, and only on a
-- store with maxRecordsPerScope. Walks the {{scope_index}} index in expiry order, so it reads at most
-- :limit entries whatever the scope holds.
-- Parameters: :scope (hex SHA-256 of the tenant scope), :now (epoch ms: host clock plus offset),
--   :limit (maxRecordsPerScope).
-- Result: one row: held (0 to :limit), first (the earliest expires_at of the scope's live records,
--   NULL when it holds none).
SELECT count(*) AS held, min(expires_at) AS first
  FROM (SELECT expires_at
          FROM {{table}}
         WHERE scope = :scope
           AND expires_at > :now
         ORDER BY expires_at
         LIMIT :limit)
