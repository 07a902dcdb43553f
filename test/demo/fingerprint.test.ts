// What makes two requests "the same request" on the wire: path with query, raw body bytes, __proto__, depth.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { charge, charges, type InProcessDemo, problemOf, request, SEED_PAYLOAD, startDemo } from '../support/http.js'

describe('request fingerprint over the wire', () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo()
  })
  afterAll(() => demo.close())

  it('the query string is part of the request: the same key and body on ?x=1 is 422', async () => {
    const key = randomUUID()
    expect((await charge(demo.url, key)).status).toBe(200)
    const res = await request(`${demo.url}/api/payments/charge?source=retry`, {
      method: 'POST',
      headers: [
        ['Content-Type', 'application/json'],
        ['Idempotency-Key', key],
      ],
      body: JSON.stringify(SEED_PAYLOAD),
    })
    expect(res.status, res.body.toString()).toBe(422)
    expect(problemOf(res).error).toBe('IDEMPOTENCY_KEY_REUSED')
  })

  it('an own "__proto__" member is part of the body: adding one is 422, not a replay', async () => {
    const key = randomUUID()
    const plain = '{"amount":5000,"customerId":"cus_123","currency":"usd"}'
    expect((await charge(demo.url, key, plain)).status).toBe(200)
    const withProto = await charge(
      demo.url,
      key,
      '{"amount":5000,"customerId":"cus_123","currency":"usd","__proto__":{"x":1}}',
    )
    expect(withProto.status, withProto.body.toString()).toBe(422)
    expect(withProto.header('idempotent-replayed')).toBeUndefined()
  })

  it('a body nested deeper than the cap is 400 problem+json and charges nothing', async () => {
    const before = await charges(demo.url)
    const deep = `{"amount":5000,"customerId":"cus_123","meta":${'['.repeat(200)}${']'.repeat(200)}}`
    const res = await charge(demo.url, randomUUID(), deep)
    expect(res.status, res.body.toString()).toBe(400)
    expect(problemOf(res).error).toBe('INVALID_REQUEST_BODY')
    expect((await charges(demo.url)).attempts).toBe(before.attempts)
  })

  it('a charset parameter does not change the media type: the retry replays', async () => {
    const key = randomUUID()
    const first = await charge(demo.url, key)
    const retry = await request(`${demo.url}/api/payments/charge`, {
      method: 'POST',
      headers: [
        ['Content-Type', 'application/json; charset=utf-8'],
        ['Idempotency-Key', key],
      ],
      body: JSON.stringify(SEED_PAYLOAD),
    })
    expect(retry.status, retry.body.toString()).toBe(200)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect(retry.body.equals(first.body)).toBe(true)
  })
})
