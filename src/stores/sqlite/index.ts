// Public entry of `idempotency-kit/sqlite`: the SQLite store over better-sqlite3.

export type {
  OpenSqliteStoreOptions,
  SqliteDatabase,
  SqliteStatement,
  SqliteStoreOptions,
  SweepOptions,
} from './sqlite-store.js'
export { openSqliteStore, SqliteStore } from './sqlite-store.js'
