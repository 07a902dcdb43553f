// Redis or PostgreSQL down or hung under the demo: 503 with Retry-After in time, no charge, and service back on its own.

import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPaymentsApp } from '../../examples/payments/app.js'
import { FakeGateway } from '../../examples/payments/gateway.js'
import { type OpenedStore, openStore } from '../../examples/payments/store-from-url.js'
import { charge, charges, closeServer, listen, problemOf, type RawResponse } from '../support/http.js'
import { createPrivateDatabase, type PrivateDatabase } from './private-database.js'
import { type RestartableRedis, startRestartableRedis } from './restartable-redis.js'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'

/** The engine's default `beginTimeoutMs`, which the demo keeps. */
const BEGIN_TIMEOUT_MS = 2000
/** Room for scheduling on a loaded machine; far below a hang. */
const SLACK_MS = 1000

/** The demo app in this process over the store `store-from-url.ts` builds, with its fail-fast client options. */
interface Demo {
  readonly url: string
  attempts(): Promise<number>
}

async function startApp(storeUrl: string, cleanups: Array<() => Promise<void>>): Promise<Demo> {
  const opened: OpenedStore = await openStore(storeUrl)
  cleanups.push(() => opened.close())
  const { app } = createPaymentsApp({ store: opened.store, gateway: new FakeGateway(0) })
  const server: Server = app.listen(0, '127.0.0.1')
  const url = await listen(server)
  cleanups.push(() => closeServer(server))
  return { url, attempts: async () => (await charges(url)).attempts }
}

/** Sends a keyed charge and checks the fail-closed answer: 503, the code, Retry-After, within the deadline. */
async function expectUnavailable(demo: Demo, key: string, expectedMs: { min?: number } = {}): Promise<RawResponse> {
  const attempts = await demo.attempts()
  const startedAt = performance.now()
  const res = await charge(demo.url, key)
  const elapsed = performance.now() - startedAt
  expect(res.status, res.body.toString()).toBe(503)
  expect(problemOf(res).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
  expect(res.header('retry-after')).toMatch(/^[1-9]\d*$/)
  expect(elapsed).toBeLessThan(BEGIN_TIMEOUT_MS + SLACK_MS)
  if (expectedMs.min !== undefined) expect(elapsed).toBeGreaterThanOrEqual(expectedMs.min)
  expect(await demo.attempts()).toBe(attempts)
  return res
}

/** How long service may take to come back once the store answers again (reconnect back-off included). */
const RESUME_WINDOW_MS = 8_000

/**
 * Retries `key` while it gets 503 or 409 (as a client honouring Retry-After would, faster) and returns the first
 * other answer. 409: a `begin` that timed out during the outage may apply once the store is back (the driver
 * resends it); the engine then releases that token's record in the background.
 */
async function retryUntilServed(demo: Demo, key: string, timeoutMs = RESUME_WINDOW_MS): Promise<RawResponse> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await charge(demo.url, key)
    if (res.status !== 503 && res.status !== 409) return res
    if (Date.now() > deadline) throw new Error(`still ${res.status} ${timeoutMs} ms after the store came back`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** The key that was refused during the outage now runs once, and then replays. */
async function expectResumed(demo: Demo, key: string): Promise<void> {
  const attempts = await demo.attempts()
  const res = await retryUntilServed(demo, key)
  expect(res.status, res.body.toString()).toBe(200)
  expect(res.header('idempotent-replayed')).toBeUndefined()
  expect(await demo.attempts()).toBe(attempts + 1)
  const replay = await charge(demo.url, key)
  expect(replay.header('idempotent-replayed')).toBe('true')
  expect(replay.body.equals(res.body)).toBe(true)
  expect(await demo.attempts()).toBe(attempts + 1)
}

async function runAll(cleanups: Array<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = []
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup().catch((error: unknown) => errors.push(error))
  }
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed')
}

describe('Redis outage (a private redis-server, killed and restarted on the same port)', () => {
  const cleanups: Array<() => Promise<void>> = []
  let redis: RestartableRedis
  let demo: Demo
  beforeAll(async () => {
    redis = await startRestartableRedis()
    cleanups.push(() => redis.stop())
    demo = await startApp(redis.url, cleanups)
    // Warm: connected, maxmemory-policy read, scripts loaded.
    expect((await charge(demo.url, randomUUID())).status).toBe(200)
  })
  afterAll(() => runAll(cleanups))

  it('killed: 503 at once with Retry-After, no charge; after a restart on the same port it runs by itself', async () => {
    const key = randomUUID()
    await redis.kill()
    await expectUnavailable(demo, key)
    await expectUnavailable(demo, key)
    await expectUnavailable(demo, randomUUID())

    await redis.start()
    await expectResumed(demo, key)
  })

  it('hung (SIGSTOP): 503 at the begin deadline, no charge; after SIGCONT the same key runs once', async () => {
    const key = randomUUID()
    redis.signal('SIGSTOP')
    try {
      // The connection stays open and nothing answers: only the engine's own deadline ends the wait.
      await expectUnavailable(demo, key, { min: BEGIN_TIMEOUT_MS - 50 })
    } finally {
      redis.signal('SIGCONT')
    }
    // The begin that timed out reaches Redis now, and the engine's release (sent behind it) frees the key.
    await expectResumed(demo, key)
  })
})

describe('PostgreSQL outage (behind a loopback TCP proxy that is stopped, then swallows traffic)', () => {
  const cleanups: Array<() => Promise<void>> = []
  let proxy: TcpProxy
  let db: PrivateDatabase
  let demo: Demo
  beforeAll(async () => {
    db = await createPrivateDatabase()
    cleanups.push(() => db.drop())
    proxy = await startTcpProxy(5432)
    demo = await startApp(db.url(proxy.port), cleanups)
    // Reset the proxy's connections before pool.end(), which would wait for a swallowed query forever.
    cleanups.push(() => proxy.stop())
    expect((await charge(demo.url, randomUUID())).status).toBe(200)
  })
  afterAll(() => runAll(cleanups))

  it('refused: 503 at once with Retry-After, no charge; when the port answers again it runs by itself', async () => {
    const key = randomUUID()
    await proxy.stop()
    await expectUnavailable(demo, key)
    await expectUnavailable(demo, key)
    await expectUnavailable(demo, randomUUID())

    await proxy.start()
    await expectResumed(demo, key)
  })

  it('silent (packets swallowed): 503 within the deadline, no charge; when traffic flows again it runs by itself', async () => {
    const key = randomUUID()
    proxy.blackhole()
    await expectUnavailable(demo, key)
    await expectUnavailable(demo, randomUUID())

    await proxy.start()
    await expectResumed(demo, key)
  })
})

// A failover the open connections never hear about: the old address swallows every packet (no FIN, no
// RST), while new connections reach the store again, as after a DNS-based failover of a managed database.
describe('silent failover (open connections swallowed, new ones reach the store)', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterAll(() => runAll(cleanups))

  describe('Redis', () => {
    let proxy: TcpProxy
    let demo: Demo
    const key = randomUUID()
    beforeAll(async () => {
      const redis = await startRestartableRedis()
      cleanups.push(() => redis.stop())
      proxy = await startTcpProxy(redis.port)
      demo = await startApp(`redis://127.0.0.1:${proxy.port}`, cleanups)
      cleanups.push(() => proxy.stop())
      expect((await charge(demo.url, randomUUID())).status).toBe(200)
    })

    it('fails closed: 503 at the begin deadline, no charge', async () => {
      proxy.partition()
      await expectUnavailable(demo, key, { min: BEGIN_TIMEOUT_MS - 50 })
    })

    // Needs ioredis `socketTimeout` (store-from-url.ts): without it, writes to the swallowed socket wait on
    // the kernel's retransmissions (~15 min) and every request waits out the engine's deadline.
    it('resumes by itself once new connections reach Redis', async () => {
      await expectResumed(demo, key)
    })
  })

  describe('PostgreSQL', () => {
    let proxy: TcpProxy
    let demo: Demo
    const key = randomUUID()
    beforeAll(async () => {
      const db = await createPrivateDatabase()
      cleanups.push(() => db.drop())
      proxy = await startTcpProxy(5432)
      demo = await startApp(db.url(proxy.port), cleanups)
      cleanups.push(() => proxy.stop())
      // A busy moment fills the pool (max 10) with idle connections, all of them through the old path.
      const burst = await Promise.all(Array.from({ length: 40 }, () => charge(demo.url, randomUUID())))
      expect(burst.map((res) => res.status)).toEqual(burst.map(() => 200))
    })

    it('fails closed: 503 within the deadline, no charge', async () => {
      proxy.partition()
      // Enough requests to take every idle pooled connection: each query on one hangs until query_timeout
      // frees it; then new connections reach the store and the next request is served (the next test).
      await Promise.all(Array.from({ length: 12 }, () => expectUnavailable(demo, randomUUID())))
    })

    // Needs pg `query_timeout` (store-from-url.ts): without it, every pooled connection whose query was
    // swallowed stays checked out, and the pool never recovers.
    it('resumes by itself once new connections reach PostgreSQL', async () => {
      await expectResumed(demo, key)
    })
  })
})
