// Body-parser refusals are problem+json and never stored; the route's own 400 is stored; big numbers stay distinct.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import { charge, charges, type InProcessDemo, problemOf, request, SEED_PAYLOAD, startDemo } from '../support/http.js'

describe('bad request bodies', () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo()
  })
  afterAll(() => demo.close())

  const refusals: ReadonlyArray<{
    readonly what: string
    readonly status: number
    readonly error: string
    readonly send: (key: string) => ReturnType<typeof request>
  }> = [
    {
      what: 'an oversize body (20 KiB over a 16 KiB limit)',
      status: 413,
      error: 'REQUEST_BODY_TOO_LARGE',
      send: (key) => charge(demo.url, key, { ...SEED_PAYLOAD, note: 'x'.repeat(20 * 1024) }),
    },
    {
      what: 'malformed JSON',
      status: 400,
      error: 'MALFORMED_REQUEST_BODY',
      send: (key) => charge(demo.url, key, '{"amount":5000,"customerId":'),
    },
    {
      what: 'a body that is not JSON (text/plain)',
      status: 415,
      error: 'UNSUPPORTED_MEDIA_TYPE',
      send: (key) =>
        request(`${demo.url}/api/payments/charge`, {
          method: 'POST',
          headers: [
            ['Content-Type', 'text/plain'],
            ['Idempotency-Key', key],
          ],
          body: JSON.stringify(SEED_PAYLOAD),
        }),
    },
  ]
  for (const { what, status, error, send } of refusals) {
    it(`${what}: ${status} problem+json, not stored, the same key then runs`, async () => {
      const key = randomUUID()
      const before = await charges(demo.url)
      const refused = await send(key)
      expect(refused.status, refused.body.toString()).toBe(status)
      expect(problemOf(refused).error).toBe(error)
      expect(refused.header('idempotency-cached')).toBeUndefined()
      expect((await charges(demo.url)).attempts).toBe(before.attempts)

      // Not stored: the corrected request with the same key is a first execution, not a replay or a 422.
      const good = await charge(demo.url, key)
      expect(good.status, good.body.toString()).toBe(200)
      expect(good.header('idempotency-cached')).toBe('false')
      expect(good.header('idempotent-replayed')).toBeUndefined()
      expect((await charges(demo.url)).attempts).toBe(before.attempts + 1)
    })
  }

  it('invalid fields: 400 INVALID_REQUEST, stored, so a retry replays it and a changed body is 422', async () => {
    const key = randomUUID()
    const before = await charges(demo.url)
    const invalid = { amount: -5, customerId: 'cus_123' }
    const first = await charge(demo.url, key, invalid)
    expect(first.status, first.body.toString()).toBe(400)
    expect(problemOf(first).error).toBe('INVALID_REQUEST')
    expect(first.header('idempotency-cached')).toBe('false')

    const retry = await charge(demo.url, key, invalid)
    expect(retry.status).toBe(400)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect(retry.header('idempotency-cached')).toBe('true')
    expect(retry.header('content-type')).toBe(first.header('content-type'))
    expect(retry.body.equals(first.body)).toBe(true)

    const corrected = await charge(demo.url, key)
    expect(corrected.status).toBe(422)
    expect(problemOf(corrected).error).toBe('IDEMPOTENCY_KEY_REUSED')
    expect((await charges(demo.url)).attempts).toBe(before.attempts)
  })

  it('big numbers: 9007199254740993 then 9007199254740992 on one key is 422, not a replay', async () => {
    const key = randomUUID()
    // Both parse to the same double; only the raw bytes tell them apart.
    const body = (amount: string) => `{"amount":${amount},"customerId":"cus_123","currency":"usd"}`
    const first = await charge(demo.url, key, body('9007199254740993'))
    // Above Number.MAX_SAFE_INTEGER: the route refuses it, and that refusal is stored.
    expect(first.status, first.body.toString()).toBe(400)
    expect(problemOf(first).error).toBe('INVALID_REQUEST')

    const other = await charge(demo.url, key, body('9007199254740992'))
    expect(other.status, other.body.toString()).toBe(422)
    expect(other.header('idempotent-replayed')).toBeUndefined()
    expect(problemOf(other).error).toBe('IDEMPOTENCY_KEY_REUSED')

    // The control: the very same literal is a replay, so the 422 above came from the number alone.
    const same = await charge(demo.url, key, body('9007199254740993'))
    expect(same.status).toBe(400)
    expect(same.header('idempotent-replayed')).toBe('true')
    expect(same.body.equals(first.body)).toBe(true)
  })

  it('key order and whitespace do not change the request: a reordered body replays', async () => {
    const key = randomUUID()
    const first = await charge(demo.url, key, '{"amount":5000,"customerId":"cus_123","currency":"usd"}')
    expect(first.status).toBe(200)
    const reordered = await charge(demo.url, key, '{ "currency": "usd", "customerId": "cus_123", "amount": 5000 }')
    expect(reordered.status).toBe(200)
    expect(reordered.header('idempotent-replayed')).toBe('true')
    expect((reordered.json() as Charge).id).toBe((first.json() as Charge).id)
  })
})
