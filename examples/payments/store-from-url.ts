/** Picks the demo's store from a URL: memory:, sqlite:PATH, redis://…, postgres://…; drivers load on demand. */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Store } from 'idempotency-kit'
import { MemoryStore } from 'idempotency-kit'

export interface OpenedStore {
  readonly store: Store
  readonly description: string
  close(): Promise<void>
}

/** The embedded default: a SQLite file in the git-ignored data folder, so a restarted demo still replays. */
export const DEFAULT_STORE_URL = 'sqlite:data/payments.sqlite'

export async function openStore(url: string = DEFAULT_STORE_URL): Promise<OpenedStore> {
  if (url === 'memory:' || url === 'memory') {
    return { store: new MemoryStore(), description: 'memory', close: async () => {} }
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length)
    if (path === '') throw new Error('STORE_URL sqlite: needs a file path, e.g. sqlite:data/payments.sqlite')
    mkdirSync(dirname(path), { recursive: true })
    const { openSqliteStore } = await import('idempotency-kit/sqlite')
    const store = await openSqliteStore(path)
    return { store, description: `sqlite ${path}`, close: () => store.close() }
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const [{ Redis }, { RedisStore, ioredisClient }] = await Promise.all([
      import('ioredis'),
      import('idempotency-kit/redis'),
    ])
    const parsed = new URL(url)
    const prefix = parsed.searchParams.get('prefix') ?? 'payments-demo'
    parsed.searchParams.delete('prefix')
    // Fail fast instead of queueing commands while Redis is away: the engine answers 503 in time. A socket
    // silent for 3 s is dropped and reconnected, or a failover that swallows the old connection never heals.
    // Auto-pipelining sends the scripts of concurrent requests in one write: far less of Redis's CPU per request.
    const client = new Redis(parsed.toString(), {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 1000,
      socketTimeout: 3000,
      enableAutoPipelining: true,
    })
    client.on('error', () => {})
    // Without an offline queue, commands sent before 'ready' fail: wait for it briefly (503s until it comes).
    await new Promise((resolve) => {
      client.once('ready', resolve)
      setTimeout(resolve, 2000).unref()
    })
    const store = new RedisStore({ client: ioredisClient(client), prefix })
    return { store, description: `redis (prefix ${prefix})`, close: async () => void client.disconnect() }
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const [{ default: pg }, { PostgresStore, migrate }] = await Promise.all([
      import('pg'),
      import('idempotency-kit/postgres'),
    ])
    const parsed = new URL(url)
    const schema = parsed.searchParams.get('schema') ?? 'public'
    parsed.searchParams.delete('schema')
    // query_timeout frees a pooled connection whose query was swallowed (a silent failover); without it
    // every connection stays checked out and the pool never recovers.
    const pool = new pg.Pool({
      connectionString: parsed.toString(),
      max: 10,
      connectionTimeoutMillis: 1000,
      query_timeout: 3000,
    })
    pool.on('error', () => {})
    await migrate(pool, { schema })
    return {
      store: new PostgresStore({ pool, schema }),
      description: `postgres (schema ${schema})`,
      close: () => pool.end(),
    }
  }
  throw new Error(`STORE_URL must be memory:, sqlite:PATH, redis://… or postgres://…, got ${url}`)
}
