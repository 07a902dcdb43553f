// The SQLite store: one IMMEDIATE transaction per operation, lock waits retried on a timer.

import { readFileSync } from 'node:fs'
import { IdempotencyConfigError, IdempotencyError, IdempotencyStoreError } from '../../core/errors.js'
import type {
  BeginInput,
  BeginResult,
  ClockOffset,
  CompleteInput,
  DeleteResult,
  ExtendInput,
  ReleaseInput,
  Store,
  StoredRecord,
  StoredResponse,
} from '../../core/store.js'
import { planBegin, planWrite } from '../../core/transitions.js'
import { decodeHeaders, encodeHeaders } from './header-codec.js'

/** A prepared statement: the part of better-sqlite3's `Statement` the store uses. */
export interface SqliteStatement {
  run(params: Readonly<Record<string, unknown>>): { readonly changes: number }
  get(params: Readonly<Record<string, unknown>>): unknown
  safeIntegers(toggle?: boolean): unknown
}

/** The part of a better-sqlite3 12 `Database` the store uses: pass your `new Database(path)`. */
export interface SqliteDatabase {
  readonly open: boolean
  prepare(source: string): SqliteStatement
  exec(source: string): unknown
  pragma(source: string, options?: { readonly simple?: boolean }): unknown
  transaction<A, R>(fn: (arg: A) => R): { immediate(arg: A): R }
  close(): unknown
}

/** Options of `new SqliteStore(…)`. */
export interface SqliteStoreOptions {
  /** An open better-sqlite3 database; the store never closes it. WAL mode is recommended. */
  readonly database: SqliteDatabase
  /** Table of the records, a plain SQL identifier; default `idempotency_keys`. */
  readonly table?: string
  /** Test-only milliseconds added to the host clock (0 in production). */
  readonly clockOffset?: ClockOffset
  /**
   * How long an operation keeps retrying a locked database (SQLITE_BUSY), asynchronously, before it
   * throws `IdempotencyStoreError('timeout')`; default 2000.
   */
  readonly busyRetryMs?: number
  /**
   * Most live records one scope (tenant) may hold, tombstones included; past it a new key of that scope is
   * refused (`scope_full`: 429 from the adapters) while its existing keys keep working. Exact, even across
   * processes: the count and the insert are one IMMEDIATE transaction. Records begun by a store without
   * this option carry no scope and are not counted, so give every store on the table the same limit.
   * Default: no limit, and no count on `begin`.
   */
  readonly maxRecordsPerScope?: number
}

/** Options of `openSqliteStore(path, …)`. */
export interface OpenSqliteStoreOptions extends Omit<SqliteStoreOptions, 'database'> {
  /**
   * `NORMAL` (default) survives a process crash; in WAL mode a power loss may roll back the last
   * commits, which can let a retry run again. `FULL` syncs every commit and survives both.
   */
  readonly synchronous?: 'NORMAL' | 'FULL'
}

/** Options of `store.sweep(…)`. */
export interface SweepOptions {
  /** Rows deleted per transaction, so the write lock is never held long; default 1000. */
  readonly batchSize?: number
}

const DEFAULT_TABLE = 'idempotency_keys'
const DEFAULT_BUSY_RETRY_MS = 2000
const DEFAULT_SWEEP_BATCH = 1000
/** Format of the rows this code writes; another `v` is undecodable (a newer deploy wrote it). */
const FORMAT_VERSION = 1
/**
 * better-sqlite3 waits for a lock SYNCHRONOUSLY, blocking the event loop (its default is 5 s),
 * so the store waits at most this long per attempt and retries on a timer in between.
 */
const BUSY_TIMEOUT_MS = 25
/** A user's connection with a longer busy timeout gets `BUSY_TIMEOUT_MS` during store calls. */
const MAX_BUSY_TIMEOUT_MS = 50
const MAX_RETRY_PAUSE_MS = 50

const SQL_FILES = {
  migration: new URL('./sql/migration.sql', import.meta.url),
  addScope: new URL('./sql/add-scope.sql', import.meta.url),
  countScope: new URL('./sql/count-scope.sql', import.meta.url),
  select: new URL('./sql/select.sql', import.meta.url),
  begin: new URL('./sql/begin.sql', import.meta.url),
  complete: new URL('./sql/complete.sql', import.meta.url),
  release: new URL('./sql/release.sql', import.meta.url),
  extend: new URL('./sql/extend.sql', import.meta.url),
  delete: new URL('./sql/delete.sql', import.meta.url),
  sweep: new URL('./sql/sweep.sql', import.meta.url),
} as const

type SqlName = keyof typeof SQL_FILES
type StatementName = Exclude<SqlName, 'migration' | 'addScope'>
type Statements = Readonly<Record<StatementName, SqliteStatement>>

const sqlTexts = new Map<SqlName, string>()

/** Reads each SQL file once per process, on first use (constructors do no I/O). */
function sqlText(name: SqlName): string {
  let text = sqlTexts.get(name)
  if (text === undefined) {
    text = readFileSync(SQL_FILES[name], 'utf8')
    sqlTexts.set(name, text)
  }
  return text
}

/** A record as read inside a transaction; the response is there exactly when completed. */
type LiveRecord = {
  readonly fingerprint: string
  readonly token: string
  readonly fence: number
  readonly takeover: boolean
  readonly leaseDeadline: number
  readonly expiresAt: number
} & (
  | { readonly state: 'in_progress' | 'released'; readonly response: null }
  | { readonly state: 'completed'; readonly response: StoredResponse }
)

/** Stores the engine opened through `openSqliteStore`: their database is theirs to close. */
const ownsDatabase = new WeakSet<SqliteStore>()

/**
 * Idempotency records in one SQLite table, shared safely by the processes of one host.
 *
 * Every operation is one `BEGIN IMMEDIATE` transaction: it takes the write lock before reading, so
 * its read and its write see no other writer in between. Time is the host's wall clock plus the
 * clock offset, passed to SQL as a parameter. A locked database is retried on a timer, never by a
 * long synchronous wait, so other requests and heartbeats keep running.
 *
 * @example
 * const store = new SqliteStore({ database: new Database('idempotency.db') })
 * await store.migrate()
 */
export class SqliteStore implements Store {
  readonly #db: SqliteDatabase
  readonly #table: string
  readonly #expiresIndex: string
  readonly #scopeIndex: string
  readonly #clockOffset: ClockOffset
  readonly #busyRetryMs: number
  readonly #maxRecordsPerScope: number | undefined
  #statements: Statements | null = null
  #runImmediate: { immediate(body: () => unknown): unknown } | null = null
  #closed = false

  constructor(options: SqliteStoreOptions) {
    const table = options.table ?? DEFAULT_TABLE
    // Identifiers cannot be bound as parameters, so the name is checked here once and then quoted.
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table) || /^sqlite_/i.test(table)) {
      throw new IdempotencyConfigError(
        `SQLite table name ${JSON.stringify(table)} must be a letter or _ then up to 62 letters, digits or _, not starting with sqlite_`,
      )
    }
    const busyRetryMs = options.busyRetryMs ?? DEFAULT_BUSY_RETRY_MS
    if (!Number.isFinite(busyRetryMs) || busyRetryMs < 0) {
      throw new IdempotencyConfigError(`busyRetryMs must be a finite number ≥ 0, got ${busyRetryMs}`)
    }
    const limit = options.maxRecordsPerScope
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) {
      throw new IdempotencyConfigError(`maxRecordsPerScope must be a positive integer, got ${limit}`)
    }
    this.#db = options.database
    this.#table = `"${table}"`
    this.#expiresIndex = `"${table}_expires_at"`
    this.#scopeIndex = `"${table}_scope"`
    this.#maxRecordsPerScope = limit
    this.#clockOffset = options.clockOffset ?? (() => 0)
    this.#busyRetryMs = busyRetryMs
  }

  /**
   * Creates the table and its indexes if they do not exist (sql/migration.sql), first adding the scope
   * column to a table made by an earlier version (sql/add-scope.sql). One IMMEDIATE transaction, so
   * processes migrating one file at once never both add the column.
   */
  async migrate(): Promise<void> {
    await this.#retry(() =>
      this.#withShortBusyTimeout(() =>
        this.#db
          .transaction(() => {
            const columns = this.#db.pragma(`table_info(${this.#table})`) as ReadonlyArray<{ readonly name: unknown }>
            if (columns.length > 0 && !columns.some((column) => column.name === 'scope')) {
              this.#db.exec(this.#sql('addScope'))
            }
            this.#db.exec(this.#sql('migration'))
          })
          .immediate(undefined),
      ),
    )
  }

  async begin(input: BeginInput): Promise<BeginResult> {
    const leaseMs = duration('leaseMs', input.leaseMs)
    const retentionMs = duration('retentionMs', input.retentionMs)
    const limit = this.#maxRecordsPerScope
    return this.#transact((statements, now): BeginResult => {
      const record = this.#read(statements, input.key, now)
      // Only a begin that would create a record is counted: a key the scope already holds is always answered.
      if (record === null && limit !== undefined) {
        const row = statements.countScope.get({ scope: input.scope, now, limit }) as { held: number; first: number }
        if (row.held >= limit) return { kind: 'scope_full', retryAfterMs: Math.max(0, row.first - now) }
      }
      const plan = planBegin(record, input, now)
      if (plan.kind === 'answer') return plan.result
      const leaseDeadline = now + leaseMs
      statements.begin.run({
        key: input.key,
        v: FORMAT_VERSION,
        fingerprint: input.fingerprint,
        token: input.token,
        fence: plan.fence,
        takeover: plan.takeover ? 1 : 0,
        leaseDeadline,
        now,
        expiresAt: leaseDeadline + retentionMs,
        scope: limit === undefined ? null : input.scope,
      })
      return { kind: 'acquired', fence: plan.fence, takeover: plan.takeover, previousFence: plan.previousFence }
    })
  }

  async complete(input: CompleteInput): Promise<boolean> {
    const retentionMs = duration('retentionMs', input.retentionMs)
    const { status, body, replayable } = input.response
    // Encoded before the lock is taken: pure work has no business inside the transaction.
    const headers = encodeHeaders(input.response.headers)
    return this.#transact((statements, now) => {
      const plan = planWrite('complete', this.#read(statements, input.key, now), input.token)
      if (plan.kind === 'answer') return plan.result
      const params = { key: input.key, token: input.token, now, expiresAt: now + retentionMs }
      const response = { status, headers, body, replayable: replayable ? 1 : 0 }
      return statements.complete.run({ ...params, ...response }).changes === 1
    })
  }

  async release(input: ReleaseInput): Promise<boolean> {
    const retentionMs = duration('retentionMs', input.retentionMs)
    return this.#transact((statements, now) => {
      const plan = planWrite('release', this.#read(statements, input.key, now), input.token)
      if (plan.kind === 'answer') return plan.result
      const params = { key: input.key, token: input.token, now, expiresAt: now + retentionMs }
      return statements.release.run(params).changes === 1
    })
  }

  async extend(input: ExtendInput): Promise<boolean> {
    const leaseMs = duration('leaseMs', input.leaseMs)
    const retentionMs = duration('retentionMs', input.retentionMs)
    return this.#transact((statements, now) => {
      const plan = planWrite('extend', this.#read(statements, input.key, now), input.token)
      if (plan.kind === 'answer') return plan.result
      const leaseDeadline = now + leaseMs
      const params = { key: input.key, token: input.token, now, leaseDeadline }
      return statements.extend.run({ ...params, expiresAt: leaseDeadline + retentionMs }).changes === 1
    })
  }

  async get(key: string): Promise<StoredRecord | null> {
    // One SELECT is atomic on its own: no write lock needed to look.
    const record = await this.#retry(() =>
      this.#withShortBusyTimeout(() => this.#read(this.#prepared(), key, this.#now())),
    )
    if (record === null) return null
    const { takeover: _takeover, ...visible } = record
    return visible
  }

  async delete(key: string, options?: { readonly force?: boolean }): Promise<DeleteResult> {
    const force = options?.force === true
    return this.#transact((statements, now): DeleteResult => {
      const record = this.#read(statements, key, now)
      if (record === null) return 'absent'
      // Purging a running record lets a retry run while the holder still does: only when forced.
      if (record.state === 'in_progress' && !force) return 'refused_in_progress'
      statements.delete.run({ key })
      return 'deleted'
    })
  }

  /**
   * Deletes expired rows in batches of `batchSize` (one short transaction each, yielding to the
   * event loop in between), then truncates the WAL, which constant readers would otherwise let grow.
   * Returns how many rows were deleted.
   */
  async sweep(options?: SweepOptions): Promise<number> {
    const batchSize = options?.batchSize ?? DEFAULT_SWEEP_BATCH
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new IdempotencyConfigError(`sweep batchSize must be an integer ≥ 1, got ${batchSize}`)
    }
    let deleted = 0
    for (;;) {
      const removed = await this.#transact((statements, now) => statements.sweep.run({ now, batchSize }).changes)
      deleted += removed
      if (removed < batchSize) break
      await new Promise((resolve) => setImmediate(resolve))
    }
    await this.#retry(() => this.#withShortBusyTimeout(() => this.#db.pragma('wal_checkpoint(TRUNCATE)')))
    return deleted
  }

  /** Stops the store; closes the database only if `openSqliteStore` opened it. Safe to repeat. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#statements = null
    this.#runImmediate = null
    if (ownsDatabase.has(this) && this.#db.open) this.#db.close()
  }

  #now(): number {
    return Math.floor(Date.now() + this.#clockOffset())
  }

  #sql(name: SqlName): string {
    return sqlText(name)
      .replaceAll('{{table}}', this.#table)
      .replaceAll('{{expires_index}}', this.#expiresIndex)
      .replaceAll('{{scope_index}}', this.#scopeIndex)
  }

  #prepared(): Statements {
    if (this.#statements !== null) return this.#statements
    const prepare = (name: StatementName): SqliteStatement => {
      let statement: SqliteStatement
      try {
        statement = this.#db.prepare(this.#sql(name))
      } catch (error) {
        if (sqliteCode(error) === 'SQLITE_ERROR') {
          throw new IdempotencyConfigError(
            `SQLite table ${this.#table} is missing or has another shape: run store.migrate() first`,
            { cause: error },
          )
        }
        throw error
      }
      // Epoch milliseconds fit a double; a database with safe integers on would hand back bigints.
      statement.safeIntegers(false)
      return statement
    }
    this.#statements = {
      select: prepare('select'),
      begin: prepare('begin'),
      complete: prepare('complete'),
      release: prepare('release'),
      extend: prepare('extend'),
      delete: prepare('delete'),
      sweep: prepare('sweep'),
      countScope: prepare('countScope'),
    }
    return this.#statements
  }

  #read(statements: Statements, key: string, now: number): LiveRecord | null {
    const row = statements.select.get({ key, now })
    return row === undefined ? null : decodeRecord(row, key)
  }

  /** Runs `body` in one IMMEDIATE transaction, with `now` read once the write lock is held. */
  #transact<T>(body: (statements: Statements, now: number) => T): Promise<T> {
    return this.#retry(() =>
      this.#withShortBusyTimeout(() => {
        const statements = this.#prepared()
        this.#runImmediate ??= this.#db.transaction((run: () => unknown) => run())
        return this.#runImmediate.immediate(() => body(statements, this.#now())) as T
      }),
    )
  }

  /** Retries SQLITE_BUSY on a timer until `busyRetryMs`; turns driver faults into store errors. */
  #retry<T>(attempt: () => T): Promise<T> {
    return retryWhileBusy(attempt, this.#busyRetryMs, () => {
      if (this.#closed) return new IdempotencyStoreError('closing', 'The SQLite store is closed')
      if (!this.#db.open) return new IdempotencyStoreError('unavailable', 'The SQLite database is closed')
      return null
    })
  }

  /**
   * Lowers the connection's busy timeout for the length of `fn` when the user's is long
   * (better-sqlite3 defaults to 5 s of synchronous waiting), and puts it back for the user's queries.
   */
  #withShortBusyTimeout<T>(fn: () => T): T {
    if (ownsDatabase.has(this)) return fn()
    const setting = this.#db.pragma('busy_timeout', { simple: true })
    // A connection with safe integers on answers pragmas in bigints too.
    const previous = typeof setting === 'bigint' ? Number(setting) : setting
    if (typeof previous !== 'number' || previous <= MAX_BUSY_TIMEOUT_MS) return fn()
    this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    try {
      return fn()
    } finally {
      this.#db.pragma(`busy_timeout = ${Math.trunc(previous)}`)
    }
  }
}

/**
 * Opens (or creates) the SQLite file at `path` in WAL mode with a short busy timeout, migrates it
 * and returns its store; `store.close()` closes the database. One host only: WAL shares memory between
 * processes, so never put the file on a network filesystem.
 *
 * @example
 * const store = await openSqliteStore('data/idempotency.db', { synchronous: 'FULL' })
 */
export async function openSqliteStore(path: string, options: OpenSqliteStoreOptions = {}): Promise<SqliteStore> {
  const synchronous = options.synchronous ?? 'NORMAL'
  if (synchronous !== 'NORMAL' && synchronous !== 'FULL') {
    throw new IdempotencyConfigError(`synchronous must be 'NORMAL' or 'FULL', got ${String(synchronous)}`)
  }
  let Database: typeof import('better-sqlite3')
  try {
    Database = (await import('better-sqlite3')).default
  } catch (error) {
    throw new IdempotencyConfigError('openSqliteStore needs better-sqlite3 12: npm i better-sqlite3', {
      cause: error,
    })
  }
  const { synchronous: _synchronous, ...storeOptions } = options
  const database = new Database(path, { timeout: BUSY_TIMEOUT_MS })
  try {
    const store = new SqliteStore({ ...storeOptions, database })
    ownsDatabase.add(store)
    const budget = options.busyRetryMs ?? DEFAULT_BUSY_RETRY_MS
    // Switching to WAL needs a moment of exclusive access, so another process may make it busy.
    await retryWhileBusy(
      () => database.pragma('journal_mode = WAL'),
      budget,
      () => null,
    )
    database.pragma(`synchronous = ${synchronous}`)
    await store.migrate()
    return store
  } catch (error) {
    database.close()
    throw error
  }
}

/** Calls `attempt` until it does not fail with SQLITE_BUSY, pausing on a timer, for `budgetMs`. */
async function retryWhileBusy<T>(
  attempt: () => T,
  budgetMs: number,
  unusable: () => IdempotencyStoreError | null,
): Promise<T> {
  const started = performance.now()
  let pause = 1
  for (;;) {
    const stop = unusable()
    if (stop !== null) throw stop
    let busy: unknown
    try {
      return attempt()
    } catch (error) {
      if (!isBusy(error)) throw toStoreError(error)
      busy = error
    }
    const left = budgetMs - (performance.now() - started)
    if (left <= 0) {
      throw new IdempotencyStoreError(
        'timeout',
        `The SQLite database stayed locked by another connection for ${budgetMs} ms`,
        { cause: busy },
      )
    }
    // Full jitter so processes polling one lock do not retry in step.
    await new Promise((resolve) => setTimeout(resolve, Math.min(left, pause * (0.5 + Math.random()))))
    pause = Math.min(pause * 2, MAX_RETRY_PAUSE_MS)
  }
}

function sqliteCode(error: unknown): string | null {
  if (typeof error !== 'object' || error === null || !('code' in error)) return null
  const { code } = error
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null
}

function isBusy(error: unknown): boolean {
  const code = sqliteCode(error)
  return code === 'SQLITE_BUSY' || code?.startsWith('SQLITE_BUSY_') === true
}

/** Our own errors pass through; driver faults become 503-shaped store errors; bugs stay bugs. */
function toStoreError(error: unknown): unknown {
  if (error instanceof IdempotencyError) return error
  const code = sqliteCode(error)
  if (code === null) return error
  if (code === 'SQLITE_FULL') {
    return new IdempotencyStoreError('full', 'The SQLite database or its disk is full', { cause: error })
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new IdempotencyStoreError('undecodable', 'The SQLite file is corrupt', { cause: error })
  }
  return new IdempotencyStoreError('unavailable', `SQLite failed: ${code}`, { cause: error })
}

function duration(name: string, ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${ms}`)
  return Math.ceil(ms)
}

/** Checks every column of a row; anything unexpected is a store error, never "no record". */
function decodeRecord(row: unknown, key: string): LiveRecord {
  const fail = (why: string): IdempotencyStoreError =>
    new IdempotencyStoreError('undecodable', `SQLite record ${key} cannot be read: ${why}`)
  const r = row as Readonly<Record<string, unknown>>
  if (r.v !== FORMAT_VERSION) throw fail(`unknown format version ${String(r.v)}`)
  const { fingerprint, token, fence, takeover, lease_deadline, expires_at } = r
  if (typeof fingerprint !== 'string' || typeof token !== 'string') throw fail('fingerprint or token')
  if (!Number.isSafeInteger(fence) || (takeover !== 0 && takeover !== 1)) throw fail('fence or takeover')
  if (typeof lease_deadline !== 'number' || typeof expires_at !== 'number') throw fail('times')
  const base = {
    fingerprint,
    token,
    fence: fence as number,
    takeover: takeover === 1,
    leaseDeadline: lease_deadline,
    expiresAt: expires_at,
  }
  const state = r.state
  switch (state) {
    case 'in_progress':
    case 'released':
      return { ...base, state, response: null }
    case 'completed': {
      const { status, headers, body, replayable } = r
      if (!Number.isInteger(status) || (status as number) < 100 || (status as number) > 599) {
        throw fail('status')
      }
      if (!(headers instanceof Uint8Array) || !(body instanceof Uint8Array)) throw fail('headers or body')
      if (replayable !== 0 && replayable !== 1) throw fail('replayable')
      const pairs = decodeHeaders(headers)
      if (pairs === null) throw fail('headers')
      // A copy, so callers get a plain Uint8Array that owns its bytes.
      const response = {
        status: status as number,
        headers: pairs,
        body: new Uint8Array(body),
        replayable: replayable === 1,
      }
      return { ...base, state, response }
    }
    default:
      throw fail(`unknown state ${String(state)}`)
  }
}
