// One bench subject as its own process: BENCH_SUBJECT picks the guard and store; prints {"port"} once listening.
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import { createIdempotency, MemoryStore, type Store } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { captureResponse, interceptOnPrototype, type ResponseMethods } from '../src/adapters/node/capture-response.js'
import type { Execution } from '../src/core/engine.js'
import { type ChargeGuard, createBenchApp } from './bench-app.js'
import { type Counters, countIoredis, countingPool, countingStore } from './counting.js'
import { expressIdempotencyRedisGuard } from './peers/express-idempotency.js'
import { nodeIdempotencyGuard } from './peers/node-idempotency.js'
import { powertoolsGuard } from './peers/powertools.js'
import { seedIdempotencyMiddleware, seedRoute } from './peers/seed-design.js'

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}

const counters: Counters = { requests: 0, roundTrips: 0 }
const cleanups: Array<() => Promise<void> | void> = []
const subject = env('BENCH_SUBJECT')
const redisUrl = () => env('BENCH_REDIS_URL', 'redis://127.0.0.1:6379')
const prefix = () => env('BENCH_PREFIX', `bench-${randomUUID()}`)

/** A store of idempotency-kit's, counted at its client where it has one. */
async function openKitStore(kind: string): Promise<Store> {
  switch (kind) {
    case 'memory':
      // A busy single process: room for every key a full run writes (the default 100,000 would fill up).
      return countingStore(new MemoryStore({ maxRecords: 5_000_000, maxBytes: 4 * 1024 ** 3 }), counters)
    case 'sqlite': {
      const { openSqliteStore } = await import('idempotency-kit/sqlite')
      const dir = mkdtempSync(join(tmpdir(), 'bench-sqlite-'))
      const store = await openSqliteStore(join(dir, 'bench.sqlite'))
      cleanups.push(async () => {
        await store.close()
        rmSync(dir, { recursive: true, force: true })
      })
      return countingStore(store, counters)
    }
    case 'redis': {
      const [{ Redis }, { RedisStore, ioredisClient }] = await Promise.all([
        import('ioredis'),
        import('idempotency-kit/redis'),
      ])
      // The demo's client options: fail fast rather than queue while Redis is away; auto-pipelining, as the
      // README advises, except for the subject that measures what it saves.
      const client = new Redis(redisUrl(), {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        connectTimeout: 1000,
        socketTimeout: 3000,
        enableAutoPipelining: subject !== 'kit-redis-plain',
        lazyConnect: true,
      })
      await client.connect()
      countIoredis(client, counters)
      cleanups.push(() => void client.disconnect())
      return new RedisStore({ client: ioredisClient(client), prefix: prefix(), onWarning: () => {} })
    }
    case 'postgres': {
      const [{ default: pg }, { PostgresStore, migrate }] = await Promise.all([
        import('pg'),
        import('idempotency-kit/postgres'),
      ])
      const schema = env('BENCH_PG_SCHEMA')
      const pool = new pg.Pool({
        connectionString: env('BENCH_PG_URL', 'postgres://postgres@127.0.0.1:5432/test'),
        max: 10,
        connectionTimeoutMillis: 2000,
        query_timeout: 5000,
      })
      pool.on('error', () => {})
      await migrate(pool, { schema })
      cleanups.push(() => pool.end())
      return new PostgresStore({ pool: countingPool(pool, counters), schema })
    }
    default:
      throw new Error(`unknown store ${kind}`)
  }
}

async function kitGuard(store: Store): Promise<ChargeGuard> {
  // As the demo: store-then-send, heartbeat on (default 30 s lease), node:crypto hashing, the seed's marker.
  const engine = createIdempotency({ store, markers: { 'Idempotency-Cached': ['false', 'true'] } })
  cleanups.push(() => engine.close({ graceMs: 1000 }))
  return {
    middleware: [json({ limit: '16kb', requireJson: true }), idempotency({ engine, required: true })],
    charge: async (req, res, run) => {
      const lease = req.idempotency
      lease?.commit()
      lease?.assertHeld()
      res.json(await run())
    },
    close: async () => {},
  }
}

/** `probe-null-store`'s store: every key is new, every write succeeds, nothing is kept. */
const NULL_STORE: Store = {
  begin: () => Promise.resolve({ kind: 'acquired', fence: 1, takeover: false, previousFence: 0 }),
  complete: () => Promise.resolve(true),
  release: () => Promise.resolve(true),
  extend: () => Promise.resolve(true),
  get: () => Promise.resolve(null),
  delete: () => Promise.resolve('absent'),
}

/**
 * `probe-capture`: the Express adapter's capture and store-then-send around the route, with no engine: one promise
 * hop, the marker header, the response captured, "stored" by a promise that resolves at once, then sent.
 */
function captureProbe(): ChargeGuard {
  interceptOnPrototype(express.response as unknown as ResponseMethods)
  const execution = {
    headers: [['idempotency-cached', 'false']],
    maxResponseBytes: 1024 * 1024,
    finish: () => Promise.resolve(null),
  } as unknown as Execution
  return {
    middleware: [
      json({ limit: '16kb', requireJson: true }),
      (_req, res, next) => {
        Promise.resolve()
          .then(() => {
            captureResponse(res, execution)
            next()
          })
          .catch(next)
      },
    ],
    charge: async (_req, res, run) => void res.json(await run()),
    close: async () => {},
  }
}

async function guardFor(id: string): Promise<ChargeGuard> {
  switch (id) {
    case 'baseline':
      return {
        middleware: [express.json({ limit: '16kb' })],
        charge: async (_req, res, run) => void res.json(await run()),
        close: async () => {},
      }
    case 'baseline-kit-json':
      return {
        middleware: [json({ limit: '16kb' })],
        charge: async (_req, res, run) => void res.json(await run()),
        close: async () => {},
      }
    case 'kit-memory':
    case 'kit-sqlite':
    case 'kit-redis':
    case 'kit-postgres':
      return kitGuard(await openKitStore(id.slice('kit-'.length)))
    case 'kit-redis-plain':
      return kitGuard(await openKitStore('redis'))
    case 'probe-capture':
      return captureProbe()
    case 'probe-null-store':
      return kitGuard(countingStore(NULL_STORE, counters))
    case 'seed-redis': {
      const { Redis } = await import('ioredis')
      // The seed's client: `new Redis(process.env.REDIS_URL)`, default options.
      const redis = new Redis(redisUrl(), { lazyConnect: true })
      await redis.connect()
      countIoredis(redis, counters)
      return {
        middleware: [json({ limit: '16kb' }), seedIdempotencyMiddleware(redis, { prefix: prefix(), required: true })],
        charge: (req, res, run) => seedRoute(req, res, () => run()),
        close: async () => void redis.disconnect(),
      }
    }
    case 'node-idempotency-redis': {
      const guard = await nodeIdempotencyGuard(redisUrl(), prefix(), counters)
      return { ...guard, middleware: [json({ limit: '16kb' }), ...guard.middleware] }
    }
    case 'powertools-redis': {
      const guard = await powertoolsGuard(redisUrl(), prefix(), counters)
      return { ...guard, middleware: [json({ limit: '16kb' }), ...guard.middleware] }
    }
    case 'express-idempotency-redis': {
      const guard = await expressIdempotencyRedisGuard(redisUrl(), prefix(), counters)
      return { ...guard, middleware: [json({ limit: '16kb' }), ...guard.middleware] }
    }
    default:
      throw new Error(`unknown Express subject ${id}`)
  }
}

let server: Server
if (subject.startsWith('fastify-')) {
  const { startFastifySubject } = await import('./fastify-subject.js')
  server = await startFastifySubject(subject, counters, (kind) => openKitStore(kind), cleanups)
} else {
  const guard = await guardFor(subject)
  cleanups.push(() => guard.close())
  server = createBenchApp(guard, counters).listen(Number(process.env.PORT ?? 0), '127.0.0.1')
  await new Promise<void>((resolve) => server.once('listening', resolve))
}
server.keepAliveTimeout = 60_000
process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`)

async function shutdown() {
  server.closeAllConnections()
  server.close()
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup()
    } catch {
      // A failing cleanup must not keep the process alive.
    }
  }
  process.exit(0)
}
process.once('SIGTERM', shutdown)
process.once('SIGINT', shutdown)
