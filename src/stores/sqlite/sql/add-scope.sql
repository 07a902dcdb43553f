-- Adds the scope column to a table made before it existed; migrate() runs it, in the same IMMEDIATE
-- transaction as migration.sql, only when the table exists without the column (SQLite has no
-- ADD COLUMN IF NOT EXISTS). Existing rows get NULL: records no store counts against a scope.
-- Parameters: none. Results: none.
ALTER TABLE {{table}} ADD COLUMN scope TEXT
