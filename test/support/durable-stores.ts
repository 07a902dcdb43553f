// The durable stores the demo can share: a SQLite file, Redis under a random prefix, PostgreSQL in a private
// schema; each with a store of our own on the same data to read records, and removed afterwards.
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Store } from 'idempotency-kit'
import { PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { openSqliteStore } from 'idempotency-kit/sqlite'
import { Redis } from 'ioredis'
import { createPostgresTestSchema, POSTGRES_TEST_URL } from './postgres.js'

const REDIS_URL = 'redis://127.0.0.1:6379'
const REDIS_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'

/** A durable store the demo reaches through STORE_URL, plus a store of ours on the same data to read records. */
export interface Durable {
  readonly storeUrl: string
  readonly inspector: Store
  close(): Promise<void>
}

export const durableStores: ReadonlyArray<{ readonly name: string; open(): Promise<Durable> }> = [
  {
    name: 'SQLite',
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'idem-durable-'))
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
      const prefix = `idem-durable-${randomUUID().slice(0, 8)}`
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
