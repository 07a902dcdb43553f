/** The PostgreSQL store: one SQL statement per operation, over the user's `pg` Pool. */

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { IdempotencyConfigError, IdempotencyStoreError } from '../../core/errors.js'
import type {
  BeginInput,
  BeginResult,
  ClockOffset,
  CompleteInput,
  DeleteResult,
  ExtendInput,
  RecordState,
  ReleaseInput,
  Store,
  StoredRecord,
  StoredResponse,
} from '../../core/store.js'

/**
 * What the store needs from `pg`: a `Pool`, or a `Client` that nothing else uses. Never a client inside
 * your own transaction: the record would roll back with your work, and your open transaction would
 * hold the record's row lock, blocking every duplicate request until it ends.
 */
export interface PgQueryable {
  query(config: PgQueryConfig): Promise<{ readonly rows: readonly unknown[] }>
}

/**
 * One statement with its parameters. `name`, when set, makes it a named prepared statement: `pg` parses it once per
 * connection and reuses it (see `preparedStatements`). A wrapper that drops `name` sends it unnamed, which works too.
 */
export interface PgQueryConfig {
  readonly text: string
  readonly values: readonly unknown[]
  readonly name?: string
}

/** Where the records live; both names are validated once and always quoted. */
export interface PostgresTableOptions {
  /** An existing schema; default `public`. */
  readonly schema?: string
  /** Default `idempotency_records`. */
  readonly table?: string
}

/** Options of {@link PostgresStore}. */
export interface PostgresStoreOptions extends PostgresTableOptions {
  /** A `pg.Pool` (a small dedicated one is best: a store outage then cannot starve your app's queries). */
  readonly pool: PgQueryable
  /** Test-only milliseconds added to the server's clock in every statement; 0 in production. */
  readonly clockOffset?: ClockOffset
  /**
   * Most live records one scope (tenant) may hold, tombstones included; past it a new key of that scope is
   * refused (`scope_full`: 429 from the adapters) while its existing keys keep working. Default: no limit,
   * and begin's statement then counts nothing.
   *
   * Not exact under concurrency: begin counts the scope's records in its one statement, under READ
   * COMMITTED, and parallel begins of new keys in one scope do not see each other's uncommitted rows. A
   * scope can therefore pass the limit by at most the number of its begins running at the same moment
   * (each saw fewer than the limit); once they commit, its new keys are refused until enough records
   * expire. Exactness would need a lock per scope, that is a transaction and more round trips per begin.
   *
   * A record begun by a store without this option carries no scope and is not counted, so give every
   * store on the table the same limit. On a record with a scope, the heartbeat (extend) also moves the
   * indexed `expires_at`, so it is no longer a HOT update.
   */
  readonly maxRecordsPerScope?: number
  /**
   * Send each operation as a named prepared statement, parsed and planned once per connection; default true.
   * PostgreSQL plans an unnamed statement on every call, and for begin's statement that planning is most of the
   * call (behind the benchmark's Express route, names doubled the requests served; docs/BENCHMARKS.md).
   *
   * Names are derived from the statement's text, so the same name always means the same statement, whatever
   * process or store prepared it. A pooler that cannot carry named statements (PgBouncer before 1.21 in
   * transaction mode, or 1.21+ with `max_prepared_statements = 0`) refuses them before they run: the store then
   * sends that call again unnamed, stays unnamed for good, and calls `onWarning` once. Set false to never name them.
   */
  readonly preparedStatements?: boolean
  /** Receives the one warning above, when a pooler refuses named statements; default `process.emitWarning`. */
  readonly onWarning?: (message: string) => void
}

/** Options of {@link PostgresStore.sweep}. */
export interface SweepOptions {
  /** Rows deleted per statement; default 500. */
  readonly batchSize?: number
  /** Stop after this many statements even if more rows expired; default no limit. */
  readonly maxBatches?: number
}

const FORMAT_VERSION = 1
/** maxRecordsPerScope is bound as an `int` parameter. */
const MAX_INT4 = 2 ** 31 - 1
const DEFAULT_SCHEMA = 'public'
const DEFAULT_TABLE = 'idempotency_records'
const DEFAULT_SWEEP_BATCH = 500
// PostgreSQL truncates identifiers longer than 63 bytes, which would silently alias two names.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
// Serialization failures and deadlocks roll the statement back, and every write is keyed by the
// token, so running it again is safe (design-review S-PG-2).
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01'])
const MAX_ATTEMPTS = 4
// Zero rows (or a stale one) from begin means a concurrent begin committed after this statement's
// snapshot; the next run sees it. More than a few in a row means the key is being churned.
const MAX_BEGIN_RUNS = 5
// A named statement the server does not have (26000), has under that name already (42P05), or can no longer run as
// planned because the table changed under it (0A000, "cached plan must not change result type"). Each is raised
// before the statement runs, so sending it again unnamed is safe.
const PREPARED_REFUSED = new Set(['26000', '42P05', '0A000'])

function loadSql(name: string): string {
  return readFileSync(new URL(`./sql/${name}.sql`, import.meta.url), 'utf8')
}

/**
 * A statement without its comment lines: they are for readers of the file, not for the wire. With
 * `limited` false, the lines between `-- [limited]` and `-- [/limited]` go too.
 */
function loadStatement(name: string, limited = false): string {
  const text = loadSql(name)
  const chosen = limited ? text : text.replace(/^[ \t]*-- \[limited\]\n[\s\S]*?^[ \t]*-- \[\/limited\]$\n?/gm, '')
  return chosen
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n')
    .trim()
}

const SQL = {
  begin: loadStatement('begin'),
  beginLimited: loadStatement('begin', true),
  complete: loadStatement('complete'),
  release: loadStatement('release'),
  extend: loadStatement('extend'),
  get: loadStatement('get'),
  delete: loadStatement('delete'),
  sweep: loadStatement('sweep'),
  // Kept whole: users read it in their own migration tools.
  migration: loadSql('migration'),
}

type Statements = { readonly [K in keyof typeof SQL]: string }

/** An operation's statement and the name it is prepared under. */
interface Statement {
  readonly text: string
  readonly name: string
}

/** The name a statement is prepared under: the operation, then a digest of its text (under 63 bytes). */
function preparedName(operation: string, text: string): string {
  return `idempotency_kit_${operation}_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`
}

function identifier(value: string | undefined, fallback: string, what: string): string {
  const name = value ?? fallback
  if (!IDENTIFIER.test(name)) {
    throw new IdempotencyConfigError(`PostgreSQL ${what} name ${JSON.stringify(name)} must match ${IDENTIFIER.source}`)
  }
  return `"${name}"`
}

/** Validates the names once and fills them into every statement; nothing else is ever interpolated. */
function render(options: PostgresTableOptions): Statements {
  const schema = identifier(options.schema, DEFAULT_SCHEMA, 'schema')
  const table = identifier(options.table, DEFAULT_TABLE, 'table')
  const index = identifier(`${options.table ?? DEFAULT_TABLE}_expires_at`, '', 'index')
  // Shorter than the expiry index's name, so it adds no limit of its own on the table's name.
  const scopeIndex = identifier(`${options.table ?? DEFAULT_TABLE}_scope`, '', 'index')
  const fill = (sql: string): string =>
    sql
      .replaceAll('{{table}}', `${schema}.${table}`)
      .replaceAll('{{index}}', index)
      .replaceAll('{{scope_index}}', scopeIndex)
  return {
    begin: fill(SQL.begin),
    beginLimited: fill(SQL.beginLimited),
    complete: fill(SQL.complete),
    release: fill(SQL.release),
    extend: fill(SQL.extend),
    get: fill(SQL.get),
    delete: fill(SQL.delete),
    sweep: fill(SQL.sweep),
    migration: fill(SQL.migration),
  }
}

/**
 * The migration that creates the table and its indexes (or brings an earlier version's table up to date),
 * for your own migration tool.
 *
 * @example
 * await fs.writeFile('migrations/001_idempotency.sql', migrationSql({ schema: 'app' }))
 */
export function migrationSql(options: PostgresTableOptions = {}): string {
  return render(options).migration
}

/**
 * Creates the table and its indexes if they do not exist, and adds the columns an earlier version's table
 * lacks (the schema must exist).
 *
 * @example
 * await migrate(pool, { schema: 'app' })
 */
export async function migrate(pool: PgQueryable, options: PostgresTableOptions = {}): Promise<void> {
  const text = render(options).migration
  try {
    // No parameters: the simple protocol, which runs the several statements of the file at once.
    await pool.query({ text, values: [] })
  } catch (error) {
    // Two processes migrating at once: IF NOT EXISTS does not stop the loser's catalog insert from
    // colliding with the winner's (unique violation, duplicate table or row type). The second run
    // sees the table.
    const code = sqlState(error)
    if (code !== '23505' && code !== '42P07' && code !== '42710') throw error
    await pool.query({ text, values: [] })
  }
}

/**
 * An idempotency `Store` on PostgreSQL 13+: every operation is one schema-qualified statement (a named prepared
 * one unless `preparedStatements` is false) that reads `clock_timestamp()` once, so deadlines follow the server's
 * clock.
 *
 * @example
 * const pool = new pg.Pool({ connectionString, max: 10, connectionTimeoutMillis: 2000, query_timeout: 3000 })
 * await migrate(pool)
 * const store = new PostgresStore({ pool })
 */
export class PostgresStore implements Store {
  readonly #pool: PgQueryable
  readonly #sql: { readonly [K in Exclude<keyof Statements, 'migration'>]: Statement }
  readonly #clockOffset: ClockOffset
  readonly #maxRecordsPerScope: number | null
  /** Whether statements go out named; false for good once a pooler refused a name. */
  #prepared: boolean
  readonly #warn: (message: string) => void

  constructor(options: PostgresStoreOptions) {
    if (typeof options.pool?.query !== 'function') {
      throw new IdempotencyConfigError('PostgresStore needs a pg Pool (or an idle Client) as `pool`')
    }
    const limit = options.maxRecordsPerScope
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_INT4)) {
      throw new IdempotencyConfigError(`maxRecordsPerScope must be a positive integer, got ${limit}`)
    }
    this.#pool = options.pool
    const sql = render(options)
    const statement = (operation: string, text: string): Statement => ({ text, name: preparedName(operation, text) })
    this.#sql = {
      begin: statement('begin', sql.begin),
      beginLimited: statement('begin', sql.beginLimited),
      complete: statement('complete', sql.complete),
      release: statement('release', sql.release),
      extend: statement('extend', sql.extend),
      get: statement('get', sql.get),
      delete: statement('delete', sql.delete),
      sweep: statement('sweep', sql.sweep),
    }
    this.#clockOffset = options.clockOffset ?? (() => 0)
    this.#maxRecordsPerScope = limit ?? null
    this.#prepared = options.preparedStatements ?? true
    this.#warn =
      options.onWarning ?? ((message) => process.emitWarning(message, { code: 'IDEMPOTENCY_POSTGRES_UNNAMED' }))
  }

  async begin(input: BeginInput): Promise<BeginResult> {
    const limit = this.#maxRecordsPerScope
    const values = [input.key, input.fingerprint, input.token, input.leaseMs, input.retentionMs]
    const statement = limit === null ? this.#sql.begin : this.#sql.beginLimited
    if (limit !== null) values.push(input.scope, limit)
    for (let run = 0; run < MAX_BEGIN_RUNS; run++) {
      const row = (await this.#query('begin', statement, values))[0]
      if (row === undefined) continue
      const outcome = field(row, 'outcome', isString)
      // Not a record: nothing under the key was read or written.
      if (outcome === 'scope_full') return { kind: 'scope_full', retryAfterMs: field(row, 'retry_after_ms', isCount) }
      checkVersion(row)
      field(row, 'state', isState)
      if (outcome === 'stale') continue
      switch (outcome) {
        case 'acquired':
          return {
            kind: 'acquired',
            fence: field(row, 'fence', isCount),
            takeover: field(row, 'takeover', isBoolean),
            previousFence: field(row, 'previous_fence', isCount),
          }
        case 'replay':
          return { kind: 'replay', response: decodeResponse(row) }
        case 'in_progress':
          return { kind: 'in_progress', leaseRemainingMs: field(row, 'lease_remaining_ms', isCount) }
        case 'mismatch':
          return { kind: 'mismatch' }
        default:
          throw undecodable(`begin answered an unknown outcome ${JSON.stringify(outcome)}`)
      }
    }
    throw new IdempotencyStoreError(
      'unavailable',
      `PostgreSQL begin found the record changing under it ${MAX_BEGIN_RUNS} times in a row`,
    )
  }

  async complete(input: CompleteInput): Promise<boolean> {
    const { response } = input
    const headers = response.headers.map(([name, value]) => [latin1(name), latin1(value)])
    const body = Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength)
    const values = [input.key, input.token, input.retentionMs, response.status, response.replayable, headers, body]
    return this.#write('complete', this.#sql.complete, values)
  }

  async release(input: ReleaseInput): Promise<boolean> {
    const values = [input.key, input.token, input.retentionMs]
    return this.#write('release', this.#sql.release, values)
  }

  async extend(input: ExtendInput): Promise<boolean> {
    const values = [input.key, input.token, input.leaseMs, input.retentionMs]
    return this.#write('extend', this.#sql.extend, values)
  }

  async get(key: string): Promise<StoredRecord | null> {
    const row = (await this.#query('get', this.#sql.get, [key]))[0]
    if (row === undefined) return null
    checkVersion(row)
    const state = field(row, 'state', isState)
    return {
      state,
      fence: field(row, 'fence', isCount),
      fingerprint: field(row, 'fingerprint', isString),
      token: field(row, 'token', isString),
      leaseDeadline: field(row, 'lease_deadline_ms', isFiniteNumber),
      expiresAt: field(row, 'expires_at_ms', isFiniteNumber),
      response: state === 'completed' ? decodeResponse(row) : null,
    }
  }

  async delete(key: string, options: { readonly force?: boolean } = {}): Promise<DeleteResult> {
    const values = [key, options.force === true]
    const row = (await this.#query('delete', this.#sql.delete, values))[0]
    const outcome = row === undefined ? undefined : field(row, 'outcome', isString)
    switch (outcome) {
      case 'deleted':
      case 'absent':
      case 'refused_in_progress':
        return outcome
      default:
        throw undecodable(`delete answered an unknown outcome ${JSON.stringify(outcome)}`)
    }
  }

  /**
   * Deletes expired rows in batches of `batchSize` (one statement each, `SKIP LOCKED`, expiry rechecked
   * under the lock) until a batch comes back short; returns how many rows it deleted. Operations
   * already treat expired rows as absent: sweeping only reclaims space. Run it from a timer or a job.
   */
  async sweep(options: SweepOptions = {}): Promise<number> {
    const batchSize = options.batchSize ?? DEFAULT_SWEEP_BATCH
    const maxBatches = options.maxBatches ?? Number.POSITIVE_INFINITY
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new IdempotencyConfigError(`sweep batchSize must be a positive integer, got ${batchSize}`)
    }
    if (!(maxBatches >= 1)) {
      throw new IdempotencyConfigError(`sweep maxBatches must be at least 1, got ${maxBatches}`)
    }
    let total = 0
    for (let batch = 0; batch < maxBatches; batch++) {
      const row = (await this.#query('sweep', this.#sql.sweep, [batchSize]))[0]
      const deleted = row === undefined ? 0 : field(row, 'deleted', isCount)
      total += deleted
      if (deleted < batchSize) break
    }
    return total
  }

  /** Runs a token-guarded write: whether it applied, unless the key holds a record in another format. */
  async #write(operation: string, statement: Statement, values: readonly unknown[]): Promise<boolean> {
    const row = (await this.#query(operation, statement, values))[0]
    if (row === undefined) throw undecodable(`${operation} answered no row`)
    if (row.foreign_version !== null) checkVersion({ v: row.foreign_version })
    return field(row, 'done', isBoolean)
  }

  /**
   * Runs one statement with the clock offset as `$1`, again on a serialization failure or deadlock, and again
   * unnamed when a pooler refused its name.
   */
  async #query(
    operation: string,
    statement: Statement,
    values: readonly unknown[],
  ): Promise<readonly Record<string, unknown>[]> {
    const { text, name } = statement
    // Counts the runs that failed with a serialization failure or deadlock; a refused name is not one.
    let attempt = 1
    for (;;) {
      const named = this.#prepared
      try {
        const args = [this.#clockOffset(), ...values]
        const result = await this.#pool.query(named ? { name, text, values: args } : { text, values: args })
        return result.rows as readonly Record<string, unknown>[]
      } catch (error) {
        const code = sqlState(error)
        if (named && code !== undefined && PREPARED_REFUSED.has(code)) {
          // Not run: the server refused the name before executing. Another call may have turned names off already.
          if (this.#prepared) {
            this.#prepared = false
            this.#warn(
              `idempotency-kit: PostgreSQL refused the prepared statement ${name} (SQLSTATE ${code}); the store ` +
                'sends its statements unnamed from now on, which costs a plan per call. Behind PgBouncer, set ' +
                'max_prepared_statements (1.21+), or pass preparedStatements: false to skip this first try.',
            )
          }
          continue
        }
        if (attempt < MAX_ATTEMPTS && code !== undefined && RETRYABLE_SQLSTATES.has(code)) {
          // A little jitter so the same contenders do not collide again in lockstep.
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 4 * attempt))
          attempt += 1
          continue
        }
        throw storeError(operation, error)
      }
    }
  }
}

function latin1(value: string): Buffer {
  return Buffer.from(value, 'latin1')
}

function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  return typeof error.code === 'string' ? error.code : undefined
}

function storeError(operation: string, error: unknown): IdempotencyStoreError {
  const code = sqlState(error)
  const detail = error instanceof Error ? error.message : String(error)
  // pg's own query_timeout rejects with this message; 57014 is a server statement_timeout.
  const timedOut = code === '57014' || detail === 'Query read timeout'
  const reason = timedOut ? 'timeout' : code === '53100' ? 'full' : 'unavailable'
  const hint =
    code === '42P01'
      ? ' (no table: run migrate() or migrationSql() first)'
      : code === '42703'
        ? ' (a column is missing: run migrate() or migrationSql() again, this version adds one)'
        : ''
  return new IdempotencyStoreError(reason, `PostgreSQL ${operation} failed: ${detail}${hint}`, {
    cause: error,
  })
}

function undecodable(message: string): IdempotencyStoreError {
  return new IdempotencyStoreError('undecodable', `PostgreSQL record: ${message}`)
}

function checkVersion(row: Record<string, unknown>): void {
  if (row.v !== FORMAT_VERSION) {
    throw undecodable(`format version ${String(row.v)} is not ${FORMAT_VERSION} (a newer deploy?)`)
  }
}

function field<T>(row: Record<string, unknown>, name: string, is: (value: unknown) => value is T): T {
  const value = row[name]
  if (!is(value)) throw undecodable(`column ${name} holds ${String(value)}`)
  return value
}

function isString(value: unknown): value is string {
  return typeof value === 'string'
}

function isBoolean(value: unknown): value is boolean {
  return typeof value === 'boolean'
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

function isState(value: unknown): value is RecordState {
  return value === 'in_progress' || value === 'completed' || value === 'released'
}

function isStatus(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 100 && (value as number) <= 599
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array
}

function decodeResponse(row: Record<string, unknown>): StoredResponse {
  const pairs = field(row, 'headers', Array.isArray)
  const headers = pairs.map((pair: unknown): readonly [string, string] => {
    if (!Array.isArray(pair) || pair.length !== 2 || !isBytes(pair[0]) || !isBytes(pair[1])) {
      throw undecodable('a header is not a [name, value] pair of bytes')
    }
    return [Buffer.from(pair[0]).toString('latin1'), Buffer.from(pair[1]).toString('latin1')]
  })
  return {
    status: field(row, 'status', isStatus),
    headers,
    // A copy, so the caller holds a plain Uint8Array and not a view of the driver's buffer.
    body: new Uint8Array(field(row, 'body', isBytes)),
    replayable: field(row, 'replayable', isBoolean),
  }
}
