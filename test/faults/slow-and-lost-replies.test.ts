// Redis and PostgreSQL made slow, or made to apply commands and lose the replies, under the demo app.
import { randomUUID } from 'node:crypto'
import type { Store } from 'idempotency-kit'
import { PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DemoApp, expectUnavailable, runCleanups, startDemoApp } from '../support/demo-app.js'
import { charge } from '../support/http.js'
import { createPostgresTestSchema, type PostgresTestSchema } from '../support/postgres.js'
import { storageKey } from '../support/records.js'
import { connectRedis } from './every-store.js'
import { type FaultProxy, startFaultProxy } from './fault-proxy.js'

/** Longer than the begin deadline, shorter than the demo's ioredis socketTimeout and pg query_timeout (3 s). */
const SLOW_MS = 2_600
/** "Free within about 2 s of recovery": the engine's background release has this long once the store answers. */
const FREE_WITHIN_MS = 2_500

/**
 * Without any request for `key`, its record becomes free (absent, or a released tombstone) within
 * FREE_WITHIN_MS: no token nobody runs keeps holding it. Answers what the record was while it waited.
 */
async function expectFreedSoon(inspect: Store, key: string): Promise<string[]> {
  const seen: string[] = []
  const deadline = performance.now() + FREE_WITHIN_MS
  for (;;) {
    const record = await inspect.get(storageKey(key))
    const state = record?.state ?? 'absent'
    if (seen.at(-1) !== state) seen.push(state)
    if (state === 'absent' || state === 'released') return seen
    if (performance.now() > deadline) {
      throw new Error(`${key} still ${state} (fence ${record?.fence}) ${FREE_WITHIN_MS} ms after recovery`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** The refused key now runs exactly once, and then replays byte for byte. */
async function expectRunsOnce(demo: DemoApp, key: string): Promise<void> {
  const attempts = await demo.attempts()
  let res = await charge(demo.url, key)
  // The driver may still be reconnecting for a moment (503): a client honouring Retry-After retries.
  for (let i = 0; res.status === 503 && i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    res = await charge(demo.url, key)
  }
  expect(res.status, res.body.toString()).toBe(200)
  expect(res.header('idempotent-replayed')).toBeUndefined()
  expect(await demo.attempts()).toBe(attempts + 1)
  const replay = await charge(demo.url, key)
  expect(replay.header('idempotent-replayed')).toBe('true')
  expect(replay.body.equals(res.body)).toBe(true)
  expect(await demo.attempts()).toBe(attempts + 1)
}

/** The four scenarios, the same for both stores. */
function scenarios(ctx: () => { demo: DemoApp; proxy: FaultProxy; inspect: Store }) {
  const lostKey = randomUUID()

  it('slow (every reply 2.6 s late): 503 at the begin deadline, no charge; back by itself, key free, runs once', async () => {
    const { demo, proxy, inspect } = ctx()
    const key = randomUUID()
    proxy.set({ kind: 'delay', ms: SLOW_MS })
    try {
      await expectUnavailable(demo, key)
    } finally {
      proxy.set({ kind: 'forward' })
    }
    await expectFreedSoon(inspect, key)
    await expectRunsOnce(demo, key)
  })

  it('replies lost (request applied, connection cut): 503 in time, no charge, and the begin did reach the server', async () => {
    const { demo, proxy } = ctx()
    const droppedBefore = proxy.dropped
    proxy.set({ kind: 'drop' })
    try {
      await expectUnavailable(demo, lostKey)
      await expectUnavailable(demo, randomUUID())
    } finally {
      proxy.set({ kind: 'forward' })
    }
    // Not vacuous: a command reached the server and its reply was cut.
    expect(proxy.dropped).toBeGreaterThan(droppedBefore)
  })

  // pg rejects a query whose connection dropped at once ('unavailable', not 'timeout'), though the begin
  // applied: the engine releases that token's record in the background for either reason.
  it('replies lost: with no request for it, the key is free within ~2 s of recovery, then runs once', async () => {
    const { demo, inspect } = ctx()
    await expectFreedSoon(inspect, lostKey)
    await expectRunsOnce(demo, lostKey)
  })
}

describe('Redis behind a fault proxy (the demo with its fail-fast ioredis options)', () => {
  const cleanups: Array<() => Promise<void>> = []
  let demo: DemoApp
  let proxy: FaultProxy
  let inspect: Store
  beforeAll(async () => {
    const admin: Redis = await connectRedis()
    const prefix = `idem-faults-proxy-${Math.random().toString(36).slice(2, 10)}`
    cleanups.push(async () => {
      const keys = await admin.keys(`${prefix}:*`)
      if (keys.length > 0) await admin.del(...keys)
      admin.disconnect()
    })
    inspect = new RedisStore({ client: ioredisClient(admin), prefix })
    proxy = await startFaultProxy(6379)
    cleanups.push(() => proxy.close())
    demo = await startDemoApp(`redis://127.0.0.1:${proxy.port}?prefix=${prefix}`, cleanups)
    expect((await charge(demo.url, randomUUID())).status).toBe(200)
  })
  afterAll(() => runCleanups(cleanups))

  scenarios(() => ({ demo, proxy, inspect }))
})

describe('PostgreSQL behind a fault proxy (the demo with its pool options)', () => {
  const cleanups: Array<() => Promise<void>> = []
  let demo: DemoApp
  let proxy: FaultProxy
  let inspect: Store
  beforeAll(async () => {
    const db: PostgresTestSchema = await createPostgresTestSchema()
    cleanups.push(() => db.close())
    inspect = new PostgresStore({ pool: db.pool, schema: db.schema })
    proxy = await startFaultProxy(5432)
    cleanups.push(() => proxy.close())
    demo = await startDemoApp(`postgres://postgres@127.0.0.1:${proxy.port}/test?schema=${db.schema}`, cleanups)
    expect((await charge(demo.url, randomUUID())).status).toBe(200)
  })
  afterAll(() => runCleanups(cleanups))

  scenarios(() => ({ demo, proxy, inspect }))
})
