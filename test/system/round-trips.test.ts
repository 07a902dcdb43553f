// Round trips per keyed request through Express, the engine and a real store: a first request 2, a replay 1.
import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import type { Store } from 'idempotency-kit'
import { migrate, type PgQueryable, PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPaymentsApp } from '../../examples/payments/app.js'
import { FakeGateway } from '../../examples/payments/gateway.js'
import { luaScripts } from '../../src/stores/redis/lua-scripts.js'
import { charge, charges, closeServer, listen } from '../support/http.js'
import { createPostgresTestSchema, type PostgresTestSchema } from '../support/postgres.js'
import { type RedisServer, startRedisServer } from '../support/redis-server.js'

/** Long enough that no heartbeat (lease / 3) fires while a request runs. */
const LEASE_MS = 60_000

/** A store over a real client whose every round trip is written to `sent` as `<command>:<operation>`. */
interface Counted {
  readonly store: Store
  readonly sent: string[]
  close(): Promise<void>
}

const backends: ReadonlyArray<{ readonly name: string; open(): Promise<Counted> }> = [
  {
    name: 'Redis (ioredis)',
    async open() {
      const server: RedisServer = await startRedisServer()
      const client = new Redis(server.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true })
      await client.connect()
      const scriptOf = new Map(Object.values(luaScripts()).map((script) => [script.sha, script.name]))
      const sent: string[] = []
      // ioredis's one funnel: every command of every call (scripts, INFO, pipelines) passes here.
      const original = client.sendCommand.bind(client)
      client.sendCommand = ((command: { name: string; args: unknown[] }, ...rest: unknown[]) => {
        const name = command.name.toLowerCase()
        const script = name === 'evalsha' ? scriptOf.get(String(command.args[0])) : undefined
        sent.push(script === undefined ? name : `${name}:${script}`)
        return (original as (...args: unknown[]) => unknown)(command, ...rest)
      }) as typeof client.sendCommand
      return {
        store: new RedisStore({ client: ioredisClient(client), prefix: `idem-system-${randomUUID()}` }),
        sent,
        async close() {
          client.disconnect()
          await server.stop()
        },
      }
    },
  },
  {
    name: 'PostgreSQL (pg Pool)',
    async open() {
      const db: PostgresTestSchema = await createPostgresTestSchema()
      await migrate(db.pool, { schema: db.schema })
      const real: PgQueryable = db.pool
      const sent: string[] = []
      const names = new Map<string, string>()
      let naming: string | undefined
      const counting: PgQueryable = {
        query(config) {
          // While warming up, each statement is named after the operation that sent it.
          if (naming !== undefined && !names.has(config.text)) names.set(config.text, naming)
          sent.push(`query:${names.get(config.text) ?? config.text.slice(0, 40)}`)
          return real.query(config)
        },
      }
      const store = new PostgresStore({ pool: counting, schema: db.schema })
      const key = randomUUID()
      const token = randomUUID()
      const retentionMs = 60_000
      const as = async (name: string, run: () => Promise<unknown>) => {
        naming = name
        await run()
        naming = undefined
      }
      await as('begin', () =>
        store.begin({ key, scope: 'warm', fingerprint: 'v1:warm', token, leaseMs: LEASE_MS, retentionMs }),
      )
      const response = { status: 200, headers: [], body: new Uint8Array(0), replayable: true }
      await as('complete', () => store.complete({ key, token, response, retentionMs }))
      sent.length = 0
      return { store, sent, close: () => db.close() }
    },
  },
]

describe.each(backends)('round trips in steady state on $name', (backend) => {
  let counted: Counted
  let server: Server
  let url: string
  beforeAll(async () => {
    counted = await backend.open()
    const { app } = createPaymentsApp({ store: counted.store, gateway: new FakeGateway(0), leaseMs: LEASE_MS })
    server = app.listen(0, '127.0.0.1')
    url = await listen(server)
    // Warm: connection open, maxmemory-policy read (Redis), every script the flow uses loaded.
    const warm = randomUUID()
    expect((await charge(url, warm)).status).toBe(200)
    expect((await charge(url, warm)).header('idempotent-replayed')).toBe('true')
  })
  afterAll(async () => {
    await closeServer(server)
    await counted.close()
  })

  /** What one HTTP request cost the store, counted from its first byte sent to its last received. */
  async function roundTrips(key: string) {
    counted.sent.length = 0
    const res = await charge(url, key)
    return { res, sent: [...counted.sent] }
  }

  it('a first request costs 2 (begin, complete), its replay 1 (begin)', async () => {
    const command = backend.name.startsWith('Redis') ? 'evalsha' : 'query'
    const key = randomUUID()
    const attempts = (await charges(url)).attempts

    const first = await roundTrips(key)
    expect(first.res.status, first.res.body.toString()).toBe(200)
    expect(first.sent).toEqual([`${command}:begin`, `${command}:complete`])

    const replay = await roundTrips(key)
    expect(replay.res.header('idempotent-replayed')).toBe('true')
    expect(replay.res.body.equals(first.res.body)).toBe(true)
    expect(replay.sent).toEqual([`${command}:begin`])

    // The counts are of real work: one charge, the second request never reached the route.
    expect((await charges(url)).attempts).toBe(attempts + 1)
    // And a GET passes through without touching the store.
    counted.sent.length = 0
    await charges(url)
    expect(counted.sent).toEqual([])
  })
})
