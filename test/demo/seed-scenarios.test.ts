// The seed's four scenarios and its concurrent test, over real sockets against the payments demo.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import {
  charge,
  charges,
  type InProcessDemo,
  problemOf,
  type RawResponse,
  SEED_PAYLOAD,
  simultaneously,
  startDemo,
} from '../support/http.js'

function expectFresh(res: RawResponse): Charge {
  expect(res.status, res.body.toString()).toBe(200)
  expect(res.header('idempotency-cached')).toBe('false')
  expect(res.header('idempotent-replayed')).toBeUndefined()
  return res.json() as Charge
}

function expectReplayOf(res: RawResponse, first: RawResponse): void {
  expect(res.status).toBe(first.status)
  expect(res.header('idempotency-cached')).toBe('true')
  expect(res.header('idempotent-replayed')).toBe('true')
  expect(res.header('content-type')).toBe(first.header('content-type'))
  expect(res.header('content-length')).toBe(String(first.body.byteLength))
  // Byte for byte, not "an equal object": the replay is the stored response, not a re-rendering.
  expect(res.body.equals(first.body), `${res.body.toString()} vs ${first.body.toString()}`).toBe(true)
}

function expectConflict(res: RawResponse): void {
  expect(res.status, res.body.toString()).toBe(409)
  expect(problemOf(res).error).toBe('REQUEST_IN_PROGRESS')
  const retryAfter = res.header('retry-after') ?? ''
  expect(retryAfter).toMatch(/^\d+$/)
  expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
}

describe("the seed's four scenarios", () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo()
  })
  afterAll(() => demo.close())

  it('Test 1: the first request processes and charges once (Idempotency-Cached: false)', async () => {
    const before = await charges(demo.url)
    const res = await charge(demo.url, randomUUID())
    const body = expectFresh(res)
    expect(body).toMatchObject({ amount: 5000, currency: 'usd', customerId: 'cus_123', status: 'succeeded' })
    expect(body.id).toMatch(/^ch_[0-9a-f]+$/)
    const after = await charges(demo.url)
    expect(after.attempts - before.attempts).toBe(1)
    expect(after.charges.at(-1)?.id).toBe(body.id)
  })

  it('Test 2: a retry with the same key replays the same bytes and does not charge again', async () => {
    const key = randomUUID()
    const first = await charge(demo.url, key)
    const id = expectFresh(first).id
    const before = await charges(demo.url)
    const retry = await charge(demo.url, key)
    expectReplayOf(retry, first)
    expect((retry.json() as Charge).id).toBe(id)
    // A second retry is a replay too: the record is not consumed by replaying it.
    expectReplayOf(await charge(demo.url, key), first)
    const after = await charges(demo.url)
    expect(after.attempts).toBe(before.attempts)
    expect(after.charges.filter((c) => c.id === id)).toHaveLength(1)
  })

  it('Test 3: the same key with a different body gets 422 IDEMPOTENCY_KEY_REUSED as problem+json', async () => {
    const key = randomUUID()
    const first = await charge(demo.url, key)
    expectFresh(first)
    const before = await charges(demo.url)
    const reused = await charge(demo.url, key, { ...SEED_PAYLOAD, amount: 10000 })
    expect(reused.status, reused.body.toString()).toBe(422)
    expect(reused.header('idempotent-replayed')).toBeUndefined()
    const problem = problemOf(reused)
    expect(problem.error).toBe('IDEMPOTENCY_KEY_REUSED')
    expect(problem.status).toBe(422)
    expect(problem.type).toEqual(expect.any(String))
    expect((await charges(demo.url)).attempts).toBe(before.attempts)
    // The original request still replays after the rejected one.
    expectReplayOf(await charge(demo.url, key), first)
  })

  it('Test 4: a different key creates a new charge', async () => {
    const first = expectFresh(await charge(demo.url, randomUUID()))
    const before = await charges(demo.url)
    const second = expectFresh(await charge(demo.url, randomUUID()))
    expect(second.id).not.toBe(first.id)
    expect((await charges(demo.url)).attempts).toBe(before.attempts + 1)
  })
})

describe("the seed's concurrent test, with a 500 ms gateway", () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo({ gatewayLatencyMs: 500 })
  })
  afterAll(() => demo.close())

  for (const n of [10, 100]) {
    it(`${n} concurrent requests on one key: one charge, the others 409 with Retry-After`, async () => {
      const before = await charges(demo.url)
      const key = randomUUID()
      // The seed's concurrent payload has no currency: the demo defaults it to usd.
      const payload = { amount: 5000, customerId: 'cus_123' }
      const results = await simultaneously(n, (gate) => charge(demo.url, key, payload, [], gate))

      const successes = results.filter((r) => r.status >= 200 && r.status < 300)
      const others = results.filter((r) => r.status < 200 || r.status >= 300)
      expect(successes).toHaveLength(1)
      expect(others).toHaveLength(n - 1)
      for (const res of others) expectConflict(res)
      const ids = new Set(successes.map((r) => (r.json() as Charge).id))
      expect(ids.size).toBe(1)

      const after = await charges(demo.url)
      expect(after.attempts - before.attempts).toBe(1)
      expect(after.charges.length - before.charges.length).toBe(1)
      const [id] = [...ids]
      expect(after.charges.at(-1)).toMatchObject({ id, currency: 'usd', amount: 5000 })

      // Once it finished, every retry gets the one charge.
      const late = await charge(demo.url, key, payload)
      expect(late.status).toBe(200)
      expect(late.header('idempotent-replayed')).toBe('true')
      expect((late.json() as Charge).id).toBe(id)
    })
  }

  it('checks the fingerprint before the state: a different body while the first runs gets 422, not 409', async () => {
    const key = randomUUID()
    const first = charge(demo.url, key)
    await sleep(150)
    const same = await charge(demo.url, key)
    expectConflict(same)
    const different = await charge(demo.url, key, { ...SEED_PAYLOAD, amount: 10000 })
    expect(different.status, different.body.toString()).toBe(422)
    expect(problemOf(different).error).toBe('IDEMPOTENCY_KEY_REUSED')
    expectFresh(await first)
  })
})
