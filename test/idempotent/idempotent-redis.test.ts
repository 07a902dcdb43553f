// idempotent(fn) on the shared Redis: 50 parallel calls with one key run once; a dead Redis fails closed.

import { IdempotencyStoreError, idempotent } from 'idempotency-kit'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'

const REDIS_URL = 'redis://127.0.0.1:6379'
const START =
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log'
const PREFIX = `idempotent-fn-test-${Math.random().toString(36).slice(2, 10)}`

const redis = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true })
redis.on('error', () => {})
try {
  await redis.connect()
  await redis.ping()
} catch (error) {
  redis.disconnect()
  throw new Error(`Redis is not reachable at 127.0.0.1:6379 (${String(error)}). Start it with:\n  ${START}`)
}

afterAll(async () => {
  // Only what this run wrote: its random prefix.
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
  redis.disconnect()
})

describe('idempotent(fn) on Redis', () => {
  it('runs once for 50 parallel calls with one key; every caller gets the same value', async () => {
    const store = new RedisStore({ client: ioredisClient(redis), prefix: PREFIX })
    let runs = 0
    const consume = idempotent(
      async (message: { id: string; amount: number }) => {
        runs++
        await new Promise((resolve) => setTimeout(resolve, 100))
        return { processed: message.id, total: BigInt(message.amount) * 100n, at: new Date(86_400_000) }
      },
      { store, name: 'consume', key: (message) => message.id, onConflict: 'wait', waitMs: 10_000 },
    )
    const results = await Promise.all(Array.from({ length: 50 }, () => consume({ id: 'msg-1', amount: 3 })))
    expect(runs).toBe(1)
    for (const result of results)
      expect(result).toStrictEqual({ processed: 'msg-1', total: 300n, at: new Date(86_400_000) })
    // The record is in this run's namespace, and a later delivery replays it.
    expect(await redis.keys(`${PREFIX}:*`)).toHaveLength(1)
    expect(await consume({ id: 'msg-1', amount: 3 })).toStrictEqual(results[0])
    expect(runs).toBe(1)
    await consume.close()
  })

  it('fails closed when Redis is unreachable: the function does not run', async () => {
    // Nothing listens on port 1; without the offline queue every command is refused at once.
    const dead = new Redis('redis://127.0.0.1:1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
    })
    dead.on('error', () => {})
    const store = new RedisStore({ client: ioredisClient(dead), prefix: PREFIX })
    let runs = 0
    const consume = idempotent(
      async (id: string) => {
        runs++
        return id
      },
      { store, name: 'consume-dead', beginTimeoutMs: 1_000 },
    )
    await expect(consume('m')).rejects.toBeInstanceOf(IdempotencyStoreError)
    expect(runs).toBe(0)
    await consume.close()
    dead.disconnect()
  })
})
