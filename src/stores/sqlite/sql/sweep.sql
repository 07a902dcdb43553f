-- One bounded batch of sweep: deletes up to :batchSize expired rows. `rowid IN (SELECT … LIMIT)`
-- because DELETE … LIMIT needs SQLITE_ENABLE_UPDATE_DELETE_LIMIT, which most builds lack.
-- Parameters: :now (epoch ms: host clock plus offset), :batchSize (rows).
-- Result: none; changes = number of rows removed.
DELETE FROM {{table}}
 WHERE rowid IN (SELECT rowid
                   FROM {{table}}
                  WHERE expires_at <= :now
                  LIMIT :batchSize)
