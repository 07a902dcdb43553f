// idempotent(fn) on the memory store: how calls are keyed, scoped and named; options; events; types.
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { IdempotencyConfigError, IdempotencyError, IdempotencyStoreError } from '../core/errors.js'
import type { IdempotencyEvent } from '../core/events.js'
import type { Lease } from '../core/lease.js'
import { MemoryStore } from '../stores/memory/memory-store.js'
import {
  IdempotencyInProgressError,
  IdempotencyKeyReusedError,
  IdempotencyValueError,
  IdempotentError,
} from './errors.js'
import { type IdempotentFunction, idempotent } from './idempotent.js'

const made: Array<IdempotentFunction<never[], unknown>> = []
afterEach(async () => {
  for (const fn of made.splice(0)) await fn.close({ graceMs: 0 })
})

function counted<A extends unknown[], R>(body: (...args: A) => R) {
  const calls: A[] = []
  const fn = async (...args: A) => {
    calls.push(args)
    return body(...args)
  }
  return { fn, calls }
}

function keep<F extends IdempotentFunction<never[], unknown>>(fn: F): F {
  made.push(fn)
  return fn
}

describe('idempotent(fn): keys', () => {
  it('keys by the arguments by default: equal arguments (any member order) run once', async () => {
    const { fn, calls } = counted((order: { id: string; cents: number }) => ({ ...order }))
    const charge = keep(idempotent(fn, { store: new MemoryStore(), name: 'charge' }))
    await charge({ id: 'a', cents: 1 })
    await charge(JSON.parse('{"cents":1,"id":"a"}') as { id: string; cents: number })
    expect(calls).toHaveLength(1)
    await charge({ id: 'a', cents: 2 })
    expect(calls).toHaveLength(2)
  })

  it('tells types apart in the arguments: a Date is not its ISO string, 1n is not 1', async () => {
    const { fn, calls } = counted((value: unknown) => typeof value)
    const kind = keep(idempotent(fn, { store: new MemoryStore(), name: 'kind' }))
    const when = new Date(0)
    expect(await kind(when)).toBe('object')
    expect(await kind(when.toISOString())).toBe('string')
    expect(await kind(1n)).toBe('bigint')
    expect(await kind(1)).toBe('number')
    expect(await kind(undefined)).toBe('undefined')
    expect(await kind(null)).toBe('object')
    expect(calls).toHaveLength(6)
  })

  it('uses options.key and compares options.fingerprint on reuse', async () => {
    const { fn, calls } = counted((event: { id: string; data: string; receivedAt: number }) => event.data)
    const handle = keep(
      idempotent(fn, {
        store: new MemoryStore(),
        name: 'webhook',
        key: (event) => event.id,
        // A redelivery differs in receivedAt only; that must replay, not be called a reuse.
        fingerprint: (event) => event.data,
      }),
    )
    expect(await handle({ id: 'evt_1', data: 'x', receivedAt: 1 })).toBe('x')
    expect(await handle({ id: 'evt_1', data: 'x', receivedAt: 2 })).toBe('x')
    await expect(handle({ id: 'evt_1', data: 'y', receivedAt: 3 })).rejects.toBeInstanceOf(IdempotencyKeyReusedError)
    expect(calls).toHaveLength(1)
  })

  it('takes an explicit key with withKey()', async () => {
    const { fn, calls } = counted((n: number) => n * 2)
    const double = keep(idempotent(fn, { store: new MemoryStore(), name: 'double' }))
    expect(await double.withKey('job-7', 4)).toBe(8)
    expect(await double.withKey('job-7', 4)).toBe(8)
    await expect(double.withKey('job-7', 5)).rejects.toBeInstanceOf(IdempotencyKeyReusedError)
    expect(await double.withKey('job-8', 5)).toBe(10)
    expect(calls).toHaveLength(2)
  })

  it('accepts keys outside the header syntax, each its own key', async () => {
    const { fn, calls } = counted((key: string) => key)
    const echo = keep(idempotent(fn, { store: new MemoryStore(), name: 'echo', key: (key) => key }))
    const keys = ['abc', '"abc"', 'with space', 'ünïcode', 'x'.repeat(300), 'x'.repeat(301)]
    for (const key of keys) expect(await echo(key)).toBe(key)
    for (const key of keys) expect(await echo(key)).toBe(key)
    expect(calls).toHaveLength(keys.length)
  })

  it('refuses an empty or non-string key', async () => {
    const { fn, calls } = counted((key: unknown) => key)
    const bad = keep(idempotent(fn, { store: new MemoryStore(), name: 'bad', key: (key) => key as string }))
    await expect(bad('')).rejects.toBeInstanceOf(IdempotencyConfigError)
    await expect(bad(42)).rejects.toBeInstanceOf(IdempotencyConfigError)
    expect(calls).toHaveLength(0)
  })

  it('refuses arguments it cannot fingerprint before running, unless a fingerprint is given', async () => {
    const { fn, calls } = counted((_callback: () => void, id: string) => id)
    const store = new MemoryStore()
    const plain = keep(idempotent(fn, { store, name: 'cb' }))
    const error = await plain(() => {}, 'a').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IdempotencyValueError)
    expect(error).toMatchObject({ reason: 'unsupported', path: '$[0]' })
    expect(calls).toHaveLength(0)
    const keyed = keep(idempotent(fn, { store, name: 'cb', key: (_cb, id) => id, fingerprint: (_cb, id) => id }))
    expect(await keyed(() => {}, 'a')).toBe('a')
    expect(await keyed(() => {}, 'a')).toBe('a')
    expect(calls).toHaveLength(1)
  })
})

describe('idempotent(fn): names and scopes', () => {
  it('keeps two functions with the same key apart (no false reuse error)', async () => {
    const store = new MemoryStore()
    const email = counted((orderId: string) => `email ${orderId}`)
    const ship = counted((orderId: string) => `ship ${orderId}`)
    const sendEmail = keep(idempotent(email.fn, { store, name: 'sendEmail', key: (id) => id }))
    const shipOrder = keep(idempotent(ship.fn, { store, name: 'shipOrder', key: (id) => id }))
    expect(await sendEmail('o-1')).toBe('email o-1')
    expect(await shipOrder('o-1')).toBe('ship o-1')
    expect(await sendEmail('o-1')).toBe('email o-1')
    expect([email.calls.length, ship.calls.length]).toEqual([1, 1])
  })

  it('takes the name from the function, and requires one when it has none', () => {
    const store = new MemoryStore()
    async function named() {
      return 1
    }
    expect(() => keep(idempotent(named, { store }))).not.toThrow()
    expect(() => idempotent(async () => 1, { store })).toThrow(IdempotencyConfigError)
    expect(() => idempotent(async () => 1, { store, name: 'a\0b' })).toThrow(IdempotencyConfigError)
  })

  it('keeps scopes apart: the same key in two tenants runs twice', async () => {
    const { fn, calls } = counted((tenant: string, id: string) => `${tenant}/${id}`)
    const run = keep(
      idempotent(fn, { store: new MemoryStore(), name: 'run', key: (_t, id) => id, scope: (tenant) => tenant }),
    )
    expect(await run('acme', 'job')).toBe('acme/job')
    expect(await run('globex', 'job')).toBe('globex/job')
    expect(await run('acme', 'job')).toBe('acme/job')
    expect(calls).toHaveLength(2)
  })
})

describe('idempotent(fn): outcomes', () => {
  it('runs again after lease.release(), even though the function returned', async () => {
    let runs = 0
    const poll = keep(
      idempotent(
        async (lease: Lease) => {
          runs++
          if (runs === 1) lease.release()
          return runs
        },
        { store: new MemoryStore(), name: 'poll', withLease: true },
      ),
    )
    expect(await poll()).toBe(1)
    expect(await poll()).toBe(2)
    expect(await poll()).toBe(2)
  })

  it('refuses a value over maxValueBytes and releases the key', async () => {
    let runs = 0
    const big = keep(
      idempotent(async () => 'x'.repeat(++runs === 1 ? 2_000 : 10), {
        store: new MemoryStore(),
        name: 'big',
        maxValueBytes: 1_000,
      }),
    )
    await expect(big()).rejects.toMatchObject({ name: 'IdempotencyValueError', reason: 'too_large' })
    expect(await big()).toBe('x'.repeat(10))
    expect(runs).toBe(2)
  })

  it('stores a refused value as a failure once committed: replays rethrow it, never run again', async () => {
    let runs = 0
    const leak = keep(
      idempotent(
        async (lease: Lease) => {
          runs++
          lease.commit()
          return { callback: () => runs }
        },
        { store: new MemoryStore(), name: 'leak', withLease: true },
      ),
    )
    await expect(leak()).rejects.toBeInstanceOf(IdempotencyValueError)
    const replayed = await leak().catch((e: unknown) => e)
    expect(replayed).toBeInstanceOf(IdempotentError)
    expect(replayed).toMatchObject({ originalName: 'IdempotencyValueError', originalCode: 'ERR_IDEMPOTENCY_VALUE' })
    expect(runs).toBe(1)
  })

  it('stores what a thrown non-Error says', async () => {
    const odd = keep(
      idempotent(
        async (lease: Lease) => {
          lease.commit()
          throw 'plain string'
        },
        { store: new MemoryStore(), name: 'odd', withLease: true },
      ),
    )
    await expect(odd()).rejects.toBe('plain string')
    await expect(odd()).rejects.toMatchObject({ originalName: 'Error', message: 'plain string' })
  })

  it('throws errors that are all IdempotencyError, with stable codes', async () => {
    const { fn } = counted((id: string) => id)
    const run = keep(idempotent(fn, { store: new MemoryStore(), name: 'codes', key: () => 'same' }))
    await run('a')
    const reused = await run('b').catch((e: unknown) => e)
    expect(reused).toBeInstanceOf(IdempotencyError)
    expect(reused).toMatchObject({ code: 'ERR_IDEMPOTENCY_KEY_REUSED' })
    for (const error of [new IdempotencyInProgressError(1000), new IdempotentError('E', 'm', undefined)]) {
      expect(error).toBeInstanceOf(IdempotencyError)
    }
    expect(new IdempotencyInProgressError(1000).code).toBe('ERR_IDEMPOTENCY_IN_PROGRESS')
  })

  it('works with a synchronous function', async () => {
    let runs = 0
    const sync = keep(idempotent((n: number) => n + ++runs, { store: new MemoryStore(), name: 'sync' }))
    expect(await sync(1)).toBe(2)
    expect(await sync(1)).toBe(2)
  })

  it('emits the engine events with the storage key, never the raw key or arguments', async () => {
    const events: IdempotencyEvent[] = []
    const secret = keep(
      idempotent(async (card: string) => card.length, {
        store: new MemoryStore(),
        name: 'secret',
        key: (card) => `card-${card}`,
        onEvent: (event) => events.push(event),
      }),
    )
    await secret('4242424242424242')
    await secret('4242424242424242')
    expect(events.map((e) => e.type)).toEqual(['acquired', 'completed', 'replayed'])
    expect(events[0]?.key).toMatch(/^[0-9a-f]{64}$/)
    expect(JSON.stringify(events)).not.toContain('4242')
  })

  it('takes no new calls once closed', async () => {
    const { fn, calls } = counted(() => 1)
    const once = idempotent(fn, { store: new MemoryStore(), name: 'once' })
    await once.close()
    const error = await once().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IdempotencyStoreError)
    expect((error as IdempotencyStoreError).reason).toBe('closing')
    expect(calls).toHaveLength(0)
  })

  it('types the wrapper after the function, without the lease', () => {
    const store = new MemoryStore()
    const plain = idempotent(async (id: string, n?: number) => ({ id, n }), { store, name: 'p' })
    expectTypeOf(plain).parameters.toEqualTypeOf<[id: string, n?: number]>()
    expectTypeOf(plain).returns.toEqualTypeOf<Promise<{ id: string; n: number | undefined }>>()
    const leased = idempotent(async (lease: Lease, id: string) => lease.fence + id, {
      store,
      name: 'l',
      withLease: true,
      key: (id) => id,
    })
    expectTypeOf(leased).parameters.toEqualTypeOf<[id: string]>()
    expectTypeOf(leased.withKey).parameters.toEqualTypeOf<[key: string, id: string]>()
    expectTypeOf(leased).returns.toEqualTypeOf<Promise<string>>()
    void plain.close()
    void leased.close()
  })
})
