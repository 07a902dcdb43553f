// A client that hangs up mid-request does not cancel the charge or lose it: the retry replays it.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import { charge, charges, type InProcessDemo, type RawResponse, startDemo } from '../support/http.js'

describe('client disconnect', () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo({ gatewayLatencyMs: 400 })
  })
  afterAll(() => demo.close())

  it('the socket destroyed while the gateway works: the charge completes once and a retry replays it', async () => {
    const key = randomUUID()
    const hungUp = charge(demo.url, key, undefined, [], {
      onSocket: (socket) => {
        socket.once('connect', () => setTimeout(() => socket.destroy(), 150))
      },
    })
    await expect(hungUp).rejects.toThrow()
    // It hung up mid-request: the gateway has not answered yet.
    expect((await charges(demo.url)).charges).toHaveLength(0)

    // The charge goes through although nobody listens for it any more.
    let made: Charge[] = []
    for (const until = performance.now() + 3000; made.length === 0 && performance.now() < until; ) {
      await sleep(50)
      made = (await charges(demo.url)).charges
    }
    expect(made).toHaveLength(1)

    // Then the retry gets that charge (a 409 only while it is still being stored).
    let retry: RawResponse = await charge(demo.url, key)
    for (const until = performance.now() + 3000; retry.status === 409 && performance.now() < until; ) {
      await sleep(50)
      retry = await charge(demo.url, key)
    }
    expect(retry.status, retry.body.toString()).toBe(200)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect((retry.json() as Charge).id).toBe(made[0]?.id)
    expect((await charges(demo.url)).attempts).toBe(1)
  })
})
