import { mkdtempSync, rmSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type IdempotencyEvent, MemoryStore, type Store } from 'idempotency-kit'
import { migrate, PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { openSqliteStore } from 'idempotency-kit/sqlite'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPaymentsApp } from '../../examples/payments/app.js'
import { type Charge, type ChargeRequest, FakeGateway } from '../../examples/payments/gateway.js'
import { charge, closeServer, listen, problemOf, type RawResponse } from '../support/http.js'
import { createPostgresTestSchema } from '../support/postgres.js'
import { storageKey } from '../support/records.js'
import { randomFrom, reliabilitySeed } from './reliability-seed.js'

const SEED = reliabilitySeed('storms')
const REQUESTS = 1000
const KEYS = 100
const MAX_IN_FLIGHT = 32
const LEASE_MS = 1000
const GATEWAY_LATENCY_MS = 30
const REDIS_URL = 'redis://127.0.0.1:6379'
const REDIS_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'

/**
 * One store for one storm, opened twice where it can be: two app instances, each with its own connection
 * (a second SQLite connection, Redis client, PostgreSQL pool), as two processes would have.
 */
interface StormStore {
  readonly stores: readonly [Store, Store]
  close(): Promise<void>
}

const backends: ReadonlyArray<{ readonly name: string; open(): Promise<StormStore> }> = [
  {
    name: 'memory',
    open: async () => {
      // One process's memory: both instances share the store itself.
      const store = new MemoryStore()
      return { stores: [store, store], close: async () => {} }
    },
  },
  {
    name: 'SQLite (a WAL file)',
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'idem-storm-'))
      const path = join(dir, 'storm.sqlite')
      const stores = [await openSqliteStore(path), await openSqliteStore(path)] as const
      return {
        stores,
        async close() {
          await Promise.all(stores.map((store) => store.close()))
          rmSync(dir, { recursive: true, force: true })
        },
      }
    },
  },
  {
    name: 'Redis (a random prefix on 127.0.0.1:6379)',
    async open() {
      const connect = async () => {
        const client = new Redis(REDIS_URL, {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          lazyConnect: true,
          retryStrategy: () => null,
        })
        client.on('error', () => {})
        try {
          await client.connect()
        } catch (error) {
          throw new Error(
            `Redis is not reachable at 127.0.0.1:6379 (${String(error)}). Start it with:\n  ${REDIS_START}`,
          )
        }
        return client
      }
      const [client, other] = [await connect(), await connect()]
      const prefix = `idem-storm-${SEED}-${Math.random().toString(36).slice(2, 10)}`
      return {
        stores: [
          new RedisStore({ client: ioredisClient(client), prefix }),
          new RedisStore({ client: ioredisClient(other), prefix }),
        ],
        async close() {
          other.disconnect()
          // Only this run's records: SCAN the prefix, never FLUSH.
          let cursor = '0'
          do {
            const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
            cursor = next
            if (keys.length > 0) await client.del(...keys)
          } while (cursor !== '0')
          client.disconnect()
        },
      }
    },
  },
  {
    name: 'PostgreSQL (a private schema)',
    async open() {
      const pg = await createPostgresTestSchema()
      await migrate(pg.pool, { schema: pg.schema })
      return {
        stores: [
          new PostgresStore({ pool: pg.pool, schema: pg.schema }),
          new PostgresStore({ pool: pg.newPool(), schema: pg.schema }),
        ],
        close: () => pg.close(),
      }
    },
  },
]

/** Counts gateway calls per downstream key: the route passes `lease.key`, one per scoped idempotency key. */
class CountingGateway extends FakeGateway {
  readonly calls = new Map<string, number>()
  readonly made = new Map<string, Promise<Charge>>()

  override createCharge(request: ChargeRequest): Promise<Charge> {
    const key = request.idempotencyKey ?? '(none)'
    this.calls.set(key, (this.calls.get(key) ?? 0) + 1)
    const made = super.createCharge(request)
    if (!this.made.has(key)) this.made.set(key, made)
    return made
  }
}

type Abort = 'none' | 'before-body' | 'mid-request'

interface Planned {
  readonly key: string
  readonly body: { amount: number; customerId: string; currency: string }
  readonly abort: Abort
  /** Milliseconds after the connection is up when the client goes away. */
  readonly abortAfterMs: number
  /** Which of the two app instances it is sent to. */
  readonly instance: 0 | 1
}

/** The same plan for every store: which key each request uses, in what order, and which clients leave. */
function plan(seed: number): { requests: Planned[]; limits: number[] } {
  const random = randomFrom(seed)
  const keys = Array.from({ length: KEYS }, (_, i) => ({
    key: `storm-${seed}-${i}`,
    // One key in ten is declined: a 402 is a final answer, stored and replayed like a charge.
    body: { amount: 100 + i, customerId: random() < 0.1 ? 'cus_decline' : `cus_${i}`, currency: 'usd' },
  }))
  // Bursts of duplicates sent back to back, so they overlap: every key once, then skewed, so some keys
  // see dozens of duplicates and others one.
  const bursts: number[][] = keys.map((_, i) => [i])
  for (let total = KEYS; total < REQUESTS; ) {
    const index = Math.floor(random() ** 2 * KEYS)
    const size = Math.min(1 + Math.floor(random() * 8), REQUESTS - total)
    bursts.push(Array.from({ length: size }, () => index))
    total += size
  }
  for (let i = bursts.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[bursts[i], bursts[j]] = [bursts[j] as number[], bursts[i] as number[]]
  }
  const picks = bursts.flat()
  const requests = picks.map((index): Planned => {
    const roll = random()
    const abort: Abort = roll < 0.08 ? 'before-body' : roll < 0.2 ? 'mid-request' : 'none'
    const abortAfterMs = Math.floor(random() * (GATEWAY_LATENCY_MS * 2))
    const instance = random() < 0.5 ? 0 : 1
    return { ...(keys[index] as (typeof keys)[number]), abort, abortAfterMs, instance }
  })
  // A new bound on requests in flight every 50 requests, from one at a time to MAX_IN_FLIGHT.
  const limits = Array.from({ length: Math.ceil(REQUESTS / 50) }, () => 1 + Math.floor(random() * MAX_IN_FLIGHT))
  return { requests, limits }
}

interface Outcome {
  readonly planned: Planned
  readonly response: RawResponse | undefined
}

function send(urls: readonly string[], planned: Planned): Promise<Outcome> {
  const { key, body, abort, abortAfterMs } = planned
  const url = urls[planned.instance] as string
  const options =
    abort === 'none'
      ? {}
      : {
          // A client that gives up: before its body is sent (the route never starts), or while it runs.
          ...(abort === 'before-body' ? { holdBodyUntil: new Promise<void>(() => {}) } : {}),
          onSocket: (socket: import('node:net').Socket) =>
            socket.once('connect', () => setTimeout(() => socket.destroy(), abortAfterMs)),
        }
  return charge(url, key, body, [], options).then(
    (response) => ({ planned, response }),
    (error: unknown) => {
      if (abort === 'none') throw error
      return { planned, response: undefined }
    },
  )
}

/** Runs the plan with a changing bound on requests in flight. */
async function storm(
  urls: readonly string[],
  requests: readonly Planned[],
  limits: readonly number[],
): Promise<Outcome[]> {
  const outcomes: Outcome[] = []
  const active = new Set<Promise<void>>()
  for (let i = 0; i < requests.length; i++) {
    const limit = limits[Math.floor(i / 50)] ?? 1
    while (active.size >= limit) await Promise.race(active)
    const running: Promise<void> = send(urls, requests[i] as Planned).then((outcome) => {
      outcomes.push(outcome)
      active.delete(running)
    })
    active.add(running)
  }
  await Promise.all(active)
  return outcomes
}

describe.each(backends)('a storm on $name', (backend) => {
  let opened: StormStore
  const servers: Server[] = []
  const urls: string[] = []
  let gateway: CountingGateway
  const events: IdempotencyEvent[] = []

  beforeAll(async () => {
    opened = await backend.open()
    // Two instances of the demo app, one gateway: the downstream both would call.
    gateway = new CountingGateway(GATEWAY_LATENCY_MS)
    for (const store of opened.stores) {
      const { app } = createPaymentsApp({ store, gateway, leaseMs: LEASE_MS, onEvent: (event) => events.push(event) })
      const server = app.listen(0, '127.0.0.1')
      servers.push(server)
      urls.push(await listen(server))
    }
  })
  afterAll(async () => {
    await Promise.all(servers.map((server) => closeServer(server)))
    await opened?.close()
  })

  it(`${REQUESTS} requests over ${KEYS} keys to two app instances: at most one execution per key, abandoned keys settle within one lease, replays byte for byte`, async () => {
    const { requests, limits } = plan(SEED)
    const outcomes = await storm(urls, requests, limits)
    const settledAt = Date.now()
    expect(outcomes).toHaveLength(REQUESTS)

    // At most one gateway call per downstream key, whatever the duplicates and the departures.
    const executions = [...gateway.calls.entries()].filter(([, n]) => n > 1)
    // A lost lease (the test process stalled past it) would explain a second call: say so if it happens.
    const lost = events.filter((e) => e.type === 'lease_lost' || e.type === 'complete_failed')
    expect(executions, `seed ${SEED}: keys executed more than once; lease events ${JSON.stringify(lost)}`).toEqual([])

    // Every client that stayed got a charge, a decline, or a conflict while the first one ran.
    const answered = outcomes.filter((o) => o.response !== undefined)
    const statuses = new Map<number, number>()
    for (const { response } of answered) {
      const status = (response as RawResponse).status
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
    }
    console.log(
      `[storms] ${backend.name}: ${JSON.stringify(Object.fromEntries(statuses))}, ${outcomes.length - answered.length} abandoned, ${gateway.attempts} gateway calls`,
    )
    for (const { planned, response } of answered) {
      const res = response as RawResponse
      const expected = planned.body.customerId === 'cus_decline' ? 402 : 200
      expect([expected, 409], `seed ${SEED}: ${planned.key} got ${res.status} ${res.body}`).toContain(res.status)
      if (res.status === 409) expect(problemOf(res).error).toBe('REQUEST_IN_PROGRESS')
    }

    // Every key whose clients went away is free or completed within one lease of the storm's end.
    const inspect = () => Promise.all(uniqueKeys(requests).map((p) => opened.stores[0].get(storageKey(p.key))))
    let records = await inspect()
    while (records.some((r) => r?.state === 'in_progress') && Date.now() < settledAt + LEASE_MS) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      records = await inspect()
    }
    const stuck = uniqueKeys(requests).filter((_, i) => records[i]?.state === 'in_progress')
    expect(
      stuck.map((p) => p.key),
      `seed ${SEED}: in progress one lease after the storm`,
    ).toEqual([])

    // One more request per key: each replays (or, if every client left before its body, runs now).
    const finals = await Promise.all(uniqueKeys(requests).map((p) => send(urls, { ...p, abort: 'none' })))
    for (const { planned, response } of finals) {
      const res = response as RawResponse
      expect(res.status, `seed ${SEED}: ${planned.key} ${res.body}`).toBe(
        planned.body.customerId === 'cus_decline' ? 402 : 200,
      )
    }
    expect([...gateway.calls.values()].every((n) => n === 1)).toBe(true)
    expect(gateway.calls.size).toBe(KEYS)

    // Byte for byte: every stored answer a client saw (first or replayed) is the one the key produced.
    const byKey = new Map<string, RawResponse[]>()
    for (const { planned, response } of [...answered, ...finals]) {
      if (response === undefined || response.status === 409) continue
      byKey.set(planned.key, [...(byKey.get(planned.key) ?? []), response])
    }
    let replays = 0
    for (const [key, seen] of byKey) {
      const made = gateway.made.get(storageKey(key))
      const first = seen[0] as RawResponse
      // A charge's bytes are the gateway's charge as the route rendered it; a decline's, the first seen.
      const original =
        first.status === 200 ? Buffer.from(JSON.stringify((await made) as Charge)) : (first.body as Buffer)
      const fresh = seen.filter((res) => res.header('idempotent-replayed') === undefined)
      expect(fresh.length, `seed ${SEED}: ${key} answered fresh twice`).toBeLessThanOrEqual(1)
      for (const res of seen) {
        expect(res.status).toBe(first.status)
        expect(res.header('content-type')).toBe(first.header('content-type'))
        expect(res.body.equals(original), `seed ${SEED}: ${key} replayed other bytes`).toBe(true)
        if (res.header('idempotent-replayed') === 'true') replays++
      }
    }
    expect(replays).toBeGreaterThan(KEYS)
    expect(events.filter((e) => e.type === 'store_error')).toEqual([])
  })
})

function uniqueKeys(requests: readonly Planned[]): Planned[] {
  const seen = new Map<string, Planned>()
  for (const p of requests) if (!seen.has(p.key)) seen.set(p.key, p)
  return [...seen.values()]
}
