// The engine without HTTP: construction checks, lease signal and assertHeld, complete retries, events, close.
import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../stores/memory/memory-store.js'
import { createEngine, type Decision, type Execution } from './engine.js'
import { IdempotencyConfigError, IdempotencyLeaseLostError } from './errors.js'
import type { IdempotencyEvent } from './events.js'
import type { IdempotencyRequest } from './http.js'
import type { HeldLease } from './lease.js'
import type { IdempotencyOptions } from './options.js'
import type { Store } from './store.js'

const crypto = {
  sha256: (data: Uint8Array) => createHash('sha256').update(data).digest(),
  randomBytes: (n: number) => randomBytes(n),
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function request(key: string, body = '{"a":1}', scope = ''): IdempotencyRequest {
  return {
    method: 'POST',
    url: '/charge',
    header: (name) => (name === 'idempotency-key' ? key : undefined),
    body: { kind: 'raw', bytes: new TextEncoder().encode(body) },
    contentType: 'application/json',
    scope,
  }
}

function storageKeyOf(key: string, scope = ''): string {
  return createHash('sha256').update(`${scope}\0${key}`).digest('hex')
}

function executing(decision: Decision): Execution {
  if (decision.kind !== 'execute') throw new Error(`expected execute, got ${decision.kind}`)
  return decision.execution
}

const ok = {
  kind: 'response',
  status: 200,
  headers: [['content-type', 'text/plain']],
  body: new Uint8Array([1]),
} as const

/** A real MemoryStore whose operations can be made to fail. */
function flaky(store: Store, fail: { extend?: boolean; complete?: number }): Store {
  return {
    begin: (i) => store.begin(i),
    complete: (i) => {
      if ((fail.complete ?? 0) > 0) {
        fail.complete = (fail.complete ?? 0) - 1
        return Promise.reject(new Error('connection reset'))
      }
      return store.complete(i)
    },
    release: (i) => store.release(i),
    extend: (i) => (fail.extend ? Promise.reject(new Error('unreachable')) : store.extend(i)),
    get: (k) => store.get(k),
    delete: (k, o) => store.delete(k, o),
  }
}

function engine(options: Partial<IdempotencyOptions> & { store?: Store } = {}) {
  return createEngine({ store: new MemoryStore(), ...options }, crypto)
}

describe('createEngine', () => {
  it('refuses at construction a lease too short for its heartbeat and extend deadline', () => {
    expect(() => engine({ leaseMs: 1000, heartbeatMs: 600, extendTimeoutMs: 400 })).toThrow(IdempotencyConfigError)
    expect(() => engine({ leaseMs: 1000 })).not.toThrow()
    expect(() => engine({ leaseMs: -1 })).toThrow(IdempotencyConfigError)
    expect(() => engine({ methods: ['GET'] })).toThrow(IdempotencyConfigError)
  })

  it('scopes keys: one key under two scopes is two records with two lease keys', async () => {
    const e = engine()
    const a = executing(await e.handle(request('k', '{}', 'tenant-a')))
    const b = executing(await e.handle(request('k', '{}', 'tenant-b')))
    expect(a.lease.key).not.toBe(b.lease.key)
    expect(a.lease.key).toMatch(/^[0-9a-f]{64}$/)
    await a.finish(ok)
    await b.finish(ok)
  })

  it('aborts the signal and fails assertHeld once the local deadline passes without a successful extend', async () => {
    const e = engine({ store: flaky(new MemoryStore(), { extend: true }), leaseMs: 600 })
    const execution = executing(await e.handle(request('stall')))
    expect(() => execution.lease.assertHeld()).not.toThrow()
    await sleep(700)
    expect(execution.lease.signal.aborted).toBe(true)
    expect(() => execution.lease.assertHeld()).toThrow(IdempotencyLeaseLostError)
    await execution.finish(ok)
  })

  it('assertHeld catches an event-loop stall longer than the lease before any timer runs', async () => {
    const e = engine({ leaseMs: 300 })
    const execution = executing(await e.handle(request('blocked')))
    const until = performance.now() + 400
    while (performance.now() < until) {
      // Blocks the loop: no heartbeat, no timer.
    }
    expect(() => execution.lease.assertHeld()).toThrow(IdempotencyLeaseLostError)
    await execution.finish(ok)
  })

  it('a holder that lost its lease cannot overwrite the new holder: unstored result, or 409 once aborted', async () => {
    const store = new MemoryStore()
    // A: cut off from the store for extends (its local deadline aborts it); B: healthy.
    const a = engine({ store: flaky(store, { extend: true }), leaseMs: 600 })
    const b = engine({ store, leaseMs: 600 })
    const aborted = executing(await a.handle(request('taken')))
    const crashed = executing(await a.handle(request('crashed')))
    ;(crashed.lease as HeldLease).stop()
    await sleep(650)
    const other = executing(await b.handle(request('taken')))
    expect(other.lease.takeover).toBe(true)
    expect(other.lease.previousFence).toBe(aborted.lease.fence)
    expect(other.lease.fence).toBe(aborted.lease.fence + 1)
    expect(aborted.lease.signal.aborted).toBe(true)
    expect((await aborted.finish(ok))?.status).toBe(409)
    const otherCrashed = executing(await b.handle(request('crashed')))
    expect(otherCrashed.lease.takeover).toBe(true)
    // Not aborted (its timers stopped, as in a frozen process): its answer goes out unstored.
    expect(await crashed.finish(ok)).toBeNull()
    await other.finish({ ...ok, body: new Uint8Array([2]) })
    await otherCrashed.finish({ ...ok, body: new Uint8Array([3]) })
    const replay = await b.handle(request('taken'))
    expect(replay.kind === 'respond' && Array.from(replay.response.body)).toEqual([2])
    const replayCrashed = await b.handle(request('crashed'))
    expect(replayCrashed.kind === 'respond' && Array.from(replayCrashed.response.body)).toEqual([3])
  })

  it('releases in the background a begin that timed out but applied later, so a retry is not stuck for a lease', async () => {
    const memory = new MemoryStore()
    // The begin reaches the store only after the engine gave up on it, as a resent command would.
    const late: Store = {
      ...flaky(memory, {}),
      begin: (input) =>
        new Promise((resolve, reject) => setTimeout(() => memory.begin(input).then(resolve, reject), 300)),
    }
    const e = engine({ store: late, beginTimeoutMs: 100, leaseMs: 30_000 })
    const first = await e.handle(request('late'))
    expect(first.kind === 'respond' && first.response.status).toBe(503)
    await sleep(1000)
    // The late begin applied (fence 1) and the engine released its token's record.
    expect(await memory.get(storageKeyOf('late'))).toMatchObject({ state: 'released', fence: 1 })
    const retry = executing(await engine({ store: memory }).handle(request('late')))
    expect(retry.lease.fence).toBe(2)
    await retry.finish(ok)
  })

  it('bounds the background releases a long outage starts, and keeps none past the lease', async () => {
    let releases = 0
    const down: Store = {
      ...flaky(new MemoryStore(), {}),
      begin: () => Promise.reject(new Error('connection refused')),
      release: () => {
        releases++
        return Promise.reject(new Error('connection refused'))
      },
    }
    const e = engine({ store: down, leaseMs: 300 })
    const answers = await Promise.all(Array.from({ length: 1_500 }, (_, i) => e.handle(request(`k${i}`))))
    expect(answers.every((a) => a.kind === 'respond' && a.response.status === 503)).toBe(true)
    // One first attempt per started loop: 1,024 loops at most, not one per refused request.
    expect(releases).toBe(1_024)
    await sleep(600)
    const settled = releases
    await sleep(400)
    // Past the lease every loop has given up: the record would have lapsed anyway.
    expect(releases).toBe(settled)
    // And the slots are free again for the next outage.
    await e.handle(request('after'))
    expect(releases).toBe(settled + 1)
  })

  it('retries complete while the lease holds, and the result is stored once the store answers', async () => {
    const fail = { complete: 3 }
    const events: IdempotencyEvent[] = []
    const e = engine({ store: flaky(new MemoryStore(), fail), onEvent: (event) => events.push(event) })
    const execution = executing(await e.handle(request('flap')))
    expect(await execution.finish(ok)).toBeNull()
    expect(fail.complete).toBe(0)
    const replay = await e.handle(request('flap'))
    expect(replay.kind).toBe('respond')
    expect(events.map((event) => event.type)).toEqual(['acquired', 'completed', 'replayed'])
  })

  it('never puts the raw key, the body or the scope in an event', async () => {
    const events: IdempotencyEvent[] = []
    const e = engine({ onEvent: (event) => events.push(event) })
    const secretKey = 'raw-key-4b1d'
    const execution = executing(await e.handle(request(secretKey, '{"card":"4242424242424242"}', 'tenant-secret')))
    await execution.finish(ok)
    await e.handle(request(secretKey, '{"card":"4242424242424242"}', 'tenant-secret'))
    const text = JSON.stringify(events)
    expect(events.length).toBe(3)
    for (const secret of [secretKey, '4242424242424242', 'tenant-secret']) expect(text).not.toContain(secret)
  })

  it('close() lets a running handler finish within the grace, then releases uncommitted holders', async () => {
    const store = new MemoryStore()
    const e = engine({ store })
    const finishing = executing(await e.handle(request('finishing')))
    const stuck = executing(await e.handle(request('stuck')))
    setTimeout(() => void finishing.finish(ok), 50)
    await e.close({ graceMs: 200 })
    expect(stuck.lease.signal.aborted).toBe(true)
    expect((await store.get(finishing.lease.key))?.state).toBe('completed')
    expect((await store.get(stuck.lease.key))?.state).toBe('released')
    const after = await e.handle(request('new-key'))
    expect(after.kind === 'respond' && after.response.status).toBe(503)
  })

  it('ends the lease once the outcome is stored or released: a handler still running cannot act on the key', async () => {
    const events: IdempotencyEvent[] = []
    const e = engine({ onEvent: (event) => events.push(event) })
    const execution = executing(await e.handle(request('answered-early')))
    expect(() => execution.lease.assertHeld()).not.toThrow()
    // An outer timeout answered 504 for the handler, which keeps running: the key is released.
    await execution.finish({ ...ok, status: 504 })
    expect(execution.lease.signal.aborted).toBe(true)
    expect(() => execution.lease.assertHeld()).toThrow(IdempotencyLeaseLostError)
    expect(events.map((event) => event.type)).toEqual(['acquired', 'released'])
  })

  it('stops extending and aborts after maxExecutionMs', async () => {
    const e = engine({ leaseMs: 3000, maxExecutionMs: 100 })
    const execution = executing(await e.handle(request('forever')))
    await sleep(150)
    expect(execution.lease.signal.aborted).toBe(true)
    await execution.finish(ok)
  })
})
