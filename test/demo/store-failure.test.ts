// A failing, hanging or full store answers a fast 503 with Retry-After, and the charge route never runs.
import { randomUUID } from 'node:crypto'
import express from 'express'
import {
  type BeginInput,
  type BeginResult,
  type CompleteInput,
  type DeleteResult,
  type ExtendInput,
  MemoryStore,
  type ReleaseInput,
  type Store,
  type StoredRecord,
} from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterEach, describe, expect, it } from 'vitest'
import { charge, charges, closeServer, listen, problemOf, type RawResponse, startDemo } from '../support/http.js'

/** A real MemoryStore whose `begin` can be made to fail or to hang; every other call goes straight through. */
class FaultyStore implements Store {
  readonly inner = new MemoryStore()
  begin: (input: BeginInput) => Promise<BeginResult> = (input) => this.inner.begin(input)
  begins = 0

  constructor(mode: 'reject' | 'hang' | 'ok') {
    this.setMode(mode)
  }

  setMode(mode: 'reject' | 'hang' | 'ok'): void {
    this.begin = (input) => {
      this.begins++
      if (mode === 'reject') return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379'))
      if (mode === 'hang') return new Promise<never>(() => {})
      return this.inner.begin(input)
    }
  }
  complete(input: CompleteInput): Promise<boolean> {
    return this.inner.complete(input)
  }
  release(input: ReleaseInput): Promise<boolean> {
    return this.inner.release(input)
  }
  extend(input: ExtendInput): Promise<boolean> {
    return this.inner.extend(input)
  }
  get(key: string): Promise<StoredRecord | null> {
    return this.inner.get(key)
  }
  delete(key: string, options?: { readonly force?: boolean }): Promise<DeleteResult> {
    return this.inner.delete(key, options)
  }
}

function expectUnavailable(res: RawResponse): void {
  expect(res.status, res.body.toString()).toBe(503)
  expect(problemOf(res).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
  const retryAfter = res.header('retry-after') ?? ''
  expect(retryAfter).toMatch(/^\d+$/)
  expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

describe('the store failing or hanging (fail closed)', () => {
  it('begin rejects: 503 at once, the gateway not called; the same key runs once the store is back', async () => {
    const store = new FaultyStore('reject')
    const demo = await startDemo({ store })
    cleanups.push(() => demo.close())
    const key = randomUUID()

    const startedAt = performance.now()
    const res = await charge(demo.url, key)
    expectUnavailable(res)
    expect(performance.now() - startedAt).toBeLessThan(1000)
    expect(store.begins).toBe(1)
    expect((await charges(demo.url)).attempts).toBe(0)

    store.setMode('ok')
    const later = await charge(demo.url, key)
    expect(later.status, later.body.toString()).toBe(200)
    expect(later.header('idempotency-cached')).toBe('false')
    expect((await charges(demo.url)).attempts).toBe(1)
  })

  it('begin never settles: 503 within beginTimeoutMs (default 2 s) + 1 s, the gateway not called', async () => {
    const store = new FaultyStore('hang')
    const demo = await startDemo({ store })
    cleanups.push(() => demo.close())

    const startedAt = performance.now()
    const res = await charge(demo.url, randomUUID())
    const elapsed = performance.now() - startedAt
    expectUnavailable(res)
    expect(elapsed).toBeGreaterThanOrEqual(1900)
    expect(elapsed).toBeLessThan(3000)
    expect((await charges(demo.url)).attempts).toBe(0)
  }, 6_000)

  it('the beginTimeoutMs option bounds a hanging begin, and the handler does not run', async () => {
    const store = new FaultyStore('hang')
    let runs = 0
    const app = express()
    app.use(json())
    app.use(idempotency({ store, required: true, beginTimeoutMs: 300 }))
    app.post('/api/payments/charge', (_req, res) => {
      runs++
      res.json({ ran: true })
    })
    const server = app.listen(0, '127.0.0.1')
    const url = await listen(server)
    cleanups.push(() => closeServer(server))

    const startedAt = performance.now()
    const res = await charge(url, randomUUID())
    const elapsed = performance.now() - startedAt
    expectUnavailable(res)
    expect(elapsed).toBeGreaterThanOrEqual(250)
    expect(elapsed).toBeLessThan(1300)
    expect(runs).toBe(0)
  }, 4_000)

  it('a full MemoryStore: 503, never evicting the record it holds', async () => {
    const demo = await startDemo({ store: new MemoryStore({ maxRecords: 1 }) })
    cleanups.push(() => demo.close())
    const kept = randomUUID()
    const first = await charge(demo.url, kept)
    expect(first.status).toBe(200)

    expectUnavailable(await charge(demo.url, randomUUID()))
    expect((await charges(demo.url)).attempts).toBe(1)
    // The live record survived the pressure: its retry still replays.
    const replay = await charge(demo.url, kept)
    expect(replay.header('idempotent-replayed')).toBe('true')
    expect(replay.body.equals(first.body)).toBe(true)
  })
})
