// The PostgreSQL store on the local server: the store contract, then races, sweep, names, round trips.
import { readdirSync, readFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import {
  type BeginResult,
  type ClockOffset,
  IdempotencyConfigError,
  IdempotencyStoreError,
  type StoredResponse,
} from 'idempotency-kit'
import { migrate, migrationSql, type PgQueryable, type PgQueryConfig, PostgresStore } from 'idempotency-kit/postgres'
import { describeStoreContract, randomStorageKey, randomToken } from 'idempotency-kit/testing'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresTestSchema, type PostgresTestSchema } from '../support/postgres.js'

const LEASE = 10_000
const RETENTION = 60_000
const SCOPE = 'scope'
const FP = 'v1:fingerprint'

let db: PostgresTestSchema
beforeAll(async () => {
  db = await createPostgresTestSchema()
  await migrate(db.pool, { schema: db.schema })
})
afterAll(async () => {
  await db?.close()
})

/** A live row in a format version this code does not know, as a newer deploy might write. */
async function writeForeignRow(key: string, table = 'idempotency_records'): Promise<void> {
  await db.pool.query(
    `INSERT INTO "${db.schema}"."${table}" (key, v, state, fingerprint, token, fence, previous_fence,
       takeover, lease_until, retention, expires_at, created_at)
     VALUES ($1, 99, 'in_progress', 'v9:x', 'tok', 1, 0, false, clock_timestamp() + interval '1 hour',
       interval '1 hour', clock_timestamp() + interval '2 hours', clock_timestamp())
     ON CONFLICT (key) DO UPDATE SET v = 99`,
    [key],
  )
}

describeStoreContract(
  {
    name: 'postgres',
    create: async (clockOffset) => new PostgresStore({ pool: db.pool, schema: db.schema, clockOffset }),
    createLimited: async (clockOffset, maxRecordsPerScope) =>
      new PostgresStore({ pool: db.pool, schema: db.schema, clockOffset, maxRecordsPerScope }),
    corrupt: async (_store, key) => writeForeignRow(key),
  },
  // begin counts under READ COMMITTED: parallel begins in one scope can pass the limit (see maxRecordsPerScope).
  { scopeLimitExactUnderConcurrency: false },
)

/** A real pool that records every statement it is given and every error it answers. */
function counting(pool: PgQueryable) {
  const calls: PgQueryConfig[] = []
  const errors: unknown[] = []
  const queryable: PgQueryable = {
    query(config) {
      calls.push(config)
      return pool.query(config).catch((error: unknown) => {
        errors.push(error)
        throw error
      })
    },
  }
  return { queryable, calls, errors }
}

function store(
  pool: PgQueryable,
  clockOffset?: ClockOffset,
  table?: string,
  more: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {},
): PostgresStore {
  return new PostgresStore({
    pool,
    schema: db.schema,
    ...(clockOffset === undefined ? {} : { clockOffset }),
    ...(table === undefined ? {} : { table }),
    ...more,
  })
}

const begin = (s: PostgresStore, key: string, token: string, leaseMs = LEASE) =>
  s.begin({ key, scope: SCOPE, fingerprint: FP, token, leaseMs, retentionMs: RETENTION })

const RESPONSE: StoredResponse = {
  status: 201,
  headers: [
    ['x-latin1', 'caf\u00e9 \u0080\u00ff'],
    ['x-repeated', 'one'],
    ['x-repeated', 'two'],
  ],
  body: Uint8Array.from({ length: 256 }, (_, i) => 255 - i),
  replayable: true,
}

function sqlState(error: unknown): unknown {
  return typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined
}

describe('postgres: the begin race under READ COMMITTED', () => {
  it('runs begin again when its snapshot missed the row a concurrent begin committed', async () => {
    // The first begin inserts inside a transaction held open, so the 200 below block on the unique
    // index with snapshots that cannot see its row: each first run returns no row (S-PG-1).
    const blocker = await db.pool.connect()
    try {
      await blocker.query('BEGIN')
      const key = randomStorageKey()
      const first = await begin(store(blocker), key, randomToken())
      expect(first).toEqual({ kind: 'acquired', fence: 1, takeover: false, previousFence: 0 })
      const racers = db.newPool({ max: 20 })
      const { queryable, calls } = counting(racers)
      const s = store(queryable)
      const racing = Promise.all(Array.from({ length: 200 }, () => begin(s, key, randomToken())))
      racing.catch(() => {})
      await waitFor(async () => (await lockWaiters()) >= 20)
      await blocker.query('COMMIT')
      const results = await racing
      expect(results.filter((r) => r.kind !== 'in_progress')).toEqual([])
      expect(calls.length).toBeGreaterThanOrEqual(200 + 20)
      await racers.end()
    } finally {
      await blocker.query('ROLLBACK').catch(() => {})
      blocker.release()
    }
  })
})

describe('postgres: the begin race under REPEATABLE READ', () => {
  // Under REPEATABLE READ a begin that meets a row committed after its snapshot fails with 40001
  // (design-review S-PG-2); the store must run it again rather than answer 503.
  let rrPool: pg.Pool
  beforeAll(() => {
    rrPool = db.newPool({
      max: 20,
      options: '-c default_transaction_isolation=repeatable\\ read',
    })
  })
  afterAll(async () => {
    await rrPool.end()
  })
  const repeatableReadPool = (): PgQueryable => rrPool

  it('runs its statements at REPEATABLE READ (the premise of this block)', async () => {
    const pool = repeatableReadPool()
    const { rows } = await pool.query({ text: 'SHOW default_transaction_isolation', values: [] })
    expect(rows).toEqual([{ default_transaction_isolation: 'repeatable read' }])
  })

  it('lets exactly one of 200 parallel begins acquire a new key, with no error', async () => {
    const { queryable, errors } = counting(repeatableReadPool())
    const s = store(queryable)
    const key = randomStorageKey()
    const tokens = Array.from({ length: 200 }, randomToken)
    const results = await Promise.all(tokens.map((token) => begin(s, key, token)))
    expect(results.filter((r) => r.kind === 'acquired')).toEqual([
      { kind: 'acquired', fence: 1, takeover: false, previousFence: 0 },
    ])
    expect(results.filter((r) => r.kind === 'in_progress')).toHaveLength(199)
    const winner = tokens[results.findIndex((r) => r.kind === 'acquired')]
    expect((await s.get(key))?.token).toBe(winner)
    // Any error the driver saw was a serialization failure the store absorbed.
    expect(errors.filter((e) => sqlState(e) !== '40001')).toEqual([])
  })

  it('absorbs the serialization failures of 200 begins that waited on a row updated under them', async () => {
    let offset = 0
    const { queryable, errors } = counting(repeatableReadPool())
    const s = store(queryable, () => offset)
    const key = randomStorageKey()
    await begin(s, key, randomToken())
    offset += LEASE + 1_000
    // Hold the row's lock in an open transaction and change it, so every begin below blocks on the
    // lock with a snapshot taken before the change commits: each first run must fail with 40001.
    const blocker = await db.pool.connect()
    try {
      await blocker.query('BEGIN')
      await blocker.query(`UPDATE "${db.schema}".idempotency_records SET created_at = created_at WHERE key = $1`, [key])
      const tokens = Array.from({ length: 200 }, randomToken)
      const racing = Promise.all(tokens.map((token) => begin(s, key, token)))
      // Observed below; this only keeps an early failure from surfacing as an unhandled rejection.
      racing.catch(() => {})
      await waitFor(async () => (await lockWaiters()) >= 20)
      await blocker.query('COMMIT')
      const results = await racing
      expect(results.filter((r) => r.kind === 'acquired')).toEqual([
        { kind: 'acquired', fence: 2, takeover: true, previousFence: 1 },
      ])
      expect(results.filter((r) => r.kind === 'in_progress')).toHaveLength(199)
      expect(errors.length).toBeGreaterThanOrEqual(20)
      expect(errors.filter((e) => sqlState(e) !== '40001')).toEqual([])
    } finally {
      await blocker.query('ROLLBACK').catch(() => {})
      blocker.release()
    }
  })
})

/** Statements on this run's table that wait for a lock (the begin text names the schema early). */
async function lockWaiters(): Promise<number> {
  const { rows } = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE wait_event_type = 'Lock' AND position($1 IN query) > 0`,
    [`"${db.schema}"."idempotency_records"`],
  )
  return (rows[0] as { n: number }).n
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await condition()) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error('condition not reached within 5 s')
}

describe('postgres: one statement per operation', () => {
  /** Runs every operation once on `s`; returns how many statements each sent. */
  async function everyOperation(s: PostgresStore, calls: readonly PgQueryConfig[]): Promise<Record<string, number>> {
    const key = randomStorageKey()
    const owner = randomToken()
    const counts: Record<string, number> = {}
    const count = async (name: string, operation: () => Promise<unknown>) => {
      const before = calls.length
      await operation()
      counts[name] = calls.length - before
    }
    await count('begin (acquire)', () => begin(s, key, owner))
    await count('begin (in progress)', () => begin(s, key, randomToken()))
    await count('extend', () => s.extend({ key, token: owner, leaseMs: LEASE, retentionMs: RETENTION }))
    await count('get', () => s.get(key))
    await count('complete', () => s.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION }))
    await count('begin (replay)', () => begin(s, key, randomToken()))
    await count('delete', () => s.delete(key))
    const other = randomStorageKey()
    await begin(s, other, owner)
    await count('release', () => s.release({ key: other, token: owner, retentionMs: RETENTION }))
    await count('sweep (one short batch)', () => s.sweep({ batchSize: 10_000 }))
    return counts
  }

  function expectSchemaQualifiedServerClock(call: PgQueryConfig): void {
    expect(call.text).toContain(`"${db.schema}"."idempotency_records"`)
    // The server's clock, read once per statement; never now(), frozen at the transaction's start.
    expect(call.text.match(/clock_timestamp\(\)/g)).toHaveLength(1)
    expect(call.text).not.toMatch(/\bnow\(\)/)
  }

  it('sends exactly one named, schema-qualified statement per operation, one name per statement text', async () => {
    const { queryable, calls } = counting(db.pool)
    const counts = await everyOperation(store(queryable), calls)

    expect(Object.values(counts).every((n) => n === 1)).toBe(true)
    expect(Object.keys(counts)).toHaveLength(9)
    const nameOf = new Map<string, string>()
    for (const call of calls) {
      expectSchemaQualifiedServerClock(call)
      expect(call.name).toMatch(/^idempotency_kit_(begin|complete|release|extend|get|delete|sweep)_[0-9a-f]{24}$/)
      expect(call.name?.length).toBeLessThan(64)
      expect(nameOf.get(call.text) ?? call.name).toBe(call.name)
      nameOf.set(call.text, call.name as string)
    }
    // Seven statements (begin, extend, get, complete, delete, release, sweep), seven names.
    expect(new Set(nameOf.values()).size).toBe(7)
    expect(nameOf.size).toBe(7)
  })

  it('sends them unnamed with preparedStatements: false', async () => {
    const { queryable, calls } = counting(db.pool)
    const counts = await everyOperation(store(queryable, undefined, undefined, { preparedStatements: false }), calls)

    expect(Object.values(counts).every((n) => n === 1)).toBe(true)
    for (const call of calls) {
      expectSchemaQualifiedServerClock(call)
      expect(call).not.toHaveProperty('name')
    }
  })

  it('costs 2 statements for a first request and 1 for a replay', async () => {
    const { queryable, calls } = counting(db.pool)
    const s = store(queryable)
    const key = randomStorageKey()
    const owner = randomToken()
    await begin(s, key, owner)
    await s.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })
    expect(calls).toHaveLength(2)
    const replay = await begin(s, key, randomToken())
    expect(calls).toHaveLength(3)
    expect(replay.kind).toBe('replay')
  })
})

describe('postgres: named prepared statements', () => {
  /** A pool of one connection that stays open, so what this session has prepared can be read back. */
  const oneConnection = () => db.newPool({ max: 1, idleTimeoutMillis: 0 })

  async function preparedNames(pool: pg.Pool): Promise<string[]> {
    const result = await pool.query(
      "SELECT name FROM pg_prepared_statements WHERE name LIKE 'idempotency\\_kit\\_%' ORDER BY name",
    )
    return result.rows.map((row: { name: string }) => row.name)
  }

  /** begin, complete, then a replay of the same key, whose body must come back byte for byte. */
  async function firstThenReplay(s: PostgresStore): Promise<void> {
    const key = randomStorageKey()
    const owner = randomToken()
    expect((await begin(s, key, owner)).kind).toBe('acquired')
    expect(await s.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })).toBe(true)
    const replay = await begin(s, key, randomToken())
    expect(replay.kind).toBe('replay')
    if (replay.kind === 'replay')
      expect(Buffer.from(replay.response.body).equals(Buffer.from(RESPONSE.body))).toBe(true)
  }

  it('prepares begin and complete once on the connection and reuses them', async () => {
    const pool = oneConnection()
    const { queryable, calls } = counting(pool)
    const s = store(queryable)
    await firstThenReplay(s)
    await firstThenReplay(s)
    const names = new Set(calls.map((call) => call.name))
    expect(names.size).toBe(2)
    expect(await preparedNames(pool)).toEqual([...names].sort())
  })

  it('prepares nothing with preparedStatements: false', async () => {
    const pool = oneConnection()
    await firstThenReplay(store(pool, undefined, undefined, { preparedStatements: false }))
    expect(await preparedNames(pool)).toEqual([])
  })

  it('goes on unnamed, once warned, when the server lost the statements (SQLSTATE 26000)', async () => {
    // What a pooler without prepared statement support does: the next call lands where the name is unknown.
    const pool = oneConnection()
    const { queryable, calls, errors } = counting(pool)
    const warnings: string[] = []
    const s = store(queryable, undefined, undefined, { onWarning: (message) => warnings.push(message) })
    await firstThenReplay(s)
    expect(await preparedNames(pool)).toHaveLength(2)
    await pool.query('DEALLOCATE ALL')

    const sent = calls.length
    await firstThenReplay(s)
    await firstThenReplay(s)
    expect(errors.map(sqlState)).toEqual(['26000'])
    // The refused begin, sent again unnamed, then every later statement unnamed.
    expect(calls.slice(sent).map((call) => call.name !== undefined)).toEqual([
      true,
      false,
      false,
      false,
      false,
      false,
      false,
    ])
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('26000')
    expect(await preparedNames(pool)).toEqual([])
  })

  it('goes on unnamed, once warned, when the connection already has the name (SQLSTATE 42P05)', async () => {
    // A pooled server connection where another client prepared the same name: the Parse is refused.
    const first = counting(oneConnection())
    await firstThenReplay(store(first.queryable))
    const beginName = first.calls[0]?.name as string
    expect(beginName).toMatch(/^idempotency_kit_begin_/)

    const pool = oneConnection()
    await pool.query(`PREPARE "${beginName}" AS SELECT 1`)
    const { queryable, calls, errors } = counting(pool)
    const warnings: string[] = []
    await firstThenReplay(store(queryable, undefined, undefined, { onWarning: (message) => warnings.push(message) }))
    expect(errors.map(sqlState)).toEqual(['42P05'])
    expect(calls.map((call) => call.name)).toEqual([beginName, undefined, undefined, undefined])
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('42P05')
    // pg-pool replaced the connection that answered an error; on the new one the store prepared nothing.
    expect(await preparedNames(pool)).toEqual([])
  })
})

describe('postgres: storage', () => {
  it('keeps headers as ordered [name, value] byte pairs and the body as bytea', async () => {
    const s = store(db.pool)
    const key = randomStorageKey()
    const owner = randomToken()
    await begin(s, key, owner)
    await s.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })
    const { rows } = await db.pool.query(
      `SELECT v, array_dims(headers) AS dims, encode(headers[1][2], 'hex') AS latin1,
         headers[3][2] AS last, body FROM "${db.schema}".idempotency_records WHERE key = $1`,
      [key],
    )
    expect(rows[0]).toEqual({
      v: 1,
      dims: '[1:3][1:2]',
      latin1: Buffer.from('caf\u00e9 \u0080\u00ff', 'latin1').toString('hex'),
      last: Buffer.from('two'),
      body: Buffer.from(RESPONSE.body),
    })
  })

  it('refuses release and extend on a live row in another format version', async () => {
    const s = store(db.pool)
    const key = randomStorageKey()
    await writeForeignRow(key)
    await expect(s.release({ key, token: 'tok', retentionMs: RETENTION })).rejects.toMatchObject({
      reason: 'undecodable',
    })
    await expect(s.extend({ key, token: 'tok', leaseMs: LEASE, retentionMs: RETENTION })).rejects.toMatchObject({
      reason: 'undecodable',
    })
  })

  it('refuses a completed row whose headers are not pairs of bytes', async () => {
    const s = store(db.pool)
    const key = randomStorageKey()
    const owner = randomToken()
    await begin(s, key, owner)
    await s.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })
    await db.pool.query(`UPDATE "${db.schema}".idempotency_records SET headers = '{"\\\\x41"}' WHERE key = $1`, [key])
    await expect(s.get(key)).rejects.toBeInstanceOf(IdempotencyStoreError)
    await expect(begin(s, key, randomToken())).rejects.toMatchObject({ reason: 'undecodable' })
  })

  it('migrates idempotently: fillfactor, autovacuum, logged, and lease_until never indexed', async () => {
    await migrate(db.pool, { schema: db.schema })
    const { rows } = await db.pool.query(
      `SELECT c.relpersistence, c.reloptions,
         (SELECT array_agg(pg_get_indexdef(i.indexrelid) ORDER BY 1) FROM pg_index i
           WHERE i.indrelid = c.oid) AS indexes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = 'idempotency_records'`,
      [db.schema],
    )
    expect(rows[0].relpersistence).toBe('p')
    expect(rows[0].reloptions).toEqual(['fillfactor=85', 'autovacuum_vacuum_scale_factor=0.02'])
    const indexes = (rows[0].indexes as string[]).map((d) => d.replace(/^.* USING /, ''))
    expect(indexes.sort()).toEqual([
      'btree (expires_at)',
      'btree (key)',
      'btree (scope, expires_at) WHERE (scope IS NOT NULL)',
    ])
  })

  it('migrates from several processes at once (demo instances starting together)', async () => {
    // Without the retry in migrate(), concurrent CREATE TABLE IF NOT EXISTS collide in the catalog
    // (23505 on pg_type) in most rounds.
    for (let round = 0; round < 3; round++) {
      const table = `concurrent_${round}`
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, () => migrate(db.pool, { schema: db.schema, table })),
      )
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []))
      expect(failures).toEqual([])
    }
  })

  it('exports the migration as SQL text for other migration tools', () => {
    const sql = migrationSql({ schema: 'app', table: 'keys' })
    expect(sql).toContain('CREATE TABLE IF NOT EXISTS "app"."keys"')
    expect(sql).toContain('CREATE INDEX IF NOT EXISTS "keys_expires_at" ON "app"."keys" (expires_at)')
    expect(sql).toContain('CREATE INDEX IF NOT EXISTS "keys_scope" ON "app"."keys" (scope, expires_at)')
    expect(sql).not.toMatch(/\{\{|UNLOGGED\s+TABLE/)
  })
})

describe('postgres: sweep', () => {
  const TABLE = 'sweep_records'

  it('deletes only expired rows, in bounded batches, and counts them', async () => {
    await migrate(db.pool, { schema: db.schema, table: TABLE })
    let offset = 0
    const { queryable, calls } = counting(db.pool)
    const s = store(queryable, () => offset, TABLE)
    const retention = 1_000
    const input = (key: string, token: string, leaseMs: number) => ({
      key,
      scope: SCOPE,
      fingerprint: FP,
      token,
      leaseMs,
      retentionMs: retention,
    })
    // Five rows that will have expired: completed, released, crashed in progress.
    const expired = Array.from({ length: 5 }, randomStorageKey)
    for (const [i, key] of expired.entries()) {
      const token = randomToken()
      await s.begin(input(key, token, 1_000))
      if (i % 3 === 0) await s.complete({ key, token, response: RESPONSE, retentionMs: retention })
      if (i % 3 === 1) await s.release({ key, token, retentionMs: retention })
    }
    // Live at sweep time: one whose heartbeat pushed its lease past its indexed expires_at (only the
    // recheck keeps it), and one begun with a long lease.
    const extended = randomStorageKey()
    const owner = randomToken()
    await s.begin(input(extended, owner, 1_000))
    await s.extend({ ...input(extended, owner, 60_000) })
    const long = randomStorageKey()
    await s.begin(input(long, randomToken(), 60_000))

    offset += 10_000
    const before = calls.length
    expect(await s.sweep({ batchSize: 2 })).toBe(5)
    expect(calls.length - before).toBe(3)
    for (const call of calls.slice(before)) expect(call.values.at(-1)).toBe(2)

    const { rows } = await db.pool.query(`SELECT key FROM "${db.schema}"."${TABLE}" ORDER BY key`)
    expect(rows.map((r) => r.key)).toEqual([extended, long].sort())
    expect(await s.sweep({ batchSize: 2 })).toBe(0)
    expect((await s.get(extended))?.state).toBe('in_progress')
  })

  it('stops after maxBatches', async () => {
    await migrate(db.pool, { schema: db.schema, table: 'sweep_batches' })
    let offset = 0
    const s = store(db.pool, () => offset, 'sweep_batches')
    for (let i = 0; i < 4; i++) await begin(s, randomStorageKey(), randomToken(), 1)
    offset += LEASE + RETENTION + 1_000
    expect(await s.sweep({ batchSize: 1, maxBatches: 3 })).toBe(3)
    expect(await s.sweep({ batchSize: 1 })).toBe(1)
  })

  it('skips a row another transaction holds instead of waiting for it', async () => {
    const table = 'sweep_locked'
    await migrate(db.pool, { schema: db.schema, table })
    let offset = 0
    const s = store(db.pool, () => offset, table)
    const held = randomStorageKey()
    const free = randomStorageKey()
    await begin(s, held, randomToken(), 1)
    await begin(s, free, randomToken(), 1)
    offset += LEASE + RETENTION + 1_000
    const blocker = await db.pool.connect()
    try {
      await blocker.query('BEGIN')
      await blocker.query(`SELECT 1 FROM "${db.schema}"."${table}" WHERE key = $1 FOR UPDATE`, [held])
      // Without SKIP LOCKED this sweep would wait for the blocker, which only commits afterwards.
      expect(await s.sweep()).toBe(1)
      await blocker.query('COMMIT')
    } finally {
      blocker.release()
    }
    const { rows } = await db.pool.query(`SELECT key FROM "${db.schema}"."${table}"`)
    expect(rows).toEqual([{ key: held }])
    expect(await s.sweep()).toBe(1)
  })

  it('rejects a batch size that is not a positive integer', async () => {
    const s = store(db.pool)
    for (const batchSize of [0, -1, 1.5, Number.NaN]) {
      await expect(s.sweep({ batchSize })).rejects.toBeInstanceOf(IdempotencyConfigError)
    }
  })
})

describe('postgres: identifiers', () => {
  const bad = ['', 'a"b', 'a.b', 'a b', '1abc', 'drop table x;--', 'caf\u00e9', 'x'.repeat(64)]

  it('rejects bad schema and table names at construction, before any statement', () => {
    const { queryable, calls } = counting(db.pool)
    for (const name of bad) {
      expect(() => new PostgresStore({ pool: queryable, schema: name })).toThrow(IdempotencyConfigError)
      expect(() => new PostgresStore({ pool: queryable, table: name })).toThrow(IdempotencyConfigError)
      expect(() => migrationSql({ table: name })).toThrow(IdempotencyConfigError)
    }
    // The index name (table + "_expires_at") must fit in 63 bytes too.
    expect(() => new PostgresStore({ pool: queryable, table: 'x'.repeat(53) })).toThrow(IdempotencyConfigError)
    expect(calls).toHaveLength(0)
  })

  it('quotes a valid mixed-case name, which then works end to end', async () => {
    await migrate(db.pool, { schema: db.schema, table: 'Mixed_Case1' })
    const s = store(db.pool, undefined, 'Mixed_Case1')
    const key = randomStorageKey()
    expect(await begin(s, key, randomToken())).toMatchObject({ kind: 'acquired', fence: 1 })
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM "${db.schema}"."Mixed_Case1"`)
    expect(rows[0].n).toBe(1)
  })

  it('rejects a pool without query()', () => {
    expect(() => new PostgresStore({ pool: {} as PgQueryable })).toThrow(IdempotencyConfigError)
  })
})

describe('postgres: unreachable or hung server', () => {
  const sockets = new Set<Socket>()
  const servers: Server[] = []
  afterAll(async () => {
    for (const socket of sockets) socket.destroy()
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  })

  async function listen(onConnection: (socket: Socket) => void): Promise<Server> {
    const server = createServer(onConnection)
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return server
  }

  const url = (port: number) => `postgres://postgres@127.0.0.1:${port}/test`

  function port(server: Server): number {
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    return address.port
  }

  async function expectStoreErrorSoon(result: Promise<BeginResult>): Promise<void> {
    const bound = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 5_000).unref())
    const outcome = await Promise.race([
      result.then(
        () => 'answered',
        (error: unknown) => error,
      ),
      bound,
    ])
    expect(outcome).toBeInstanceOf(IdempotencyStoreError)
    expect((outcome as IdempotencyStoreError).reason).toBe('unavailable')
    expect((outcome as IdempotencyStoreError).cause).toBeDefined()
  }

  it('rejects with a store error when nothing listens on the port', async () => {
    const closed = await listen(() => {})
    const closedPort = port(closed)
    await new Promise((resolve) => closed.close(resolve))
    const pool = db.newPool({ connectionString: url(closedPort), connectionTimeoutMillis: 1_000 })
    await expectStoreErrorSoon(begin(store(pool), randomStorageKey(), randomToken()))
  })

  it('rejects with a store error when the server accepts and never answers', async () => {
    const silent = await listen((socket) => sockets.add(socket))
    const pool = db.newPool({ connectionString: url(port(silent)), connectionTimeoutMillis: 500 })
    await expectStoreErrorSoon(begin(store(pool), randomStorageKey(), randomToken()))
  })
})

describe('postgres: SQL files', () => {
  const dir = new URL('../../src/stores/postgres/sql/', import.meta.url)

  it('open with a header naming their parameters and what they return', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.sql'))
    expect(files.sort()).toEqual(
      ['begin', 'complete', 'delete', 'extend', 'get', 'migration', 'release', 'sweep'].map((name) => `${name}.sql`),
    )
    for (const file of files) {
      const text = readFileSync(new URL(file, dir), 'utf8')
      expect(text.startsWith(`-- ${file.replace('.sql', '')}: `)).toBe(true)
      if (file !== 'migration.sql') {
        expect(text).toMatch(/^-- Parameters: \$1 clock_offset_ms float8/m)
        expect(text).toMatch(/^-- Returns /m)
      }
    }
  })
})

describe('postgres: records per scope', () => {
  const limited = (pool: PgQueryable, maxRecordsPerScope: number, table?: string) =>
    new PostgresStore({
      pool,
      schema: db.schema,
      maxRecordsPerScope,
      ...(table === undefined ? {} : { table }),
    })
  const beginIn = (s: PostgresStore, scope: string, key = randomStorageKey(), token = randomToken()) =>
    s.begin({ key, scope, fingerprint: FP, token, leaseMs: LEASE, retentionMs: RETENTION })
  const column = async (name: 'scope' | 'expires_at', key: string, table = 'idempotency_records') => {
    const { rows } = await db.pool.query(`SELECT ${name} AS value FROM "${db.schema}"."${table}" WHERE key = $1`, [key])
    return (rows[0] as { value: unknown }).value
  }

  it('sends the statement it sent before without the option: six parameters, no scope, no count', async () => {
    const { queryable, calls } = counting(db.pool)
    const key = randomStorageKey()
    expect((await beginIn(store(queryable), randomStorageKey(), key)).kind).toBe('acquired')
    expect(calls).toHaveLength(1)
    expect(calls[0]?.values).toHaveLength(6)
    expect(calls[0]?.text).not.toMatch(/scope|\$7|\[limited\]/)
    expect(await column('scope', key)).toBeNull()
  })

  it('answers every begin of a limited store in one statement, scope_full included', async () => {
    const { queryable, calls } = counting(db.pool)
    const s = limited(queryable, 1)
    const scope = randomStorageKey()
    const key = randomStorageKey()
    expect((await beginIn(s, scope, key)).kind).toBe('acquired')
    expect((await beginIn(s, scope)).kind).toBe('scope_full')
    expect((await beginIn(s, scope, key)).kind).toBe('in_progress')
    expect(calls).toHaveLength(3)
    for (const call of calls) {
      expect(call.values).toEqual([0, expect.any(String), FP, expect.any(String), LEASE, RETENTION, scope, 1])
      expect(call.text.match(/clock_timestamp\(\)/g)).toHaveLength(1)
      expect(call.text).not.toMatch(/--|\bnow\(\)/)
    }
    expect(await column('scope', key)).toBe(scope)
  })

  it('keeps expires_at exact on a row with a scope, and leaves it alone (HOT) on a row without', async () => {
    const scoped = limited(db.pool, 5)
    const plain = store(db.pool)
    const keys = { scoped: randomStorageKey(), plain: randomStorageKey() }
    const owner = randomToken()
    await beginIn(scoped, randomStorageKey(), keys.scoped, owner)
    await beginIn(plain, randomStorageKey(), keys.plain, owner)
    const before = { scoped: await column('expires_at', keys.scoped), plain: await column('expires_at', keys.plain) }
    for (const [s, key] of [
      [scoped, keys.scoped],
      [plain, keys.plain],
    ] as const) {
      expect(await s.extend({ key, token: owner, leaseMs: 5 * LEASE, retentionMs: RETENTION })).toBe(true)
    }
    expect(await column('expires_at', keys.plain)).toEqual(before.plain)
    const moved = (await column('expires_at', keys.scoped)) as Date
    expect(moved.getTime() - (before.scoped as Date).getTime()).toBeGreaterThanOrEqual(4 * LEASE)
    // The record's expiry (lease_until + retention, rounded to the millisecond; Date truncates).
    expect(Math.abs(moved.getTime() - ((await scoped.get(keys.scoped))?.expiresAt ?? 0))).toBeLessThanOrEqual(1)
  })

  it('can pass the limit by the begins running at the same moment, and no more', async () => {
    const s = limited(db.pool, 1)
    const scope = randomStorageKey()
    // A begin held uncommitted in a transaction: the next one's snapshot cannot see its row.
    const blocker = await db.pool.connect()
    try {
      await blocker.query('BEGIN')
      expect((await beginIn(limited(blocker, 1), scope)).kind).toBe('acquired')
      expect((await beginIn(s, scope)).kind).toBe('acquired')
      await blocker.query('COMMIT')
    } finally {
      await blocker.query('ROLLBACK').catch(() => {})
      blocker.release()
    }
    // Both committed: two records against a limit of one, and the scope refuses new keys from now on.
    expect((await beginIn(s, scope)).kind).toBe('scope_full')
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".idempotency_records WHERE scope = $1`,
      [scope],
    )
    expect(rows[0].n).toBe(2)
  })

  it('migrates a table made before the scope column, keeping its rows, without locking an up-to-date one', async () => {
    const table = 'before_scope'
    const name = `"${db.schema}"."${table}"`
    // The previous migration's table, with a live row.
    await db.pool.query(`CREATE TABLE ${name} (
      key text PRIMARY KEY, v smallint NOT NULL, state text NOT NULL, fingerprint text NOT NULL,
      token text NOT NULL, fence bigint NOT NULL, previous_fence bigint NOT NULL, takeover boolean NOT NULL,
      lease_until timestamptz NOT NULL, retention interval NOT NULL, expires_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL, completed_at timestamptz, status smallint, replayable boolean,
      headers bytea[], body bytea) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02);
      CREATE INDEX "${table}_expires_at" ON ${name} (expires_at)`)
    const kept = randomStorageKey()
    await db.pool.query(
      `INSERT INTO ${name} (key, v, state, fingerprint, token, fence, previous_fence, takeover, lease_until,
         retention, expires_at, created_at)
       VALUES ($1, 1, 'in_progress', $2, 'owner', 3, 2, false, clock_timestamp() + interval '10 seconds',
         interval '1 minute', clock_timestamp() + interval '70 seconds', clock_timestamp())`,
      [kept, FP],
    )
    const s = limited(db.pool, 2, table)
    await expect(beginIn(s, randomStorageKey())).rejects.toThrow(/run migrate\(\) or migrationSql\(\) again/)

    await migrate(db.pool, { schema: db.schema, table })
    expect(await s.get(kept)).toMatchObject({ state: 'in_progress', fence: 3, token: 'owner' })
    expect(await column('scope', kept, table)).toBeNull()
    const scope = randomStorageKey()
    expect((await beginIn(s, scope)).kind).toBe('acquired')
    expect((await beginIn(s, scope)).kind).toBe('acquired')
    expect((await beginIn(s, scope)).kind).toBe('scope_full')

    // Migrating again, as every start does, while a reader holds ACCESS SHARE on the table: an ALTER
    // TABLE would wait for it (ACCESS EXCLUSIVE) and block every query queued behind it.
    const reader = await db.pool.connect()
    try {
      await reader.query('BEGIN')
      await reader.query(`SELECT count(*) FROM ${name}`)
      const again = db.newPool({ max: 1, options: '-c lock_timeout=2000' })
      await migrate(again, { schema: db.schema, table })
      await again.end()
    } finally {
      await reader.query('ROLLBACK')
      reader.release()
    }
  })

  it('rejects a limit that is not a positive integer of at most 2^31 - 1', () => {
    for (const maxRecordsPerScope of [0, -1, 1.5, Number.NaN, 2 ** 31]) {
      expect(() => limited(db.pool, maxRecordsPerScope)).toThrow(IdempotencyConfigError)
    }
  })
})
