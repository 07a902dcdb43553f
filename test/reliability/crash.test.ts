// The only demo process SIGKILLed with charges done and in flight, then restarted: replays survive, nothing stays stuck.
import { createHash, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Store, StoredRecord } from 'idempotency-kit'
import { PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { openSqliteStore } from 'idempotency-kit/sqlite'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DemoProcess, startDemoProcess, stopAllDemoProcesses } from '../support/demo-process.js'
import { charge, charges, type RawResponse } from '../support/http.js'
import { createPostgresTestSchema, POSTGRES_TEST_URL } from '../support/postgres.js'

const LEASE_MS = 1000
/** Long enough that the process is surely killed while the in-flight charges wait on the gateway. */
const GATEWAY_LATENCY_MS = 800
const REDIS_URL = 'redis://127.0.0.1:6379'
const REDIS_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'

/** A durable store the demo reaches through STORE_URL, plus a store of ours on the same data to read records. */
interface Durable {
  readonly storeUrl: string
  readonly inspector: Store
  close(): Promise<void>
}

const backends: ReadonlyArray<{ readonly name: string; open(): Promise<Durable> }> = [
  {
    name: 'SQLite',
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'idem-crash-'))
      const path = join(dir, 'payments.sqlite')
      const inspector = await openSqliteStore(path)
      return {
        storeUrl: `sqlite:${path}`,
        inspector,
        async close() {
          await inspector.close()
          rmSync(dir, { recursive: true, force: true })
        },
      }
    },
  },
  {
    name: 'Redis',
    async open() {
      const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null })
      client.on('error', () => {})
      try {
        await client.connect()
      } catch (error) {
        throw new Error(`Redis is not reachable at 127.0.0.1:6379 (${String(error)}). Start it with:\n  ${REDIS_START}`)
      }
      const prefix = `idem-crash-${randomUUID().slice(0, 8)}`
      return {
        storeUrl: `${REDIS_URL}?prefix=${prefix}`,
        inspector: new RedisStore({ client: ioredisClient(client), prefix }),
        async close() {
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
    name: 'PostgreSQL',
    async open() {
      // A private schema in the shared test database; the demo migrates its table into it.
      const pg = await createPostgresTestSchema()
      return {
        storeUrl: `${POSTGRES_TEST_URL}?schema=${pg.schema}`,
        inspector: new PostgresStore({ pool: pg.pool, schema: pg.schema }),
        close: () => pg.close(),
      }
    },
  },
]

/** The engine's storage key (and `lease.key`) for an unscoped key. */
function storageKey(key: string): string {
  return createHash('sha256').update(`\0${key}`).digest('hex')
}

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

afterAll(() => stopAllDemoProcesses())

describe.each(backends)('the only demo process crashes on $name', (backend) => {
  let durable: Durable | undefined
  beforeAll(async () => {
    durable = await backend.open()
  })
  afterAll(async () => {
    await stopAllDemoProcesses()
    await durable?.close()
  })

  it('SIGKILL with 5 keys done and 5 in flight, restart: the done keys replay their bytes, every in-flight key is taken over at its first retry after the lease, logged as a takeover', async () => {
    const { storeUrl, inspector } = durable as Durable
    const env = { STORE_URL: storeUrl, IDEMPOTENCY_LEASE_MS: String(LEASE_MS) }
    const first = await startDemoProcess({ ...env, GATEWAY_LATENCY_MS: String(GATEWAY_LATENCY_MS) })

    // Done before the crash: four charges and a decline (a final answer, stored like a charge).
    const done = Array.from({ length: 5 }, (_, i) => ({
      key: randomUUID(),
      body: { amount: 1000 + i, customerId: i === 4 ? 'cus_decline' : `cus_${i}`, currency: 'usd' },
    }))
    const answers = await Promise.all(done.map(({ key, body }) => charge(first.url, key, body)))
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 402])

    // In flight at the crash: committed, the gateway called, its answer never comes.
    const inFlight = Array.from({ length: 5 }, () => randomUUID())
    const lost = inFlight.map((key) =>
      charge(first.url, key).then(
        (res) => `answered ${res.status}`,
        (error: unknown) => error,
      ),
    )
    await until(
      'the in-flight gateway calls',
      () => charges(first.url),
      (s) => s.attempts === 10,
    )
    first.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')
    for (const outcome of await Promise.all(lost)) expect(outcome).toBeInstanceOf(Error)

    const orphans = (await Promise.all(inFlight.map((key) => inspector.get(storageKey(key))))) as StoredRecord[]
    for (const orphan of orphans) expect(orphan).toMatchObject({ state: 'in_progress', fence: 1 })
    const lapses = Math.max(...orphans.map((orphan) => orphan.leaseDeadline))

    // The same program restarted on the same store: nothing of the first process survives but the store.
    const second: DemoProcess = await startDemoProcess({ ...env, GATEWAY_LATENCY_MS: '0' })
    try {
      for (const [i, { key, body }] of done.entries()) {
        const replay = await charge(second.url, key, body)
        const original = answers[i] as RawResponse
        expect(replay.status).toBe(original.status)
        expect(replay.header('idempotent-replayed')).toBe('true')
        expect(replay.header('content-type')).toBe(original.header('content-type'))
        expect(replay.body.equals(original.body), `${key} replayed other bytes after the restart`).toBe(true)
      }
      expect((await charges(second.url)).attempts).toBe(0)

      // Nothing stuck past the lease: the first retry after the deadline runs, none answers 409.
      // The stores decide with this host's clock (SQLite) or a server on this host (TIME, clock_timestamp()).
      await until(
        'the lease deadline',
        async () => Date.now(),
        (now) => now > lapses + 50,
      )
      const retries = await Promise.all(inFlight.map((key) => charge(second.url, key)))
      for (const retry of retries) {
        expect(retry.status, retry.body.toString()).toBe(200)
        expect(retry.header('idempotent-replayed')).toBeUndefined()
      }
      expect((await charges(second.url)).attempts).toBe(inFlight.length)
      for (const [i, key] of inFlight.entries()) {
        const hash = storageKey(key)
        // The new holder's takeover is visible to an operator, with the fence it followed.
        expect(second.output()).toContain(`idempotency takeover ${hash} fence 1 -> 2`)
        expect(await inspector.get(hash)).toMatchObject({ state: 'completed', fence: 2 })
        const replay = await charge(second.url, key)
        expect(replay.header('idempotent-replayed')).toBe('true')
        expect(replay.body.equals((retries[i] as RawResponse).body)).toBe(true)
      }
      // Only the in-flight keys were taken over: the done ones were never run again.
      expect(second.output().match(/idempotency takeover /g)).toHaveLength(inFlight.length)
      expect((await charges(second.url)).attempts).toBe(inFlight.length)
    } finally {
      await second.stop()
    }
  })
})
