// One key under two bearer tokens is two requests: each tenant gets its own charge and replays its own.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import { charge, charges, type InProcessDemo, startDemo } from '../support/http.js'

describe('tenant isolation', () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo()
  })
  afterAll(() => demo.close())

  it('the same key under two Authorization tokens charges twice, and each replays its own', async () => {
    const key = randomUUID()
    const alice = [['Authorization', 'Bearer tok_alice']] as const
    const bob = [['Authorization', 'Bearer tok_bob']] as const
    const before = await charges(demo.url)

    const a1 = await charge(demo.url, key, undefined, alice)
    const b1 = await charge(demo.url, key, undefined, bob)
    expect(a1.status, a1.body.toString()).toBe(200)
    expect(b1.status, b1.body.toString()).toBe(200)
    // Bob's first request is a first execution, not Alice's response.
    expect(b1.header('idempotency-cached')).toBe('false')
    expect(b1.header('idempotent-replayed')).toBeUndefined()
    const aliceId = (a1.json() as Charge).id
    const bobId = (b1.json() as Charge).id
    expect(bobId).not.toBe(aliceId)

    const a2 = await charge(demo.url, key, undefined, alice)
    const b2 = await charge(demo.url, key, undefined, bob)
    expect(a2.header('idempotent-replayed')).toBe('true')
    expect(b2.header('idempotent-replayed')).toBe('true')
    expect(a2.body.equals(a1.body)).toBe(true)
    expect(b2.body.equals(b1.body)).toBe(true)

    const after = await charges(demo.url)
    expect(after.charges.slice(before.charges.length).map((c) => c.id)).toEqual([aliceId, bobId])
  })

  it('a different body under another tenant is not a key reuse', async () => {
    const key = randomUUID()
    const a = await charge(demo.url, key, undefined, [['Authorization', 'Bearer tok_carol']])
    const b = await charge(demo.url, key, { amount: 777, customerId: 'cus_456' }, [
      ['Authorization', 'Bearer tok_dave'],
    ])
    expect(a.status).toBe(200)
    expect(b.status, b.body.toString()).toBe(200)
    expect((b.json() as Charge).amount).toBe(777)
  })

  it('no Authorization is a tenant of its own', async () => {
    const key = randomUUID()
    const anonymous = await charge(demo.url, key)
    const erin = await charge(demo.url, key, undefined, [['Authorization', 'Bearer tok_erin']])
    expect(anonymous.status).toBe(200)
    expect(erin.header('idempotency-cached')).toBe('false')
    expect((erin.json() as Charge).id).not.toBe((anonymous.json() as Charge).id)
  })
})
