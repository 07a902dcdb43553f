// The four stores on real engines, each in a private namespace, with a raw dump of what they hold.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { Store } from 'idempotency-kit'
import { MemoryStore } from 'idempotency-kit'
import { migrate, PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { openSqliteStore } from 'idempotency-kit/sqlite'
import { Redis } from 'ioredis'
import { createPostgresTestSchema } from '../support/postgres.js'

export const REDIS_URL = 'redis://127.0.0.1:6379'
const REDIS_START =
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log'

export type StoreName = 'memory' | 'sqlite' | 'redis' | 'postgres'
export const STORE_NAMES: readonly StoreName[] = ['memory', 'sqlite', 'redis', 'postgres']

/** One real store in its own namespace, its clock offset, and everything it holds as raw bytes. */
export interface OpenedStore {
  readonly name: StoreName
  readonly store: Store
  /** Moves the store's clock forward (its clockOffset). */
  advance(ms: number): void
  /**
   * Every record of this namespace as the engine below it keeps it: Redis key names and hash fields,
   * PostgreSQL and SQLite rows (every column), memory records; binary values as latin1.
   */
  dump(): Promise<string>
  close(): Promise<void>
}

/** A connected ioredis client, or a thrown error saying how to start the shared Redis. */
export async function connectRedis(): Promise<Redis> {
  const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
  } catch (error) {
    client.disconnect()
    throw new Error(`Redis is not reachable at 127.0.0.1:6379 (${String(error)}). Start it with:\n  ${REDIS_START}`)
  }
  return client
}

function randomId(): string {
  return Math.random().toString(36).slice(2, 10)
}

/** Serialises anything with bytes as latin1, so a scan finds the raw bytes of a secret. */
function text(value: unknown): string {
  return JSON.stringify(value, (_name, v: unknown) => {
    if (v instanceof Uint8Array) return Buffer.from(v).toString('latin1')
    if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer') {
      return Buffer.from((v as { data: number[] }).data).toString('latin1')
    }
    return v
  })
}

/** What every store can be opened with. */
export interface StoreLimits {
  readonly maxRecordsPerScope?: number
}

/** Opens `name` in a fresh private namespace. */
export async function openStore(name: StoreName, limits: StoreLimits = {}): Promise<OpenedStore> {
  let offset = 0
  const clockOffset = () => offset
  const advance = (ms: number) => {
    offset += ms
  }
  switch (name) {
    case 'memory': {
      const store = new MemoryStore({ clockOffset, ...limits })
      const records = (store as unknown as { records: Map<string, unknown> }).records
      return { name, store, advance, dump: async () => text([...records]), close: async () => {} }
    }
    case 'sqlite': {
      const dir = mkdtempSync(join(tmpdir(), 'idem-faults-sqlite-'))
      const file = join(dir, 'store.db')
      const store = await openSqliteStore(file, { clockOffset, ...limits })
      return {
        name,
        store,
        advance,
        async dump() {
          const db = new Database(file, { readonly: true })
          try {
            return text(db.prepare('SELECT * FROM idempotency_keys').all())
          } finally {
            db.close()
          }
        },
        async close() {
          await store.close()
          rmSync(dir, { recursive: true, force: true })
        },
      }
    }
    case 'redis': {
      const client = await connectRedis()
      const prefix = `idem-faults-${randomId()}`
      const store = new RedisStore({ client: ioredisClient(client), prefix, clockOffset, ...limits })
      const keys = async () => {
        const found: string[] = []
        let cursor = '0'
        do {
          const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
          cursor = next
          found.push(...batch)
        } while (cursor !== '0')
        return found
      }
      return {
        name,
        store,
        advance,
        async dump() {
          const entries: unknown[] = []
          for (const key of await keys()) {
            // Records are hashes; a store limiting records per scope also keeps one sorted set per scope.
            const zset = (await client.type(key)) === 'zset'
            entries.push([
              key,
              zset ? await client.zrangeBuffer(key, 0, -1, 'WITHSCORES') : await client.hgetallBuffer(key),
            ])
          }
          return text(entries)
        },
        async close() {
          const found = await keys()
          if (found.length > 0) await client.del(...found)
          client.disconnect()
        },
      }
    }
    case 'postgres': {
      const db = await createPostgresTestSchema()
      await migrate(db.pool, { schema: db.schema })
      const store = new PostgresStore({ pool: db.pool, schema: db.schema, clockOffset, ...limits })
      return {
        name,
        store,
        advance,
        async dump() {
          const { rows } = await db.pool.query(`SELECT * FROM "${db.schema}".idempotency_records`)
          return text(rows)
        },
        close: () => db.close(),
      }
    }
    default: {
      const unknown: never = name
      throw new Error(`unknown store ${String(unknown)}`)
    }
  }
}
