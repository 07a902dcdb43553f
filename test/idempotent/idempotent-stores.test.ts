// idempotent(fn) on real stores (memory, a SQLite file): one execution per key, replays with types,
// in progress, mismatch, release before commit, stored failure after it, heartbeat, takeover, retention,
// refused values, and a store that fails.

import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { IdempotencyStoreError } from '../../src/core/errors.js'
import type { Lease } from '../../src/core/lease.js'
import type { Store } from '../../src/core/store.js'
import {
  IdempotencyInProgressError,
  IdempotencyKeyReusedError,
  IdempotencyValueError,
  IdempotentError,
} from '../../src/idempotent/errors.js'
import { type IdempotentFunction, idempotent } from '../../src/idempotent/idempotent.js'
import { MemoryStore } from '../../src/stores/memory/memory-store.js'
import { openSqliteStore, SqliteStore } from '../../src/stores/sqlite/index.js'

const dir = mkdtempSync(join(tmpdir(), 'idempotent-fn-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Fixture {
  readonly name: string
  /** A fresh store whose clock is moved by `clock.offset`. */
  open(clock: { offset: number }): Promise<Store>
  /** The same kind of store, with its backend gone (a closed database, or full). */
  broken(): Promise<Store>
}

let files = 0
const fixtures: Fixture[] = [
  {
    name: 'MemoryStore',
    open: async (clock) => new MemoryStore({ clockOffset: () => clock.offset }),
    // Memory cannot be unreachable; full is its store fault (it never evicts a live record).
    broken: async () => {
      const store = new MemoryStore({ maxRecords: 1 })
      await store.begin({
        key: 'filler',
        scope: 'filler',
        fingerprint: 'v1:x',
        token: 't',
        leaseMs: 60_000,
        retentionMs: 60_000,
      })
      return store
    },
  },
  {
    name: 'SqliteStore',
    open: async (clock) => {
      const store = await openSqliteStore(join(dir, `store-${++files}.db`), { clockOffset: () => clock.offset })
      opened.push(store)
      return store
    },
    broken: async () => {
      const database = new Database(join(dir, `broken-${++files}.db`))
      const store = new SqliteStore({ database })
      await store.migrate()
      database.close()
      return store
    },
  },
]

const opened: Array<{ close(): Promise<void> }> = []
const wrapped: Array<IdempotentFunction<never[], unknown>> = []
afterEach(async () => {
  for (const fn of wrapped.splice(0)) await fn.close({ graceMs: 0 })
  for (const store of opened.splice(0)) await store.close()
})

/** Keeps the wrapper for cleanup and returns it as is. */
function track<F extends IdempotentFunction<never[], unknown>>(fn: F): F {
  wrapped.push(fn)
  return fn
}

/** A promise with its resolver, to hold a function mid-run. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => (open = resolve))
  return { promise, open }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.each(fixtures)('idempotent(fn) on $name', (fixture) => {
  it('runs once for 50 parallel calls with one key; every caller gets the same value', async () => {
    const store = await fixture.open({ offset: 0 })
    let runs = 0
    const charge = track(
      idempotent(
        async (order: { id: string; cents: number }) => {
          runs++
          await sleep(100)
          return { charge: `ch_${runs}`, cents: BigInt(order.cents), at: new Date(1_700_000_000_000) }
        },
        { store, name: 'charge', key: (order) => order.id, onConflict: 'wait', waitMs: 10_000 },
      ),
    )
    const results = await Promise.all(Array.from({ length: 50 }, () => charge({ id: 'order-1', cents: 500 })))
    expect(runs).toBe(1)
    for (const result of results) {
      expect(result).toStrictEqual({ charge: 'ch_1', cents: 500n, at: new Date(1_700_000_000_000) })
    }
  })

  it('replays the completed value with its types, without running again', async () => {
    const store = await fixture.open({ offset: 0 })
    let runs = 0
    const value = {
      when: new Date('2025-01-02T03:04:05.678Z'),
      amount: 12345678901234567890n,
      note: undefined,
      receipt: Buffer.from('receipt bytes'),
      digest: new Uint8Array([0, 255, 7]),
      lines: new Map([['sku-1', { qty: 2, tags: new Set(['gift']) }]]),
      ratio: Number.NaN,
      limits: [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0],
    }
    const report = track(
      idempotent(
        async (_day: string) => {
          runs++
          return value
        },
        { store, name: 'report' },
      ),
    )
    const first = await report('2025-01-02')
    expect(first).toBe(value)
    const again = await report('2025-01-02')
    expect(runs).toBe(1)
    expect(again).not.toBe(value)
    expect(again).toStrictEqual(value)
    expect(again.when).toBeInstanceOf(Date)
    expect(typeof again.amount).toBe('bigint')
    expect(Object.hasOwn(again, 'note')).toBe(true)
    expect(Buffer.isBuffer(again.receipt)).toBe(true)
    expect(Buffer.isBuffer(again.digest)).toBe(false)
    expect(again.digest).toBeInstanceOf(Uint8Array)
    expect(again.lines.get('sku-1')?.tags).toBeInstanceOf(Set)
    expect(Number.isNaN(again.ratio)).toBe(true)
    expect(Object.is(again.limits[2], -0)).toBe(true)
    // Other arguments are another key: it runs.
    await report('2025-01-03')
    expect(runs).toBe(2)
  })

  it('throws IdempotencyInProgressError with a retry hint while the first call runs', async () => {
    const store = await fixture.open({ offset: 0 })
    const started = gate()
    const hold = gate()
    let runs = 0
    const job = track(
      idempotent(
        async (id: string) => {
          runs++
          started.open()
          await hold.promise
          return `done ${id}`
        },
        { store, name: 'job' },
      ),
    )
    const first = job('a')
    await started.promise
    const error = await job('a').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IdempotencyInProgressError)
    expect((error as IdempotencyInProgressError).retryAfterMs).toBeGreaterThanOrEqual(1000)
    hold.open()
    expect(await first).toBe('done a')
    expect(await job('a')).toBe('done a')
    expect(runs).toBe(1)
  })

  it('throws IdempotencyKeyReusedError when a key comes back with other arguments', async () => {
    const store = await fixture.open({ offset: 0 })
    let runs = 0
    const consume = track(
      idempotent(
        async (message: { id: string; body: string }) => {
          runs++
          return message.body.length
        },
        { store, name: 'consume', key: (message) => message.id },
      ),
    )
    expect(await consume({ id: 'm1', body: 'hello' })).toBe(5)
    await expect(consume({ id: 'm1', body: 'hello!' })).rejects.toBeInstanceOf(IdempotencyKeyReusedError)
    expect(await consume({ id: 'm1', body: 'hello' })).toBe(5)
    expect(runs).toBe(1)
  })

  it('releases the key when the function throws before commit(): the next call runs', async () => {
    const store = await fixture.open({ offset: 0 })
    let runs = 0
    const send = track(
      idempotent(
        async (lease: Lease, to: string) => {
          runs++
          if (runs === 1) throw new Error('gateway refused the connection')
          return { sent: to, fence: lease.fence }
        },
        { store, name: 'send', withLease: true },
      ),
    )
    await expect(send('ada@example.com')).rejects.toThrow('gateway refused the connection')
    // A tombstone keeps the fence: the second holder is fence 2.
    expect(await send('ada@example.com')).toEqual({ sent: 'ada@example.com', fence: 2 })
    expect(runs).toBe(2)
  })

  it('stores a failure after commit(): replays rethrow IdempotentError with name, message and code only', async () => {
    const store = await fixture.open({ offset: 0 })
    let runs = 0
    let leaseKey = ''
    class PaymentDeclined extends Error {
      override readonly name = 'PaymentDeclined'
      readonly code = 'card_declined'
    }
    const pay = track(
      idempotent(
        async (lease: Lease, cents: number) => {
          runs++
          leaseKey = lease.key
          lease.commit()
          throw new PaymentDeclined(`declined ${cents}`)
        },
        { store, name: 'pay', withLease: true },
      ),
    )
    const first = await pay(700).catch((e: unknown) => e)
    expect(first).toBeInstanceOf(PaymentDeclined)
    const replayed = await pay(700).catch((e: unknown) => e)
    expect(runs).toBe(1)
    expect(replayed).toBeInstanceOf(IdempotentError)
    expect(replayed).toMatchObject({
      originalName: 'PaymentDeclined',
      message: 'declined 700',
      originalCode: 'card_declined',
      replayed: true,
    })
    const record = await store.get(leaseKey)
    const stored = new TextDecoder().decode(record?.response?.body)
    expect(JSON.parse(stored)).toEqual({
      v: 1,
      error: { name: 'PaymentDeclined', message: 'declined 700', code: 'card_declined' },
    })
    expect(stored).not.toContain('idempotent-stores.test')
  })

  it('keeps the key for a function that runs longer than its lease (heartbeat)', async () => {
    const store = await fixture.open({ offset: 0 })
    const hold = gate()
    let runs = 0
    let aborted = false
    const slow = track(
      idempotent(
        async (lease: Lease, id: string) => {
          // Only the first run waits: without a heartbeat a duplicate would take over and return at once.
          if (++runs === 1) await hold.promise
          aborted = lease.signal.aborted
          return `slow ${id}`
        },
        { store, name: 'slow', withLease: true, leaseMs: 500 },
      ),
    )
    const first = slow('x')
    // Three leases later the record is still held: a duplicate is told to wait, not run.
    await sleep(1_500)
    await expect(slow('x')).rejects.toBeInstanceOf(IdempotencyInProgressError)
    hold.open()
    expect(await first).toBe('slow x')
    expect(aborted).toBe(false)
    expect(await slow('x')).toBe('slow x')
    expect(runs).toBe(1)
  })

  it('lets a call take over a key whose holder lost its lease; the old holder learns it', async () => {
    const clock = { offset: 0 }
    const store = await fixture.open(clock)
    const started = gate()
    const hold = gate()
    const leases: Lease[] = []
    const task = track(
      idempotent(
        async (lease: Lease, id: string) => {
          leases.push(lease)
          if (leases.length === 1) {
            started.open()
            await hold.promise
          }
          return `result of holder ${lease.fence} for ${id}`
        },
        { store, name: 'task', withLease: true, leaseMs: 3_000 },
      ),
    )
    const stalled = task('t')
    await started.promise
    // The store's clock passes the holder's lease, as if its process had been frozen that long.
    clock.offset = 10_000
    expect(await task('t')).toBe('result of holder 2 for t')
    const [first, second] = leases
    expect(second).toMatchObject({ fence: 2, takeover: true, previousFence: 1 })
    // The old holder's next heartbeat is refused: its signal fires.
    if (first !== undefined && !first.signal.aborted) await once(first.signal, 'abort')
    hold.open()
    await expect(stalled).rejects.toBeInstanceOf(IdempotencyInProgressError)
    expect(await task('t')).toBe('result of holder 2 for t')
    expect(leases).toHaveLength(2)
  })

  it('runs again once the retention has passed', async () => {
    const clock = { offset: 0 }
    const store = await fixture.open(clock)
    let runs = 0
    const tick = track(idempotent(async () => ++runs, { store, name: 'tick', retentionMs: 60_000 }))
    expect(await tick()).toBe(1)
    clock.offset = 59_000
    expect(await tick()).toBe(1)
    clock.offset = 61_000
    expect(await tick()).toBe(2)
  })

  it('refuses a return value it cannot store, and releases the key', async () => {
    const store = await fixture.open({ offset: 0 })
    let runs = 0
    class Row {
      constructor(readonly id: number) {}
    }
    const load = track(
      idempotent(
        async (id: number): Promise<unknown> => {
          runs++
          return runs === 1 ? { rows: [new Row(id)] } : { rows: [{ id }] }
        },
        { store, name: 'load' },
      ),
    )
    const error = await load(3).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IdempotencyValueError)
    expect(error).toMatchObject({ reason: 'unsupported', path: '$.rows[0]' })
    expect(await load(3)).toEqual({ rows: [{ id: 3 }] })
    expect(await load(3)).toEqual({ rows: [{ id: 3 }] })
    expect(runs).toBe(2)
  })

  it('fails closed when the store fails: IdempotencyStoreError, the function never runs', async () => {
    const store = await fixture.broken()
    let runs = 0
    const work = track(
      idempotent(
        async (id: string) => {
          runs++
          return id
        },
        { store, name: 'work' },
      ),
    )
    const error = await work('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IdempotencyStoreError)
    expect((error as IdempotencyStoreError).cause).toBeInstanceOf(IdempotencyStoreError)
    expect(runs).toBe(0)

    // Fail open only when asked: the function runs unprotected (fence 0), nothing stored.
    const open = track(
      idempotent(
        async (lease: Lease, id: string) => {
          runs++
          return { id, fence: lease.fence }
        },
        { store, name: 'work', withLease: true, onStoreError: 'pass' },
      ),
    )
    expect(await open('k')).toEqual({ id: 'k', fence: 0 })
    expect(await open('k')).toEqual({ id: 'k', fence: 0 })
    expect(runs).toBe(2)
  })
})
