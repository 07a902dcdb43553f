// RedisStore on a real Redis: the store contract with ioredis and node-redis, then Redis-only traps.

import { ioredisClient, type NodeRedisLike, nodeRedisClient, type RedisClient, RedisStore } from 'idempotency-kit/redis'
import { Redis, type RedisOptions } from 'ioredis'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IdempotencyConfigError, IdempotencyStoreError } from '../../src/core/errors.js'
import type { StoredResponse } from '../../src/core/store.js'
import { randomStorageKey, randomToken } from '../../src/testing/random-storage-key.js'
import { describeStoreContract } from '../../src/testing/store-contract.js'
import { type RedisServer, startRedisServer } from '../support/redis-server.js'

const REDIS_URL = 'redis://127.0.0.1:6379'
const START =
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log'
const RUN = Math.random().toString(36).slice(2, 10)
const LEASE = 10_000
const RETENTION = 60_000
const FP = 'v1:redis-test'
const RESPONSE: StoredResponse = {
  status: 201,
  headers: [['content-type', 'application/json']],
  body: new TextEncoder().encode('{"id":"ch_1"}'),
  replayable: true,
}

// Fail the whole file, with the command that fixes it, when the shared Redis is not there.
{
  const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => {})
  try {
    await probe.connect()
    await probe.ping()
  } catch (error) {
    throw new Error(`Redis is not reachable at 127.0.0.1:6379 (${String(error)}). Start it with:\n  ${START}`)
  } finally {
    probe.disconnect()
  }
}

/** ioredis as we document it: an outage rejects instead of queueing. */
function ioredis(url: string, extra: RedisOptions = {}): Redis {
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, ...extra })
  client.on('error', () => {})
  return client
}

async function ready(client: Redis): Promise<Redis> {
  if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
  return client
}

/** A connected node-redis 5 client, as the store and the tests use it. */
type NodeRedisConnection = NodeRedisLike & { close(): Promise<void>; destroy(): void }

async function nodeRedis(url: string, resp: 2 | 3 = 2): Promise<NodeRedisConnection> {
  const client = createClient({
    url,
    RESP: resp,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: () => 50 },
  })
  client.on('error', () => {})
  await client.connect()
  return client
}

/** Removes every key under `pattern` (SCAN + DEL): only what this run wrote. */
async function scanDelete(client: Redis, pattern: string): Promise<number> {
  let cursor = '0'
  let deleted = 0
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) deleted += await client.del(...keys)
  } while (cursor !== '0')
  return deleted
}

/** Counts what the store sends: every command through ioredis's one funnel. */
function countCommands(client: Redis): string[] {
  const sent: string[] = []
  const original = client.sendCommand.bind(client)
  client.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
    sent.push(command.name.toLowerCase())
    return (original as (...args: unknown[]) => unknown)(command, ...rest)
  }) as typeof client.sendCommand
  return sent
}

/** Counts what the store sends through a node-redis client. */
function countingNodeRedis(client: NodeRedisLike): { client: NodeRedisLike; sent: string[] } {
  const sent: string[] = []
  return {
    sent,
    client: {
      sendCommand: (args, options) => {
        sent.push(String(args[0]).toLowerCase())
        return client.sendCommand(args, options)
      },
    },
  }
}

// ---------------------------------------------------------------------------------------------
// The contract, once per client.

const admin = await ready(ioredis(REDIS_URL))
afterAll(() => admin.disconnect())

// ioredis as it comes, and with `enableAutoPipelining` (the commands of one tick go out as one pipeline; ioredis 5
// loses the command name of `callBuffer` on that path and throws from a timer, so the store sends its scripts by
// their own names).
for (const enableAutoPipelining of [false, true]) {
  const prefix = `idem-test-${RUN}-ioredis${enableAutoPipelining ? '-autopipelining' : ''}`
  const client = ioredis(REDIS_URL, { enableAutoPipelining })
  describeStoreContract({
    name: enableAutoPipelining ? 'redis (ioredis, auto-pipelining)' : 'redis (ioredis)',
    create: async (clockOffset) => {
      await ready(client)
      return new RedisStore({ client: ioredisClient(client), prefix, clockOffset })
    },
    createLimited: async (clockOffset, maxRecordsPerScope) => {
      await ready(client)
      return new RedisStore({ client: ioredisClient(client), prefix, clockOffset, maxRecordsPerScope })
    },
    // An unknown format version in an otherwise well-formed record.
    corrupt: async (_store, key) => {
      await admin.hset(`${prefix}:${key}`, { v: '99', state: 'in_progress' })
      await admin.pexpire(`${prefix}:${key}`, RETENTION)
    },
    dispose: async () => {
      await scanDelete(admin, `${prefix}:*`)
      client.disconnect()
    },
  })
}

// node-redis 5 under RESP2 (its default) and RESP3, where replies are typed differently (S-R-7).
for (const resp of [2, 3] as const) {
  const prefix = `idem-test-${RUN}-node-redis-resp${resp}`
  let client: NodeRedisConnection | undefined
  describeStoreContract({
    name: `redis (node-redis, RESP${resp})`,
    create: async (clockOffset) => {
      client ??= await nodeRedis(REDIS_URL, resp)
      return new RedisStore({ client: nodeRedisClient(client), prefix, clockOffset })
    },
    createLimited: async (clockOffset, maxRecordsPerScope) => {
      client ??= await nodeRedis(REDIS_URL, resp)
      return new RedisStore({ client: nodeRedisClient(client), prefix, clockOffset, maxRecordsPerScope })
    },
    // A key of the wrong type under the record's name.
    corrupt: async (_store, key) => {
      await admin.set(`${prefix}:${key}`, 'not a hash', 'PX', RETENTION)
    },
    dispose: async () => {
      await scanDelete(admin, `${prefix}:*`)
      await client?.close()
    },
  })
}

// ---------------------------------------------------------------------------------------------
// Redis specifics.

describe('RedisStore on Redis', () => {
  const prefix = `idem-test-${RUN}-specific`
  afterAll(async () => {
    await scanDelete(admin, `${prefix}*`)
  })

  it.each([false, true])(
    'stores a record under prefix:key, and under the ioredis keyPrefix without adding it twice (auto-pipelining %s)',
    async (enableAutoPipelining) => {
      const plain = await ready(ioredis(REDIS_URL, { enableAutoPipelining }))
      const kp = `${prefix}-kp${enableAutoPipelining ? '-ap' : ''}:`
      const prefixed = await ready(ioredis(REDIS_URL, { keyPrefix: kp, enableAutoPipelining }))
      try {
        const key = randomStorageKey()
        await new RedisStore({ client: ioredisClient(plain), prefix }).begin(begin(key))
        expect(await admin.type(`${prefix}:${key}`)).toBe('hash')
        await new RedisStore({ client: ioredisClient(prefixed), prefix }).begin(begin(key))
        expect(await admin.type(`${kp}${prefix}:${key}`)).toBe('hash')
        expect(await admin.type(`${kp}${kp}${prefix}:${key}`)).toBe('none')
      } finally {
        plain.disconnect()
        prefixed.disconnect()
      }
    },
  )

  it('refuses a prefix with a hash tag and bad durability options', () => {
    const client = ioredisClient(admin)
    expect(() => new RedisStore({ client, prefix: '{idem}' })).toThrow(IdempotencyConfigError)
    expect(() => new RedisStore({ client, durability: { replicas: 0, timeoutMs: 10 } })).toThrow(IdempotencyConfigError)
    expect(() => new RedisStore({ client, durability: { replicas: 1, timeoutMs: 0 } })).toThrow(IdempotencyConfigError)
    for (const maxRecordsPerScope of [0, -1, 1.5, Number.NaN]) {
      expect(() => new RedisStore({ client, maxRecordsPerScope })).toThrow(IdempotencyConfigError)
    }
  })

  describe('maxRecordsPerScope', () => {
    const client = ioredisClient(admin)
    const scoped = (key: string, scope: string, token = randomToken()) => ({ ...begin(key, token), scope })
    const pexpiretime = async (key: string) => Number(await admin.call('PEXPIRETIME', key))

    it("keeps each scope's records in a sorted set at prefix:scope:<scope>, scored by their expiry", async () => {
      const store = new RedisStore({ client, prefix, maxRecordsPerScope: 2 })
      const scope = randomStorageKey()
      const set = `${prefix}:scope:${scope}`
      const [a, b] = [randomStorageKey(), randomStorageKey()]
      const tokenA = randomToken()
      const tokenB = randomToken()
      expect((await store.begin(scoped(a, scope, tokenA))).kind).toBe('acquired')
      expect((await store.begin(scoped(b, scope, tokenB))).kind).toBe('acquired')
      const score = async (key: string) => Number(await admin.zscore(set, `${prefix}:${key}`))
      const expiry = async (key: string) => (await store.get(key))?.expiresAt
      expect(await admin.zcard(set)).toBe(2)
      expect(await score(a)).toBe(await expiry(a))
      // complete shortens a's expiry (no lease left to wait for), extend lengthens b's: the scores follow, and
      // the set lives exactly as long as its latest member.
      expect(await store.complete(complete(a, tokenA))).toBe(true)
      expect(await store.extend({ key: b, token: tokenB, leaseMs: 3 * LEASE, retentionMs: RETENTION })).toBe(true)
      expect(await score(a)).toBe(await expiry(a))
      expect(await score(b)).toBe(await expiry(b))
      expect(await pexpiretime(set)).toBe(await expiry(b))
      expect(await store.release({ key: b, token: tokenB, retentionMs: RETENTION })).toBe(true)
      expect(await score(b)).toBe(await expiry(b))
      expect(await pexpiretime(set)).toBe(Math.max((await expiry(a)) ?? 0, (await expiry(b)) ?? 0))
      // A tombstone taken again (not a new record, so not refused) keeps its place with its new expiry.
      expect((await store.begin(scoped(b, scope))).kind).toBe('acquired')
      expect(await admin.zcard(set)).toBe(2)
      expect(await score(b)).toBe(await expiry(b))
      // delete frees the place; with the last member gone, Redis drops the set.
      expect(await store.delete(a)).toBe('deleted')
      expect(await admin.zcard(set)).toBe(1)
      expect(await store.delete(b, { force: true })).toBe('deleted')
      expect(await admin.exists(set)).toBe(0)
    })

    it('adds no key and no field without the option, and does not count records made without it', async () => {
      const plain = new RedisStore({ client, prefix })
      const limited = new RedisStore({ client, prefix, maxRecordsPerScope: 1 })
      const scope = randomStorageKey()
      const old = randomStorageKey()
      expect((await plain.begin(scoped(old, scope))).kind).toBe('acquired')
      expect(await admin.exists(`${prefix}:scope:${scope}`)).toBe(0)
      expect(await admin.hexists(`${prefix}:${old}`, 'sk')).toBe(0)
      expect((await limited.begin(scoped(randomStorageKey(), scope))).kind).toBe('acquired')
      expect((await limited.begin(scoped(randomStorageKey(), scope))).kind).toBe('scope_full')
      expect((await limited.begin(scoped(old, scope))).kind).toBe('in_progress')
    })

    it('names the set under the ioredis keyPrefix, like the record', async () => {
      const prefixed = await ready(ioredis(REDIS_URL, { keyPrefix: `${prefix}-kp:` }))
      try {
        const store = new RedisStore({ client: ioredisClient(prefixed), prefix, maxRecordsPerScope: 1 })
        const scope = randomStorageKey()
        const key = randomStorageKey()
        const token = randomToken()
        expect((await store.begin(scoped(key, scope, token))).kind).toBe('acquired')
        const set = `${prefix}-kp:${prefix}:scope:${scope}`
        expect(await admin.zrange(set, 0, -1)).toEqual([`${prefix}-kp:${prefix}:${key}`])
        expect(await store.complete(complete(key, token))).toBe(true)
        expect(Number(await admin.zscore(set, `${prefix}-kp:${prefix}:${key}`))).toBe((await store.get(key))?.expiresAt)
        expect(await store.delete(key)).toBe('deleted')
        expect(await admin.exists(set)).toBe(0)
      } finally {
        prefixed.disconnect()
      }
    })

    it('fails on a foreign value under the set name before writing the record', async () => {
      const store = new RedisStore({ client, prefix, maxRecordsPerScope: 2 })
      const scope = randomStorageKey()
      const set = `${prefix}:scope:${scope}`
      await admin.set(set, 'foreign', 'PX', RETENTION)
      const key = randomStorageKey()
      await expect(store.begin(scoped(key, scope))).rejects.toMatchObject({ reason: 'undecodable' })
      expect(await admin.exists(`${prefix}:${key}`)).toBe(0)
      // A record already counted whose set was replaced: complete refuses before touching the record.
      await admin.del(set)
      const token = randomToken()
      expect((await store.begin(scoped(key, scope, token))).kind).toBe('acquired')
      await admin.set(set, 'foreign', 'PX', RETENTION)
      await expect(store.complete(complete(key, token))).rejects.toMatchObject({ reason: 'undecodable' })
      expect((await store.get(key))?.state).toBe('in_progress')
      // delete still purges it (the operator's way out).
      expect(await store.delete(key, { force: true })).toBe('deleted')
      expect(await admin.get(set)).toBe('foreign')
      await admin.del(set)
    })
  })

  it('stores header bytes 0x00-0xff and the body as given, not as JSON or UTF-8', async () => {
    const store = new RedisStore({ client: ioredisClient(admin), prefix })
    const key = randomStorageKey()
    const token = randomToken()
    const latin1 = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i))
    const body = Uint8Array.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80])
    await store.begin(begin(key, token))
    await store.complete({
      key,
      token,
      response: { status: 200, headers: [['x-all', latin1]], body, replayable: true },
      retentionMs: RETENTION,
    })
    const raw = await admin.hgetBuffer(`${prefix}:${key}`, 'body')
    expect(raw?.equals(Buffer.from(body))).toBe(true)
    const headers = await admin.hgetBuffer(`${prefix}:${key}`, 'headers')
    expect(headers?.includes(Buffer.from(latin1, 'latin1'))).toBe(true)
    const replay = await store.begin(begin(key))
    expect(replay.kind === 'replay' && replay.response.headers[0]?.[1]).toBe(latin1)
  })

  it('rejects a non-latin1 header value instead of garbling it', async () => {
    const store = new RedisStore({ client: ioredisClient(admin), prefix })
    const key = randomStorageKey()
    const token = randomToken()
    await store.begin(begin(key, token))
    const response = { ...RESPONSE, headers: [['x-emoji', '\u{1F600}']] as const }
    await expect(store.complete({ key, token, response, retentionMs: RETENTION })).rejects.toThrow(RangeError)
    expect((await store.get(key))?.state).toBe('in_progress')
  })

  describe.each(['ioredis', 'ioredis (auto-pipelining)', 'node-redis'] as const)('round trips with %s', (driver) => {
    let server: RedisServer
    let raw: Redis
    let sent: string[]
    let client: RedisClient
    let close: () => Promise<void>
    beforeAll(async () => {
      server = await startRedisServer()
      if (driver !== 'node-redis') {
        raw = await ready(ioredis(server.url, { enableAutoPipelining: driver !== 'ioredis' }))
        sent = countCommands(raw)
        client = ioredisClient(raw)
        close = async () => raw.disconnect()
      } else {
        const real = await nodeRedis(server.url)
        const counting = countingNodeRedis(real)
        sent = counting.sent
        client = nodeRedisClient(counting.client)
        close = () => real.close()
      }
    })
    afterAll(async () => {
      await close()
      await server.stop()
    })

    it('costs one command per operation in steady state: a first request 2, a replay 1', async () => {
      const store = new RedisStore({ client, prefix })
      await store.get(randomStorageKey()) // first use: INFO memory, then the script
      expect(sent).toEqual(['info', 'evalsha', 'eval'])
      // Warm every script once so the counts below are the steady state.
      for (const op of everyOperation(store)) await op()
      sent.length = 0
      await server.cli('CONFIG', 'RESETSTAT')

      const key = randomStorageKey()
      const token = randomToken()
      const step = async (run: () => Promise<unknown>) => {
        sent.length = 0
        await run()
        return [...sent]
      }
      expect(await step(() => store.begin(begin(key, token)))).toEqual(['evalsha'])
      expect(await step(() => store.extend({ key, token, leaseMs: LEASE, retentionMs: RETENTION }))).toEqual([
        'evalsha',
      ])
      expect(await step(() => store.complete(complete(key, token)))).toEqual(['evalsha'])
      expect(await step(() => store.begin(begin(key)))).toEqual(['evalsha']) // replay
      expect(await step(() => store.get(key))).toEqual(['evalsha'])
      expect(await step(() => store.release({ key, token, retentionMs: RETENTION }))).toEqual(['evalsha'])
      expect(await step(() => store.delete(key))).toEqual(['evalsha'])
      // The server agrees: 7 script calls, no EVAL, nothing else sent by a client.
      const stats = await server.cli('INFO', 'commandstats')
      expect(calls(stats, 'evalsha')).toBe(7)
      expect(calls(stats, 'eval')).toBe(0)
    })

    it('costs the same with maxRecordsPerScope: one command per operation, a refusal included', async () => {
      const store = new RedisStore({ client, prefix, maxRecordsPerScope: 1 })
      for (const op of everyOperation(store)) await op()
      const scope = randomStorageKey()
      const key = randomStorageKey()
      const token = randomToken()
      const step = async (run: () => Promise<unknown>) => {
        sent.length = 0
        const result = await run()
        return { result, sent: [...sent] }
      }
      const first = await step(() => store.begin({ ...begin(key, token), scope }))
      expect(first).toMatchObject({ result: { kind: 'acquired' }, sent: ['evalsha'] })
      const refused = await step(() => store.begin({ ...begin(randomStorageKey()), scope }))
      expect(refused).toMatchObject({ result: { kind: 'scope_full' }, sent: ['evalsha'] })
      for (const run of [
        () => store.extend({ key, token, leaseMs: LEASE, retentionMs: RETENTION }),
        () => store.complete(complete(key, token)),
        () => store.release({ key, token, retentionMs: RETENTION }),
        () => store.delete(key),
      ]) {
        expect((await step(run)).sent).toEqual(['evalsha'])
      }
    })

    it('falls back to EVAL once after SCRIPT FLUSH, then is back to EVALSHA alone', async () => {
      const store = new RedisStore({ client, prefix })
      const key = randomStorageKey()
      const token = randomToken()
      await store.begin(begin(key, token))
      await server.cli('SCRIPT', 'FLUSH')
      sent.length = 0
      expect(await store.complete(complete(key, token))).toBe(true)
      expect(sent).toEqual(['evalsha', 'eval'])
      sent.length = 0
      expect((await store.begin(begin(key))).kind).toBe('replay')
      expect(sent).toEqual(['evalsha', 'eval'])
      sent.length = 0
      expect((await store.begin(begin(key))).kind).toBe('replay')
      expect(sent).toEqual(['evalsha'])
    })
  })

  it('leaves no key without a TTL when scripts fail on bad arguments or foreign data', async () => {
    const seed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 0x7fffffff))
    console.log(`script fault fuzz seed ${seed} (FC_SEED=${seed} to replay)`)
    const random = xorshift(seed)
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
    const store = new RedisStore({ client: ioredisClient(admin), prefix: `${prefix}-fuzz` })
    const scripts = await import('../../src/stores/redis/lua-scripts.js').then((m) => m.luaScripts())
    const garbage = ['', 'x', '-1', '0', '1', '1.5', '1e400', 'nan', '9007199254740993', '\u0000', '600']
    const keys = Array.from({ length: 4 }, () => randomStorageKey())
    // Records in every state, plus a foreign string and a hash with broken fields.
    const owner = randomToken()
    await store.begin(begin(keys[0] ?? '', owner))
    await store.begin(begin(keys[1] ?? '', owner))
    await store.complete(complete(keys[1] ?? '', owner))
    await admin.set(`${prefix}-fuzz:${keys[2]}`, 'foreign', 'PX', RETENTION)
    await admin.hset(`${prefix}-fuzz:${keys[3]}`, { v: '1', state: 'in_progress', fence: 'x', exp: 'y' })
    await admin.pexpire(`${prefix}-fuzz:${keys[3]}`, RETENTION)
    const fresh = () => `${prefix}-fuzz:${randomStorageKey()}`
    let errors = 0
    for (let i = 0; i < 300; i++) {
      const script = pick(Object.values(scripts))
      const key = random() < 0.3 ? fresh() : `${prefix}-fuzz:${pick(keys)}`
      const argc = Math.floor(random() * 9)
      const args = Array.from({ length: argc }, () => pick(garbage))
      // Half the begins as a limited store sends them: a scope set as KEYS[2] (whose keys need a TTL too).
      const scopeSets = script.name === 'begin' && random() < 0.5 ? [`${prefix}-fuzz:scope:${pick(['a', 'b'])}`] : []
      try {
        await admin.eval(script.source, 1 + scopeSets.length, key, ...scopeSets, ...args)
      } catch (error) {
        errors++
        expect(String(error)).toMatch(/IDEMPOTENCY_(ARGUMENT|UNDECODABLE)/)
      }
    }
    expect(errors).toBeGreaterThan(100)
    const immortal: string[] = []
    let cursor = '0'
    do {
      const [next, found] = await admin.scan(cursor, 'MATCH', `${prefix}-fuzz:*`, 'COUNT', 1000)
      cursor = next
      for (const key of found) if ((await admin.pttl(key)) < 0) immortal.push(key)
    } while (cursor !== '0')
    expect(immortal).toEqual([])
  })

  it('maps a corrupt field, a wrong type, a newer version and a hash without one to undecodable, not to "no record"', async () => {
    const store = new RedisStore({ client: ioredisClient(admin), prefix })
    for (const write of [
      (k: string) =>
        admin.hset(k, {
          v: '1',
          state: 'completed',
          fence: '1',
          fp: FP,
          token: 't',
          lease: '1',
          exp: 'soon',
          prev: '0',
          takeover: '0',
        }),
      (k: string) => admin.rpush(k, 'a'),
      (k: string) => admin.hset(k, { v: '2', state: 'in_progress' }),
      // No version at all: the scripts read it as "no fields", which must not pass for "no key".
      (k: string) => admin.hset(k, { state: 'completed', token: 't', exp: String(Date.now() + RETENTION) }),
    ]) {
      const key = randomStorageKey()
      await write(`${prefix}:${key}`)
      await admin.pexpire(`${prefix}:${key}`, RETENTION)
      for (const op of [
        () => store.begin(begin(key)),
        () => store.complete(complete(key, 't')),
        () => store.extend({ key, token: 't', leaseMs: LEASE, retentionMs: RETENTION }),
        () => store.release({ key, token: 't', retentionMs: RETENTION }),
        () => store.get(key),
        () => store.delete(key),
      ]) {
        await expect(op()).rejects.toMatchObject({ reason: 'undecodable' })
      }
      expect(await store.delete(key, { force: true })).toBe('deleted')
      expect(await admin.exists(`${prefix}:${key}`)).toBe(0)
    }
  })

  describe('maxmemory', () => {
    let server: RedisServer
    let client: Redis
    beforeAll(async () => {
      server = await startRedisServer({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] })
      client = await ready(ioredis(server.url))
    })
    afterAll(async () => {
      client.disconnect()
      await server.stop()
    })

    it('warns once on first use when maxmemory-policy can evict records', async () => {
      const warnings: string[] = []
      const store = new RedisStore({ client: ioredisClient(client), prefix, onWarning: (m) => warnings.push(m) })
      await store.begin(begin(randomStorageKey()))
      await store.begin(begin(randomStorageKey()))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain('allkeys-lru')
    })

    it("with evictionPolicy 'refuse' throws IdempotencyConfigError and writes nothing", async () => {
      const store = new RedisStore({ client: ioredisClient(client), prefix, evictionPolicy: 'refuse' })
      const key = randomStorageKey()
      await expect(store.begin(begin(key))).rejects.toBeInstanceOf(IdempotencyConfigError)
      await expect(store.begin(begin(key))).rejects.toBeInstanceOf(IdempotencyConfigError)
      expect(await client.exists(`${prefix}:${key}`)).toBe(0)
      // Fixed at runtime: the next call checks again and goes through.
      await client.config('SET', 'maxmemory-policy', 'noeviction')
      expect((await store.begin(begin(key))).kind).toBe('acquired')
      await client.config('SET', 'maxmemory-policy', 'allkeys-lru')
    })

    it('says nothing under noeviction, and answers full (not a crash) when Redis is out of memory', async () => {
      const quiet = await startRedisServer()
      const raw = await ready(ioredis(quiet.url))
      try {
        const warnings: string[] = []
        const store = new RedisStore({ client: ioredisClient(raw), prefix, onWarning: (m) => warnings.push(m) })
        const key = randomStorageKey()
        const token = randomToken()
        await store.begin(begin(key, token))
        expect(warnings).toEqual([])
        await raw.set(`${prefix}:ballast`, Buffer.alloc(4 * 1024 * 1024))
        await raw.config('SET', 'maxmemory', '1mb')
        await expect(store.begin(begin(randomStorageKey()))).rejects.toMatchObject({ reason: 'full' })
        await expect(store.complete(complete(key, token))).rejects.toMatchObject({ reason: 'full' })
        // The read-only script still answers (flags=no-writes).
        expect((await store.get(key))?.state).toBe('in_progress')
      } finally {
        raw.disconnect()
        await quiet.stop()
      }
    })
  })

  describe.each(['ioredis', 'ioredis (auto-pipelining)', 'node-redis'] as const)(
    'an unreachable Redis, with %s',
    (driver) => {
      it('rejects with unavailable quickly instead of hanging', async () => {
        const server = await startRedisServer()
        let close: () => Promise<void> = async () => {}
        try {
          let client: RedisClient
          if (driver !== 'node-redis') {
            const enableAutoPipelining = driver !== 'ioredis'
            const raw = await ready(ioredis(server.url, { retryStrategy: () => 50, enableAutoPipelining }))
            close = async () => {
              raw.disconnect()
            }
            client = ioredisClient(raw)
          } else {
            const raw = await nodeRedis(server.url)
            close = async () => {
              raw.destroy()
            }
            client = nodeRedisClient(raw)
          }
          const store = new RedisStore({ client, prefix })
          const key = randomStorageKey()
          expect((await store.begin(begin(key))).kind).toBe('acquired')
          await server.stop()
          for (let i = 0; i < 3; i++) {
            const started = performance.now()
            const error = await store.begin(begin(key)).then(
              () => null,
              (reason: unknown) => reason,
            )
            expect(error).toBeInstanceOf(IdempotencyStoreError)
            expect((error as IdempotencyStoreError).reason).toBe('unavailable')
            // A bound far above a local round trip, far below any engine deadline: no hang, no queue.
            expect(performance.now() - started).toBeLessThan(1_000)
          }
        } finally {
          await close()
          await server.stop()
        }
      })
    },
  )

  describe.each(['ioredis', 'node-redis'] as const)('durability with WAIT, with %s', (driver) => {
    let primary: RedisServer
    let replica: RedisServer
    let raw: Redis
    let client: RedisClient
    let sent: string[]
    let close: () => Promise<void>
    beforeAll(async () => {
      primary = await startRedisServer({ args: ['--repl-diskless-sync-delay', '0'] })
      replica = await startRedisServer()
      await replica.cli('REPLICAOF', '127.0.0.1', String(primary.port))
      const deadline = Date.now() + 10_000
      while (!(await replica.cli('INFO', 'replication')).includes('master_link_status:up')) {
        if (Date.now() > deadline) throw new Error('replica did not sync')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      raw = await ready(ioredis(replica.url))
      if (driver === 'ioredis') {
        const main = await ready(ioredis(primary.url))
        sent = countCommands(main)
        client = ioredisClient(main)
        close = async () => main.disconnect()
      } else {
        const main = await nodeRedis(primary.url)
        const counting = countingNodeRedis(main)
        sent = counting.sent
        client = nodeRedisClient(counting.client)
        close = () => main.close()
      }
    })
    afterAll(async () => {
      await close()
      raw.disconnect()
      await replica.stop()
      await primary.stop()
    })

    it('pipelines WAIT with begin and complete; the replica has the record when they answer', async () => {
      const store = new RedisStore({ client, prefix, durability: { replicas: 1, timeoutMs: 2_000 } })
      await store.get(randomStorageKey()) // first use reads INFO memory
      for (const op of everyOperation(new RedisStore({ client, prefix }))) await op()
      const key = randomStorageKey()
      const token = randomToken()
      sent.length = 0
      expect((await store.begin(begin(key, token))).kind).toBe('acquired')
      expect(sent).toEqual(['evalsha', 'wait'])
      expect(await raw.hget(`${prefix}:${key}`, 'token')).toBe(token)
      sent.length = 0
      expect(await store.complete(complete(key, token))).toBe(true)
      expect(sent).toEqual(['evalsha', 'wait'])
      expect(await raw.hget(`${prefix}:${key}`, 'state')).toBe('completed')
    })

    it('releases and throws unavailable when fewer replicas acknowledge begin than asked', async () => {
      const store = new RedisStore({ client, prefix, durability: { replicas: 2, timeoutMs: 100 } })
      const key = randomStorageKey()
      const token = randomToken()
      await expect(store.begin(begin(key, token))).rejects.toMatchObject({ reason: 'unavailable' })
      expect(await store.get(key)).toMatchObject({ state: 'released', fence: 1, token })
      // The key is not held: the next attempt acquires (and is again refused for durability).
      const plain = new RedisStore({ client, prefix })
      expect(await plain.begin(begin(key))).toEqual({ kind: 'acquired', fence: 2, takeover: false, previousFence: 1 })
    })

    it('throws unavailable from complete when fewer replicas acknowledge it; a retry is a no-op', async () => {
      const plain = new RedisStore({ client, prefix })
      const store = new RedisStore({ client, prefix, durability: { replicas: 2, timeoutMs: 100 } })
      const key = randomStorageKey()
      const token = randomToken()
      await plain.begin(begin(key, token))
      await expect(store.complete(complete(key, token))).rejects.toMatchObject({ reason: 'unavailable' })
      expect(await plain.complete(complete(key, token))).toBe(true)
      expect((await plain.get(key))?.state).toBe('completed')
    })
  })
})

// ---------------------------------------------------------------------------------------------

function begin(key: string, token = randomToken()) {
  return { key, scope: 'scope', fingerprint: FP, token, leaseMs: LEASE, retentionMs: RETENTION }
}

function complete(key: string, token: string) {
  return { key, token, response: RESPONSE, retentionMs: RETENTION }
}

function everyOperation(store: RedisStore): Array<() => Promise<unknown>> {
  const key = randomStorageKey()
  const token = randomToken()
  return [
    () => store.begin(begin(key, token)),
    () => store.extend({ key, token, leaseMs: LEASE, retentionMs: RETENTION }),
    () => store.complete(complete(key, token)),
    () => store.release({ key, token, retentionMs: RETENTION }),
    () => store.get(key),
    () => store.delete(key),
  ]
}

function calls(commandstats: string, command: string): number {
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(commandstats)
  return match ? Number(match[1]) : 0
}

function xorshift(seed: number): () => number {
  let state = seed || 1
  return () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 0x100000000
  }
}
