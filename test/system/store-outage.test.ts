// Redis or PostgreSQL down or hung under the demo: 503 with Retry-After in time, no charge, and service back on its own.

import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BEGIN_TIMEOUT_MS, type DemoApp, expectUnavailable, runCleanups, startDemoApp } from '../support/demo-app.js'
import { charge, type RawResponse } from '../support/http.js'
import { createPrivateDatabase, type PrivateDatabase } from './private-database.js'
import { type RestartableRedis, startRestartableRedis } from './restartable-redis.js'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'

/** How long service may take to come back once the store answers again (reconnect back-off included). */
const RESUME_WINDOW_MS = 8_000

/**
 * Retries `key` while it gets 503 or 409 (as a client honouring Retry-After would, faster) and returns the first
 * other answer. 409: a `begin` that timed out during the outage may apply once the store is back (the driver
 * resends it); the engine then releases that token's record in the background.
 */
async function retryUntilServed(demo: DemoApp, key: string, timeoutMs = RESUME_WINDOW_MS): Promise<RawResponse> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await charge(demo.url, key)
    if (res.status !== 503 && res.status !== 409) return res
    if (Date.now() > deadline) throw new Error(`still ${res.status} ${timeoutMs} ms after the store came back`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** The key that was refused during the outage now runs once, and then replays. */
async function expectResumed(demo: DemoApp, key: string): Promise<void> {
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

describe('Redis outage (a private redis-server, killed and restarted on the same port)', () => {
  const cleanups: Array<() => Promise<void>> = []
  let redis: RestartableRedis
  let demo: DemoApp
  beforeAll(async () => {
    redis = await startRestartableRedis()
    cleanups.push(() => redis.stop())
    demo = await startDemoApp(redis.url, cleanups)
    // Warm: connected, maxmemory-policy read, scripts loaded.
    expect((await charge(demo.url, randomUUID())).status).toBe(200)
  })
  afterAll(() => runCleanups(cleanups))

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
  let demo: DemoApp
  beforeAll(async () => {
    db = await createPrivateDatabase()
    cleanups.push(() => db.drop())
    proxy = await startTcpProxy(5432)
    demo = await startDemoApp(db.url(proxy.port), cleanups)
    // Reset the proxy's connections before pool.end(), which would wait for a swallowed query forever.
    cleanups.push(() => proxy.stop())
    expect((await charge(demo.url, randomUUID())).status).toBe(200)
  })
  afterAll(() => runCleanups(cleanups))

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
  afterAll(() => runCleanups(cleanups))

  describe('Redis', () => {
    let proxy: TcpProxy
    let demo: DemoApp
    const key = randomUUID()
    beforeAll(async () => {
      const redis = await startRestartableRedis()
      cleanups.push(() => redis.stop())
      proxy = await startTcpProxy(redis.port)
      demo = await startDemoApp(`redis://127.0.0.1:${proxy.port}`, cleanups)
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
    let demo: DemoApp
    const key = randomUUID()
    beforeAll(async () => {
      const db = await createPrivateDatabase()
      cleanups.push(() => db.drop())
      proxy = await startTcpProxy(5432)
      demo = await startDemoApp(db.url(proxy.port), cleanups)
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
