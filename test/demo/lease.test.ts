// The lease over real time: a heartbeat keeps a 3 s operation under a 1 s lease single; a stopped one lets a retry take over.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import { createIdempotency, MemoryStore } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterEach, describe, expect, it } from 'vitest'
import { type Charge, FakeGateway } from '../../examples/payments/gateway.js'
import { HeldLease } from '../../src/core/lease.js'
import {
  charge,
  charges,
  closeServer,
  type InProcessDemo,
  listen,
  problemOf,
  SEED_PAYLOAD,
  startDemo,
} from '../support/http.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

describe('the heartbeat', () => {
  it('a 3-second charge under a 1-second lease runs once: duplicates at 1.5 s and 2.5 s get 409', async () => {
    const demo: InProcessDemo = await startDemo({ leaseMs: 1000, gatewayLatencyMs: 3000 })
    cleanups.push(() => demo.close())
    const key = randomUUID()
    const startedAt = performance.now()
    const first = charge(demo.url, key)

    // Without the heartbeat the lease lapses at 1 s and these would take over and charge again.
    await sleep(1500 - (performance.now() - startedAt))
    const at1500 = await charge(demo.url, key)
    await sleep(2500 - (performance.now() - startedAt))
    const at2500 = await charge(demo.url, key)
    for (const duplicate of [at1500, at2500]) {
      expect(duplicate.status, duplicate.body.toString()).toBe(409)
      expect(problemOf(duplicate).error).toBe('REQUEST_IN_PROGRESS')
      expect(Number(duplicate.header('retry-after'))).toBeGreaterThanOrEqual(1)
    }

    const done = await first
    expect(done.status, done.body.toString()).toBe(200)
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(2900)
    const replay = await charge(demo.url, key)
    expect(replay.header('idempotent-replayed')).toBe('true')
    expect(replay.body.equals(done.body)).toBe(true)
    const { charges: made, attempts } = await charges(demo.url)
    expect(attempts).toBe(1)
    expect(made.map((c) => c.id)).toEqual([(done.json() as Charge).id])
  })
})

describe('takeover after the heartbeat stops (a simulated crash)', () => {
  it('app B runs the request once the lease lapsed, and its route sees takeover and the previous fence', async () => {
    const store = new MemoryStore()
    const body = Buffer.from(JSON.stringify(SEED_PAYLOAD))
    const key = randomUUID()

    // Instance A acquires the key exactly as its middleware would for this request, then "crashes".
    const engineA = createIdempotency({ store, leaseMs: 1000, required: true })
    const decision = await engineA.handle({
      method: 'POST',
      url: '/api/payments/charge',
      header: (name) => (name === 'idempotency-key' ? key : undefined),
      body: { kind: 'raw', bytes: body },
      contentType: 'application/json',
      scope: '',
    })
    if (decision.kind !== 'execute') throw new Error(`instance A did not acquire: ${JSON.stringify(decision)}`)
    const leaseA = decision.execution.lease
    expect(leaseA).toBeInstanceOf(HeldLease)
    ;(leaseA as HeldLease).stop()

    // Instance B: the demo's route shape, on the same store, showing what the lease tells it.
    const gateway = new FakeGateway()
    const app = express()
    app.use(json())
    app.use(idempotency({ store, leaseMs: 1000, required: true }))
    app.post('/api/payments/charge', async (req, res) => {
      const lease = req.idempotency
      if (lease === undefined) throw new Error('no lease')
      lease.commit()
      const made = await gateway.createCharge({ ...SEED_PAYLOAD, idempotencyKey: lease.key })
      res.json({ charge: made, takeover: lease.takeover, fence: lease.fence, previousFence: lease.previousFence })
    })
    const server = app.listen(0, '127.0.0.1')
    const url = await listen(server)
    cleanups.push(() => closeServer(server))

    // While A's lease lives, B refuses: the crash is not yet visible.
    const early = await charge(url, key)
    expect(early.status, early.body.toString()).toBe(409)
    expect(gateway.attempts).toBe(0)

    await sleep(1200)
    const taken = await charge(url, key)
    expect(taken.status, taken.body.toString()).toBe(200)
    const seen = taken.json() as { charge: Charge; takeover: boolean; fence: number; previousFence: number }
    expect(seen.takeover).toBe(true)
    expect(seen.previousFence).toBe(leaseA.fence)
    expect(seen.fence).toBeGreaterThan(leaseA.fence)
    expect(gateway.attempts).toBe(1)

    // A wakes up and finishes: its result is not stored over B's (its token no longer owns the record).
    const late = await decision.execution.finish({
      kind: 'response',
      status: 200,
      headers: [['content-type', 'application/json']],
      body: Buffer.from('{"from":"A"}'),
    })
    expect(late).toBeNull()
    const replay = await charge(url, key)
    expect(replay.header('idempotent-replayed')).toBe('true')
    expect(replay.body.equals(taken.body)).toBe(true)
    expect(gateway.attempts).toBe(1)
  })
})
