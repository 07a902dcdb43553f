// The commit point both ways: a refused connection is released and runs again; a decline is stored and replayed.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Charge, type ChargeRequest, FakeGateway } from '../../examples/payments/gateway.js'
import { charge, charges, type InProcessDemo, problemOf, startDemo } from '../support/http.js'

/** A gateway that fails in a way the route does not know: the error reaches Express's error handler. */
class BrokenGateway extends FakeGateway {
  override async createCharge(request: ChargeRequest): Promise<Charge> {
    if (request.customerId === 'cus_broken') {
      this.attempts++
      throw new Error('gateway answered garbage (stack trace must not leak)')
    }
    return super.createCharge(request)
  }
}

/** Counts every call the route makes, refused ones included (the demo's `attempts` counts only those that got through). */
class CountingGateway extends FakeGateway {
  calls = 0
  override createCharge(request: ChargeRequest): Promise<Charge> {
    this.calls++
    return super.createCharge(request)
  }
}

describe('the commit point', () => {
  let demo: InProcessDemo
  let gateway: CountingGateway
  beforeAll(async () => {
    gateway = new CountingGateway()
    demo = await startDemo({ gateway })
  })
  afterAll(() => demo.close())

  it('cus_gateway_down: 502, released, so a retry runs the route again', async () => {
    const key = randomUUID()
    const body = { amount: 5000, customerId: 'cus_gateway_down' }
    const calls = gateway.calls

    const first = await charge(demo.url, key, body)
    expect(first.status, first.body.toString()).toBe(502)
    expect(problemOf(first).error).toBe('GATEWAY_UNAVAILABLE')
    expect(first.header('idempotency-cached')).toBe('false')

    const retry = await charge(demo.url, key, body)
    expect(retry.status).toBe(502)
    expect(retry.header('idempotent-replayed')).toBeUndefined()
    expect(retry.header('idempotency-cached')).toBe('false')
    expect(gateway.calls - calls).toBe(2)
    // Nothing was charged either time.
    expect((await charges(demo.url)).charges.filter((c) => c.customerId === 'cus_gateway_down')).toEqual([])
  })

  it('cus_decline: 402 card_declined, stored, so a retry replays it without calling the gateway', async () => {
    const key = randomUUID()
    const body = { amount: 5000, customerId: 'cus_decline' }
    const before = await charges(demo.url)
    const calls = gateway.calls

    const first = await charge(demo.url, key, body)
    expect(first.status, first.body.toString()).toBe(402)
    expect(problemOf(first).error).toBe('card_declined')
    expect(first.header('idempotency-cached')).toBe('false')

    const retry = await charge(demo.url, key, body)
    expect(retry.status).toBe(402)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect(retry.header('idempotency-cached')).toBe('true')
    expect(retry.header('content-type')).toBe(first.header('content-type'))
    expect(retry.body.equals(first.body)).toBe(true)

    const after = await charges(demo.url)
    expect(after.attempts - before.attempts).toBe(1)
    expect(gateway.calls - calls).toBe(1)
  })
})

describe('a failure after commit', () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo({ gateway: new BrokenGateway() })
  })
  afterAll(() => demo.close())

  it('an unknown gateway error after commit is a 500 that is stored and replayed, without a stack trace', async () => {
    const key = randomUUID()
    const body = { amount: 5000, customerId: 'cus_broken' }
    const first = await charge(demo.url, key, body)
    expect(first.status, first.body.toString()).toBe(500)
    expect(problemOf(first).error).toBe('INTERNAL_ERROR')
    expect(first.body.toString()).not.toContain('garbage')
    expect(first.body.toString()).not.toMatch(/at .*\.ts:\d+/)

    // The charge may have happened: after the commit point the outcome is kept, never run again.
    const retry = await charge(demo.url, key, body)
    expect(retry.status).toBe(500)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect(retry.body.equals(first.body)).toBe(true)
    expect((await charges(demo.url)).attempts).toBe(1)
  })
})
