// The SQLite store on a real file: the contract, then cross-process locking, sweep, durability.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import {
  type BeginResult,
  type ClockOffset,
  IdempotencyConfigError,
  IdempotencyStoreError,
  type StoredResponse,
} from 'idempotency-kit'
import { openSqliteStore, type SqliteDatabase, SqliteStore } from 'idempotency-kit/sqlite'
import { describeStoreContract } from 'idempotency-kit/testing'
import { afterAll, afterEach, describe, expect, it } from 'vitest'

const dir = mkdtempSync(join(tmpdir(), 'idempotency-kit-sqlite-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const CHILD = fileURLToPath(new URL('../support/sqlite-child.ts', import.meta.url))
const LEASE = 10_000
const RETENTION = 60_000
const SCOPE = 'scope'

let files = 0
function freshFile(): string {
  files += 1
  return join(dir, `store-${files}.db`)
}

function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('hex')
}

const toClose: Array<{ close(): unknown }> = []
afterEach(async () => {
  for (const item of toClose.splice(0).reverse()) await item.close()
})

async function open(file: string, clockOffset?: ClockOffset): Promise<SqliteStore> {
  const store = await openSqliteStore(file, clockOffset === undefined ? {} : { clockOffset })
  toClose.push(store)
  return store
}

function beginInput(key: string, token: string, leaseMs = LEASE) {
  return { key, scope: SCOPE, fingerprint: 'v1:fp', token, leaseMs, retentionMs: RETENTION }
}

const RESPONSE: StoredResponse = {
  status: 201,
  // Repeated names in order, and latin1 bytes ≥ 0x80 that a UTF-8 text column would mangle.
  headers: [
    ['set-cookie', 'a=1'],
    ['x-latin1', 'caf\u00e9 \u00ff\u0080'],
    ['set-cookie', 'b=2'],
  ],
  body: Uint8Array.from({ length: 256 }, (_, i) => i),
  replayable: true,
}

/** Starts the child script in another Node process, with the package resolved from source. */
function child(...args: string[]): { process: ChildProcess; lines: AsyncIterator<string>; exited: Promise<unknown> } {
  const proc = spawn(process.execPath, ['--conditions=idempotency-kit-source', '--import', 'tsx', CHILD, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  if (proc.stdout === null) throw new Error('child has no stdout')
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  // Listen for 'exit' from the start: a child that prints and exits at once may be gone before we ask.
  const exited = once(proc, 'exit')
  toClose.push({ close: () => proc.exitCode === null && proc.kill() })
  return { process: proc, lines, exited }
}

async function expectLine(lines: AsyncIterator<string>, expected: string): Promise<void> {
  const next = await lines.next()
  expect(next.value).toBe(expected)
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => new Error(`expected a rejection, got ${JSON.stringify(value)}`),
    (reason: unknown) => reason,
  )
}

const contractFile = freshFile()
describeStoreContract({
  name: 'sqlite (a WAL file, one connection per store)',
  create: (clockOffset) => openSqliteStore(contractFile, { clockOffset }),
  createLimited: (clockOffset, maxRecordsPerScope) =>
    openSqliteStore(contractFile, { clockOffset, maxRecordsPerScope }),
  async corrupt(_store, key) {
    // A row a newer deploy might write: a format version this code does not know.
    const raw = new Database(contractFile)
    try {
      raw
        .prepare(
          `INSERT OR REPLACE INTO idempotency_keys
             (key, v, state, fingerprint, token, fence, takeover, lease_deadline, created_at, expires_at)
           VALUES (?, 99, 'in_progress', 'v1:x', 'x', 1, 0, 0, 0, ?)`,
        )
        .run(key, Number.MAX_SAFE_INTEGER)
    } finally {
      raw.close()
    }
  },
})

describe('SqliteStore specifics', () => {
  it('round-trips headers and body byte for byte through the BLOB columns', async () => {
    const file = freshFile()
    const store = await open(file)
    const key = randomHex(32)
    const owner = randomHex(16)
    expect((await store.begin(beginInput(key, owner))).kind).toBe('acquired')
    expect(await store.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })).toBe(true)
    const replay = await store.begin(beginInput(key, randomHex(16)))
    expect(replay).toEqual({ kind: 'replay', response: RESPONSE })
    // The raw column holds the latin1 bytes themselves (0xE9 for é), not a UTF-8 re-encoding.
    const raw = new Database(file, { readonly: true })
    toClose.push(raw)
    const row = raw.prepare('SELECT headers FROM idempotency_keys WHERE key = ?').get(key) as {
      headers: Buffer
    }
    expect(row.headers.includes(Buffer.from([0x63, 0x61, 0x66, 0xe9]))).toBe(true)
  })

  it('rejects a header char above 0xFF instead of storing other bytes', async () => {
    const store = await open(freshFile())
    const key = randomHex(32)
    const owner = randomHex(16)
    await store.begin(beginInput(key, owner))
    const response = { ...RESPONSE, headers: [['x', '\u20ac']] as const }
    const error = await rejection(store.complete({ key, token: owner, response, retentionMs: RETENTION }))
    expect(error).toBeInstanceOf(RangeError)
    expect((await store.get(key))?.state).toBe('in_progress')
  })

  it('answers undecodable for a row of an unknown format version on every operation', async () => {
    const file = freshFile()
    const store = await open(file)
    const key = randomHex(32)
    const owner = randomHex(16)
    await store.begin(beginInput(key, owner))
    const raw = new Database(file)
    toClose.push(raw)
    raw.prepare('UPDATE idempotency_keys SET v = 2 WHERE key = ?').run(key)
    for (const operation of [
      store.begin(beginInput(key, owner)),
      store.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION }),
      store.extend({ key, token: owner, leaseMs: LEASE, retentionMs: RETENTION }),
      store.release({ key, token: owner, retentionMs: RETENTION }),
      store.get(key),
      store.delete(key, { force: true }),
    ]) {
      const error = await rejection(operation)
      expect(error).toBeInstanceOf(IdempotencyStoreError)
      expect((error as IdempotencyStoreError).reason).toBe('undecodable')
    }
    // Nothing was overwritten: the row is still the unknown version.
    expect(raw.prepare('SELECT v FROM idempotency_keys WHERE key = ?').pluck().get(key)).toBe(2)
  })

  it('treats an expired row as absent to every operation before any sweep', async () => {
    let offset = 0
    const file = freshFile()
    const store = await open(file, () => offset)
    const key = randomHex(32)
    const owner = randomHex(16)
    await store.begin(beginInput(key, owner))
    await store.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })
    offset += RETENTION + 1
    const raw = new Database(file, { readonly: true })
    toClose.push(raw)
    const count = raw.prepare('SELECT count(*) FROM idempotency_keys WHERE key = ?').pluck()
    expect(count.get(key)).toBe(1)
    expect(await store.get(key)).toBeNull()
    expect(await store.extend({ key, token: owner, leaseMs: LEASE, retentionMs: RETENTION })).toBe(false)
    expect(await store.release({ key, token: owner, retentionMs: RETENTION })).toBe(false)
    expect(await store.delete(key)).toBe('absent')
    expect(await store.begin(beginInput(key, owner))).toEqual({
      kind: 'acquired',
      fence: 1,
      takeover: false,
      previousFence: 0,
    })
  })

  it('keeps a completed record across closing and reopening the file', async () => {
    const file = freshFile()
    const key = randomHex(32)
    const owner = randomHex(16)
    const first = await openSqliteStore(file, { synchronous: 'FULL' })
    await first.begin(beginInput(key, owner))
    await first.complete({ key, token: owner, response: RESPONSE, retentionMs: RETENTION })
    await first.close()
    const second = await open(file)
    expect(await second.begin(beginInput(key, randomHex(16)))).toEqual({
      kind: 'replay',
      response: RESPONSE,
    })
  })

  it('sweeps only expired rows, in bounded batches, and truncates the WAL', async () => {
    let offset = 0
    const file = freshFile()
    const store = await open(file, () => offset)
    const put = async (leaseMs: number, state: 'in_progress' | 'completed' | 'released') => {
      const key = randomHex(32)
      const owner = randomHex(16)
      await store.begin({ key, scope: SCOPE, fingerprint: 'v1:fp', token: owner, leaseMs, retentionMs: 1_000 })
      if (state === 'completed') {
        await store.complete({ key, token: owner, response: RESPONSE, retentionMs: 1_000 })
      }
      if (state === 'released') await store.release({ key, token: owner, retentionMs: 1_000 })
      return key
    }
    const expired = [
      ...(await Promise.all([1, 2, 3].map(() => put(1_000, 'completed')))),
      ...(await Promise.all([1, 2].map(() => put(1_000, 'released')))),
      // In progress: expires at lease deadline (1 s) + retention (1 s).
      await put(1_000, 'in_progress'),
    ]
    const live = [await put(60_000, 'in_progress'), await put(60_000, 'in_progress')]
    offset += 2_001
    const raw = new Database(file, { readonly: true })
    toClose.push(raw)
    const rows = raw.prepare('SELECT count(*) FROM idempotency_keys').pluck()
    expect(rows.get()).toBe(8)
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(0)
    raw.close()

    expect(await store.sweep({ batchSize: 4 })).toBe(expired.length)
    expect(statSync(`${file}-wal`).size).toBe(0)
    for (const key of live) expect((await store.get(key))?.state).toBe('in_progress')
    const after = new Database(file, { readonly: true })
    toClose.push(after)
    const keys = after.prepare('SELECT key FROM idempotency_keys').pluck().all()
    expect(new Set(keys)).toEqual(new Set(live))
    expect(await store.sweep()).toBe(0)
  })

  it('validates the table name once, at construction, and uses a valid custom one', async () => {
    const database = new Database(freshFile())
    toClose.push(database)
    for (const table of ['', '1abc', 'a-b', 'x"; DROP TABLE t; --', 'sqlite_master', 'a'.repeat(64)]) {
      expect(() => new SqliteStore({ database, table })).toThrow(IdempotencyConfigError)
    }
    const store = new SqliteStore({ database, table: 'Idem_Records_2' })
    await store.migrate()
    await store.migrate()
    const tables = database
      .prepare(
        "SELECT name FROM sqlite_master WHERE tbl_name = 'Idem_Records_2' AND name NOT LIKE 'sqlite%' ORDER BY name",
      )
      .pluck()
      .all()
    expect(tables).toEqual(['Idem_Records_2', 'Idem_Records_2_expires_at', 'Idem_Records_2_scope'])
    expect((await store.begin(beginInput(randomHex(32), randomHex(16)))).kind).toBe('acquired')
  })

  it('asks for migrate() when the table is missing', async () => {
    const database = new Database(freshFile())
    toClose.push(database)
    const store = new SqliteStore({ database })
    const error = await rejection(store.begin(beginInput(randomHex(32), randomHex(16))))
    expect(error).toBeInstanceOf(IdempotencyConfigError)
    expect((error as Error).message).toMatch(/migrate\(\)/)
  })

  it('never closes a database the user passed, closes one it opened, and refuses work once closed', async () => {
    const database = new Database(freshFile())
    toClose.push(database)
    const store = new SqliteStore({ database })
    await store.migrate()
    await store.close()
    await store.close()
    expect(database.open).toBe(true)
    const error = await rejection(store.get(randomHex(32)))
    expect(error).toBeInstanceOf(IdempotencyStoreError)
    expect((error as IdempotencyStoreError).reason).toBe('closing')

    const opened = await openSqliteStore(freshFile())
    await opened.close()
    const closed = await rejection(opened.get(randomHex(32)))
    expect((closed as IdempotencyStoreError).reason).toBe('closing')
  })

  it('answers full, not a crash, when the database cannot grow, and keeps the lease', async () => {
    const database = new Database(freshFile())
    toClose.push(database)
    const store = new SqliteStore({ database })
    await store.migrate()
    const key = randomHex(32)
    const owner = randomHex(16)
    await store.begin(beginInput(key, owner))
    // The file may not grow past its current size: a 1 MiB body cannot fit.
    database.pragma(`max_page_count = ${database.pragma('page_count', { simple: true })}`)
    const response = { ...RESPONSE, body: new Uint8Array(1 << 20) }
    const error = await rejection(store.complete({ key, token: owner, response, retentionMs: RETENTION }))
    expect(error).toBeInstanceOf(IdempotencyStoreError)
    expect((error as IdempotencyStoreError).reason).toBe('full')
    // The failed transaction rolled back: the holder still owns an in_progress record.
    expect((await store.get(key))?.state).toBe('in_progress')
  })

  it('answers unavailable once the user closed their database', async () => {
    const database = new Database(freshFile())
    const store = new SqliteStore({ database })
    await store.migrate()
    database.close()
    const error = await rejection(store.begin(beginInput(randomHex(32), randomHex(16))))
    expect(error).toBeInstanceOf(IdempotencyStoreError)
    expect((error as IdempotencyStoreError).reason).toBe('unavailable')
  })

  it('reads integers as numbers even when the user turned safe integers on', async () => {
    const database = new Database(freshFile())
    toClose.push(database)
    database.defaultSafeIntegers(true)
    const store = new SqliteStore({ database })
    await store.migrate()
    const key = randomHex(32)
    await store.begin(beginInput(key, randomHex(16)))
    const record = await store.get(key)
    expect(typeof record?.fence).toBe('number')
    expect(typeof record?.expiresAt).toBe('number')
  })

  it.each([
    ['numbers', false],
    ['safe integers', true],
  ])('waits out another process holding the write lock without blocking the event loop (%s)', async (_, safe) => {
    const file = freshFile()
    await open(file)
    // The user's own connection, with better-sqlite3's default 5 s synchronous busy timeout.
    const database = new Database(file)
    toClose.push(database)
    database.pragma('journal_mode = WAL')
    // With safe integers on, even the busy_timeout pragma answers a bigint.
    database.defaultSafeIntegers(safe)
    const store = new SqliteStore({ database, busyRetryMs: 5_000 })
    const holder = child('hold', file, '1000')
    await expectLine(holder.lines, 'locked')

    let last = performance.now()
    let widestGap = 0
    let ticks = 0
    const tick = () => {
      const now = performance.now()
      widestGap = Math.max(widestGap, now - last)
      last = now
    }
    const ticker = setInterval(() => {
      ticks += 1
      tick()
    }, 10)
    const started = performance.now()
    let result: BeginResult
    try {
      result = await store.begin(beginInput(randomHex(32), randomHex(16)))
    } finally {
      // The stretch since the last tick counts too: a fully synchronous wait never lets one fire.
      tick()
      clearInterval(ticker)
    }
    const waited = performance.now() - started
    await expectLine(holder.lines, 'released')

    expect(result.kind).toBe('acquired')
    // It really waited for the lock (most of the 1 s hold)…
    expect(waited).toBeGreaterThan(500)
    // …while timers kept firing: each synchronous attempt blocks at most the short busy timeout.
    expect(widestGap).toBeLessThan(150)
    expect(ticks).toBeGreaterThan(waited / 30)
    // The user's own timeout is back for their own queries.
    expect(Number(database.pragma('busy_timeout', { simple: true }))).toBe(5_000)
  })

  it('gives up with a timeout store error when the lock outlasts busyRetryMs', async () => {
    const file = freshFile()
    await open(file)
    const store = await openSqliteStore(file, { busyRetryMs: 200 })
    toClose.push(store)
    const holder = child('hold', file, '800')
    await expectLine(holder.lines, 'locked')
    const started = performance.now()
    const error = await rejection(store.begin(beginInput(randomHex(32), randomHex(16))))
    const waited = performance.now() - started
    expect(error).toBeInstanceOf(IdempotencyStoreError)
    expect((error as IdempotencyStoreError).reason).toBe('timeout')
    expect(waited).toBeGreaterThanOrEqual(190)
    expect(waited).toBeLessThan(700)
  })

  it('lets exactly one of three processes acquire each key when they race over the same keys', async () => {
    const file = freshFile()
    const store = await open(file)
    const prefix = `${randomHex(8)}:`
    // Many keys in the same order, so the processes overlap on one key again and again.
    const keys = 1_000
    const racers = [0, 1].map(() => child('race', file, 'idempotency_keys', prefix, String(keys)))
    for (const racer of racers) await expectLine(racer.lines, 'ready')
    for (const racer of racers) racer.process.stdin?.write('go\n')
    const local: string[] = []
    for (let i = 0; i < keys; i++) {
      const input = { ...beginInput(`${prefix}${i}`, randomHex(16), 60_000), fingerprint: 'v1:race' }
      local.push((await store.begin(input)).kind)
    }
    const remote = await Promise.all(
      racers.map(async (racer) => {
        const line = await racer.lines.next()
        await racer.exited
        return JSON.parse(String(line.value)) as string[]
      }),
    )
    const perKey = (kind: string) =>
      Array.from({ length: keys }, (_, i) => [local, ...remote].filter((kinds) => kinds[i] === kind).length)
    expect(new Set(perKey('acquired'))).toEqual(new Set([1]))
    expect(new Set(perKey('in_progress'))).toEqual(new Set([2]))
    // Each key's single acquisition is fence 1: nobody overwrote another's record.
    for (const i of [0, keys - 1]) expect((await store.get(`${prefix}${i}`))?.fence).toBe(1)
  })
})

describe('SqliteStore records per scope', () => {
  /** The table as the previous migration made it: no scope column, no scope index. */
  const BEFORE_SCOPE = `CREATE TABLE idempotency_keys (
    key TEXT NOT NULL PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 512), v INTEGER NOT NULL, state TEXT NOT NULL,
    fingerprint TEXT NOT NULL, token TEXT NOT NULL, fence INTEGER NOT NULL, takeover INTEGER NOT NULL,
    lease_deadline INTEGER NOT NULL, created_at INTEGER NOT NULL, completed_at INTEGER, expires_at INTEGER NOT NULL,
    status INTEGER, headers BLOB, body BLOB, replayable INTEGER) STRICT;
    CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);`

  const input = (key: string, scope: string) => ({ ...beginInput(key, randomHex(16)), scope })

  it('migrates a file made before the scope column, keeping its records, then limits new keys', async () => {
    const file = freshFile()
    const old = new Database(file)
    old.exec(BEFORE_SCOPE)
    const kept = randomHex(32)
    old
      .prepare(
        `INSERT INTO idempotency_keys (key, v, state, fingerprint, token, fence, takeover, lease_deadline,
           created_at, expires_at) VALUES (?, 1, 'in_progress', 'v1:fp', 'owner', 4, 0, ?, 0, ?)`,
      )
      .run(kept, Date.now() + LEASE, Date.now() + LEASE + RETENTION)
    old.close()

    const store = await openSqliteStore(file, { maxRecordsPerScope: 2 })
    toClose.push(store)
    // Migrating again (every start does) changes nothing.
    await store.migrate()
    expect(await store.get(kept)).toMatchObject({ state: 'in_progress', fence: 4, token: 'owner' })
    const scope = randomHex(32)
    expect((await store.begin(input(randomHex(32), scope))).kind).toBe('acquired')
    expect((await store.begin(input(randomHex(32), scope))).kind).toBe('acquired')
    expect((await store.begin(input(randomHex(32), scope))).kind).toBe('scope_full')

    const raw = new Database(file, { readonly: true })
    toClose.push(raw)
    const columns = raw.pragma('table_info(idempotency_keys)') as Array<{ name: string }>
    expect(columns.map((c) => c.name).filter((name) => name === 'scope')).toEqual(['scope'])
    const index = raw.prepare("SELECT sql FROM sqlite_master WHERE name = 'idempotency_keys_scope'").pluck().get()
    expect(index).toMatch(/\(scope, expires_at\) WHERE scope IS NOT NULL$/)
    // The old row carries no scope: it counts against none.
    expect(raw.prepare('SELECT scope FROM idempotency_keys WHERE key = ?').pluck().get(kept)).toBeNull()
  })

  it('counts through the scope index, reading at most the limit', async () => {
    const file = freshFile()
    await open(file)
    const raw = new Database(file, { readonly: true })
    toClose.push(raw)
    const count = readFileSync(new URL('../../src/stores/sqlite/sql/count-scope.sql', import.meta.url), 'utf8')
      .replaceAll('{{table}}', '"idempotency_keys"')
      .replaceAll('{{scope_index}}', '"idempotency_keys_scope"')
    const plan = raw.prepare(`EXPLAIN QUERY PLAN ${count}`).all({ scope: 'x', now: 0, limit: 3 }) as Array<{
      detail: string
    }>
    expect(plan.map((step) => step.detail).join('\n')).toMatch(
      /SEARCH idempotency_keys USING (COVERING )?INDEX idempotency_keys_scope \(scope=\? AND expires_at>\?\)/,
    )
  })

  it('writes no scope and runs no count without the option; with it, counts only for a key it would create', async () => {
    const runs = new Map<string, number>()
    const counted = (database: Database.Database): SqliteDatabase => ({
      get open() {
        return database.open
      },
      prepare(source) {
        const statement = database.prepare(source)
        const name = source.includes('count(*) AS held') ? 'count' : 'other'
        return {
          run: (params) => statement.run(params),
          get(params) {
            runs.set(name, (runs.get(name) ?? 0) + 1)
            return statement.get(params)
          },
          safeIntegers: (toggle) => statement.safeIntegers(toggle),
        }
      },
      exec: (source) => database.exec(source),
      pragma: (source, options) => database.pragma(source, options),
      transaction: (fn) => database.transaction(fn),
      close: () => database.close(),
    })
    const file = freshFile()
    const database = new Database(file)
    toClose.push(database)
    const scope = randomHex(32)

    const plain = new SqliteStore({ database: counted(database) })
    await plain.migrate()
    const unscoped = randomHex(32)
    expect((await plain.begin(input(unscoped, scope))).kind).toBe('acquired')
    expect(runs.get('count')).toBeUndefined()
    expect(database.prepare('SELECT scope FROM idempotency_keys WHERE key = ?').pluck().get(unscoped)).toBeNull()

    const limited = new SqliteStore({ database: counted(database), maxRecordsPerScope: 5 })
    const key = randomHex(32)
    const owner = randomHex(16)
    expect((await limited.begin({ ...input(key, scope), token: owner })).kind).toBe('acquired')
    expect(runs.get('count')).toBe(1)
    expect(database.prepare('SELECT scope FROM idempotency_keys WHERE key = ?').pluck().get(key)).toBe(scope)
    // A conflict on a key the scope holds reads the record and nothing else.
    expect((await limited.begin(input(key, scope))).kind).toBe('in_progress')
    expect(runs.get('count')).toBe(1)
    // A new key is counted again.
    expect((await limited.begin(input(randomHex(32), scope))).kind).toBe('acquired')
    expect(runs.get('count')).toBe(2)
  })

  it('rejects a limit that is not a positive integer', () => {
    const database = new Database(':memory:')
    toClose.push(database)
    for (const maxRecordsPerScope of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new SqliteStore({ database, maxRecordsPerScope })).toThrow(IdempotencyConfigError)
    }
  })
})
