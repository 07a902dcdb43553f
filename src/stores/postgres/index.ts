/** `idempotency-kit/postgres`: the PostgreSQL store, its migration and its options. */

export type {
  PgQueryable,
  PgQueryConfig,
  PostgresStoreOptions,
  PostgresTableOptions,
  SweepOptions,
} from './postgres-store.js'
export { migrate, migrationSql, PostgresStore } from './postgres-store.js'
