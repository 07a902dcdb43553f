// encryptedStore over real Redis and PostgreSQL: the whole store contract, and nothing readable in the raw hash.
import { randomBytes } from 'node:crypto'
import type { StoredResponse } from 'idempotency-kit'
import { encryptedStore } from 'idempotency-kit/encryption'
import { migrate, PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { describeStoreContract, randomStorageKey, randomToken } from 'idempotency-kit/testing'
import { afterAll, describe, expect, it } from 'vitest'
import { connectRedis } from '../faults/every-store.js'
import { createPostgresTestSchema } from '../support/postgres.js'

const redis = await connectRedis()
const prefix = `idem-enc-${Math.random().toString(36).slice(2, 10)}`
const KEYS = { a: randomBytes(32), b: randomBytes(32) }

async function removeNamespace(): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
}
afterAll(async () => {
  await removeNamespace()
  redis.disconnect()
})

describeStoreContract(
  {
    name: 'encrypted redis',
    create: async (clockOffset) =>
      encryptedStore(new RedisStore({ client: ioredisClient(redis), prefix, clockOffset }), {
        keys: KEYS,
        currentKeyId: 'b',
      }),
    corrupt: async (_store, key) => {
      await redis.hset(`${prefix}:${key}`, { v: '99', state: 'in_progress' })
      await redis.pexpire(`${prefix}:${key}`, 60_000)
    },
  },
  { modelRuns: 60 },
)

const pg = await createPostgresTestSchema()
await migrate(pg.pool, { schema: pg.schema })
afterAll(() => pg.close())

describeStoreContract(
  {
    name: 'encrypted postgres',
    create: async (clockOffset) =>
      encryptedStore(new PostgresStore({ pool: pg.pool, schema: pg.schema, clockOffset }), {
        keys: KEYS,
        currentKeyId: 'a',
      }),
    // A live row in a format version this code does not know.
    corrupt: async (_store, key) => {
      await pg.pool.query(
        `INSERT INTO "${pg.schema}".idempotency_records (key, v, state, fingerprint, token, fence, previous_fence,
           takeover, lease_until, retention, expires_at, created_at)
         VALUES ($1, 99, 'in_progress', 'v9:x', 'tok', 1, 0, false, clock_timestamp() + interval '1 hour',
           interval '1 hour', clock_timestamp() + interval '2 hours', clock_timestamp())`,
        [key],
      )
    },
  },
  { modelRuns: 40 },
)

describe('encryptedStore over Redis', () => {
  it('leaves no header or body byte readable in the raw hash, and replays them exactly', async () => {
    const store = encryptedStore(new RedisStore({ client: ioredisClient(redis), prefix }), {
      keys: KEYS,
      currentKeyId: 'a',
    })
    const secret = `sk_live_${randomBytes(8).toString('hex')}`
    const response: StoredResponse = {
      status: 201,
      headers: [
        ['content-type', 'application/json'],
        ['x-account', secret],
      ],
      body: new TextEncoder().encode(JSON.stringify({ id: 'ch_1', secret })),
      replayable: true,
    }
    const key = randomStorageKey()
    const token = randomToken()
    await store.begin({ key, scope: 'tenant', fingerprint: 'v1:x', token, leaseMs: 10_000, retentionMs: 60_000 })
    expect(await store.complete({ key, token, response, retentionMs: 60_000 })).toBe(true)

    const raw = Buffer.concat(
      Object.entries(await redis.hgetallBuffer(`${prefix}:${key}`)).flatMap(([field, value]) => [
        Buffer.from(field),
        value,
      ]),
    )
    expect(raw.byteLength).toBeGreaterThan(response.body.byteLength)
    for (const needle of [secret, 'ch_1', 'x-account', 'application/json']) {
      expect(raw.includes(Buffer.from(needle)), needle).toBe(false)
    }
    const replay = await store.begin({
      key,
      scope: 'tenant',
      fingerprint: 'v1:x',
      token: randomToken(),
      leaseMs: 10_000,
      retentionMs: 60_000,
    })
    expect(replay).toEqual({ kind: 'replay', response })
  })
})
