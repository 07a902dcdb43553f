// The idempotent fetch against the payments demo over real sockets: whatever is lost or retried, one charge.
import { randomUUID } from 'node:crypto'
import { type BeginInput, type BeginResult, MemoryStore } from 'idempotency-kit'
import {
  createIdempotentFetch,
  type IdempotentFetchOptions,
  idempotencyInfo,
  type RetryEvent,
} from 'idempotency-kit/client'
import { describe, it, type TestContext } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import { charge, charges, type InProcessDemo, SEED_PAYLOAD, startDemo } from '../support/http.js'
import { type LossyProxy, startLossyProxy } from './lossy-proxy.js'

/** A MemoryStore whose `begin` can be held and later let through: a store that hangs, then comes back. */
class StallingStore extends MemoryStore {
  #gate: Promise<void> | undefined
  #open: () => void = () => {}

  stall(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve))
  }

  resume(): void {
    this.#gate = undefined
    this.#open()
  }

  override async begin(input: BeginInput): Promise<BeginResult> {
    if (this.#gate !== undefined) await this.#gate
    return super.begin(input)
  }
}

/** The demo in-process, with a proxy in front that every client request goes through. */
async function demoBehindProxy(
  onTestFinished: TestContext['onTestFinished'],
  options: Parameters<typeof startDemo>[0] = {},
): Promise<{ demo: InProcessDemo; proxy: LossyProxy; chargeUrl: string }> {
  const demo = await startDemo(options)
  onTestFinished(() => demo.close())
  const proxy = await startLossyProxy(Number(new URL(demo.url).port))
  onTestFinished(() => proxy.close())
  return { demo, proxy, chargeUrl: `${proxy.url}/api/payments/charge` }
}

function post(body: object = SEED_PAYLOAD, key?: string) {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(key === undefined ? {} : { idempotencyKey: key }),
  }
}

/** A client with small backoff that records its retries. */
function client(options: IdempotentFetchOptions = {}) {
  const retries: RetryEvent[] = []
  const fetch = createIdempotentFetch({
    baseDelayMs: 10,
    maxDelayMs: 50,
    ...options,
    onRetry: (event) => {
      retries.push(event)
      options.onRetry?.(event)
    },
  })
  return { fetch, retries }
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function madeCharges(demo: InProcessDemo): Promise<Charge[]> {
  return (await charges(demo.url)).charges
}

describe.concurrent('retries that must end in exactly one charge', () => {
  it('a 503 while the store hangs is retried with the same key and charges once the store is back', async ({
    expect,
    onTestFinished,
  }) => {
    const store = new StallingStore()
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished, { store })
    store.stall()
    // The store comes back once the first 503 is in: its held begin applies late, and the engine frees it.
    const { fetch, retries } = client({ onRetry: () => store.resume() })

    const res = await fetch(chargeUrl, post())
    expect(res.status).toBe(200)
    const body = (await res.json()) as Charge
    expect(retries[0]?.cause).toEqual({ kind: 'status', status: 503, retryAfterMs: 2000 })
    expect(retries[0]?.delayMs).toBeGreaterThanOrEqual(2000)
    const info = idempotencyInfo(res)
    expect(info?.attempts).toBe(retries.length + 1)
    expect(proxy.keysSeen()).toEqual(Array(info?.attempts).fill(info?.key))
    expect(await madeCharges(demo)).toEqual([body])
  })

  it('409 while the first request runs: the retry gets the replayed charge', async ({ expect, onTestFinished }) => {
    const { demo, chargeUrl } = await demoBehindProxy(onTestFinished, { gatewayLatencyMs: 1500 })
    const key = randomUUID()
    const first = client().fetch(chargeUrl, post(SEED_PAYLOAD, key))
    await until(() => demo.gateway.attempts === 1, 'the first request to reach the gateway')

    const { fetch, retries } = client()
    const second = await fetch(chargeUrl, post(SEED_PAYLOAD, key))
    const original = await first
    expect(original.status).toBe(200)
    expect(second.status).toBe(200)
    expect(second.headers.get('idempotent-replayed')).toBe('true')
    expect(await second.text()).toBe(await original.text())
    const cause = retries[0]?.cause
    expect(cause?.kind === 'status' && cause.status).toBe(409)
    expect(cause?.kind === 'status' && cause.retryAfterMs).toBeGreaterThanOrEqual(1000)
    expect(idempotencyInfo(second)).toEqual({ key, attempts: retries.length + 1 })
    expect(await madeCharges(demo)).toHaveLength(1)
  })

  it('a response lost after the server charged: the retry, same key, gets the replay', async ({
    expect,
    onTestFinished,
  }) => {
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished)
    proxy.loseNextResponses(1)
    const { fetch, retries } = client()

    const res = await fetch(chargeUrl, post())
    expect(retries.map((r) => r.cause.kind)).toEqual(['network'])
    expect(res.status).toBe(200)
    expect(res.headers.get('idempotent-replayed')).toBe('true')
    const body = (await res.json()) as Charge
    const { key } = idempotencyInfo(res) ?? {}
    expect(proxy.keysSeen()).toEqual([key, key])
    expect(proxy.connections).toBe(2)
    expect(await madeCharges(demo)).toEqual([body])
  })

  it('a Retry-After given as an HTTP date is waited out', async ({ expect, onTestFinished }) => {
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished, { gatewayLatencyMs: 1500 })
    let rewritten = 0
    // The demo sends delay-seconds; a proxy that speaks in dates is allowed to (RFC 9110 §10.2.3).
    proxy.rewriteHeads((head) =>
      head.replace(/^retry-after: \d+$/im, () => {
        rewritten++
        return `Retry-After: ${new Date(Date.now() + 3000).toUTCString()}`
      }),
    )
    const key = randomUUID()
    const first = charge(demo.url, key)
    await until(() => demo.gateway.attempts === 1, 'the first request to reach the gateway')

    const { fetch, retries } = client()
    const startedAt = Date.now()
    const res = await fetch(chargeUrl, post(SEED_PAYLOAD, key))
    const elapsed = Date.now() - startedAt
    expect(rewritten).toBeGreaterThanOrEqual(1)
    const cause = retries[0]?.cause
    if (cause?.kind !== 'status') throw new Error(`expected a 409 to be retried, got ${JSON.stringify(cause)}`)
    expect(cause.status).toBe(409)
    // A date in whole seconds, 3 s ahead when written: 2 to 3 s, less the time it took to arrive.
    expect(cause.retryAfterMs).toBeGreaterThan(1000)
    expect(cause.retryAfterMs).toBeLessThanOrEqual(3000)
    expect(elapsed).toBeGreaterThanOrEqual(cause.retryAfterMs ?? 0)
    expect(res.headers.get('idempotent-replayed')).toBe('true')
    expect((await first).status).toBe(200)
    expect(await madeCharges(demo)).toHaveLength(1)
  })
})

describe.concurrent('what is not retried', () => {
  it('400 for the body or the key, 402 declined, 422 for a reused key: sent once each', async ({
    expect,
    onTestFinished,
  }) => {
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished)
    const { fetch, retries } = client()

    const badBody = await fetch(chargeUrl, post({ amount: -1, customerId: 'cus_1' }))
    expect(badBody.status).toBe(400)
    expect(((await badBody.json()) as { error: string }).error).toBe('INVALID_REQUEST')
    const badKey = await fetch(chargeUrl, post(SEED_PAYLOAD, 'two words'))
    expect(badKey.status).toBe(400)
    expect(((await badKey.json()) as { error: string }).error).toBe('INVALID_IDEMPOTENCY_KEY')
    const declined = await fetch(chargeUrl, post({ ...SEED_PAYLOAD, customerId: 'cus_decline' }))
    expect(declined.status).toBe(402)
    const key = randomUUID()
    expect((await fetch(chargeUrl, post(SEED_PAYLOAD, key))).status).toBe(200)
    const reused = await fetch(chargeUrl, post({ ...SEED_PAYLOAD, amount: 6000 }, key))
    expect(reused.status).toBe(422)
    expect(((await reused.json()) as { error: string }).error).toBe('IDEMPOTENCY_KEY_REUSED')

    expect(retries).toEqual([])
    expect(proxy.keysSeen()).toHaveLength(5)
    expect(await madeCharges(demo)).toHaveLength(1)
  })

  it('a 502 whose outcome was released is retried, runs again each time, and is returned after maxAttempts', async ({
    expect,
    onTestFinished,
  }) => {
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished)
    const { fetch, retries } = client({ maxAttempts: 3 })
    const res = await fetch(chargeUrl, post({ ...SEED_PAYLOAD, customerId: 'cus_gateway_down' }))
    expect(res.status).toBe(502)
    expect(res.headers.get('idempotent-replayed')).toBeNull()
    expect(retries.map((r) => r.cause.kind === 'status' && r.cause.status)).toEqual([502, 502])
    expect(new Set(proxy.keysSeen()).size).toBe(1)
    expect(proxy.keysSeen()).toHaveLength(3)
    expect(await madeCharges(demo)).toEqual([])
  })
})

describe.concurrent('bounds: total time and the caller’s abort', () => {
  it('a wait that would end past timeoutMs is not started: the 503 is returned', async ({ expect, onTestFinished }) => {
    const store = new StallingStore()
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished, { store })
    store.stall()
    onTestFinished(() => store.resume())
    const { fetch, retries } = client({ timeoutMs: 3000 })
    // The engine answers 503 after its 2 s begin deadline, with Retry-After: 2: a retry would start at 4 s.
    const res = await fetch(chargeUrl, post())
    expect(res.status).toBe(503)
    expect(retries).toEqual([])
    expect(idempotencyInfo(res)?.attempts).toBe(1)
    expect(proxy.keysSeen()).toHaveLength(1)
    expect(await madeCharges(demo)).toEqual([])
  })

  it('an attempt still running at timeoutMs is abandoned with a TimeoutError that carries the key', async ({
    expect,
    onTestFinished,
  }) => {
    const { demo, chargeUrl } = await demoBehindProxy(onTestFinished, { gatewayLatencyMs: 3000 })
    const { fetch } = client({ timeoutMs: 1000 })
    const error = await fetch(chargeUrl, post()).catch((e: unknown) => e)
    expect((error as Error).name).toBe('TimeoutError')
    const info = idempotencyInfo(error)
    expect(info?.attempts).toBe(1)

    // The server ran on (it never follows the client's socket): the key fetches the outcome later.
    await until(() => demo.gateway.charges.length === 1, 'the charge to finish')
    const later = await client().fetch(chargeUrl, post(SEED_PAYLOAD, info?.key))
    expect(later.headers.get('idempotent-replayed')).toBe('true')
    expect(await madeCharges(demo)).toEqual([await later.json()])
  })

  it('an abort during a wait rejects with its reason at once and sends nothing more', async ({
    expect,
    onTestFinished,
  }) => {
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished, { gatewayLatencyMs: 2500 })
    const key = randomUUID()
    const first = charge(demo.url, key)
    await until(() => demo.gateway.attempts === 1, 'the first request to reach the gateway')

    const controller = new AbortController()
    const reason = new Error('the user navigated away')
    let abortedAt = 0
    const { fetch, retries } = client({
      // A moment into the wait, not before it starts.
      onRetry: () => {
        setTimeout(() => {
          abortedAt = Date.now()
          controller.abort(reason)
        }, 200)
      },
    })
    const error = await fetch(chargeUrl, { ...post(SEED_PAYLOAD, key), signal: controller.signal }).catch(
      (e: unknown) => e,
    )
    expect(error).toBe(reason)
    expect(Date.now() - abortedAt).toBeLessThan(retries[0]?.delayMs ?? 0)
    expect(idempotencyInfo(error)).toEqual({ key, attempts: 1 })
    // Past the point where the retry would have been sent, only the one 409 went through the proxy.
    expect((await first).status).toBe(200)
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, abortedAt + (retries[0]?.delayMs ?? 0) - Date.now())),
    )
    expect(proxy.keysSeen()).toEqual([key])
    expect(await madeCharges(demo)).toHaveLength(1)
  })

  it('an abort during an attempt rejects it; the key then fetches the charge the server made anyway', async ({
    expect,
    onTestFinished,
  }) => {
    const { demo, proxy, chargeUrl } = await demoBehindProxy(onTestFinished, { gatewayLatencyMs: 1000 })
    const controller = new AbortController()
    const { fetch } = client()
    const pending = fetch(chargeUrl, { ...post(), signal: controller.signal })
    await until(() => demo.gateway.attempts === 1, 'the request to reach the gateway')
    controller.abort()
    const error = await pending.catch((e: unknown) => e)
    expect((error as Error).name).toBe('AbortError')
    const info = idempotencyInfo(error)
    expect(info?.attempts).toBe(1)
    expect(proxy.keysSeen()).toEqual([info?.key])

    await until(() => demo.gateway.charges.length === 1, 'the charge to finish')
    const later = await client().fetch(chargeUrl, post(SEED_PAYLOAD, info?.key))
    expect(later.headers.get('idempotent-replayed')).toBe('true')
    expect(await madeCharges(demo)).toHaveLength(1)
  })

  it('an already aborted signal sends nothing', async ({ expect, onTestFinished }) => {
    const { proxy, chargeUrl } = await demoBehindProxy(onTestFinished)
    const reason = new Error('cancelled before it started')
    const error = await client()
      .fetch(chargeUrl, { ...post(), signal: AbortSignal.abort(reason) })
      .catch((e: unknown) => e)
    expect(error).toBe(reason)
    expect(proxy.connections).toBe(0)
  })
})
