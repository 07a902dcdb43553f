// What a Redis-backed guard costs Redis itself, which `npm run bench` does not show: Redis's CPU per request, read
// from `INFO cpu` around each slice, beside the server's CPU per request.
//
//   node --conditions=idempotency-kit-source --import tsx bench/redis-cost.ts http [subjects] [seconds] [rounds]
//     Each subject's server (bench/server.ts) under unique keys, 32 connections; the subjects take turns, rounds
//     times. Default: every Redis subject (the kit with and without auto-pipelining, the seed's design, the peers),
//     5 s, 2 rounds.
//   node --conditions=idempotency-kit-source --import tsx bench/redis-cost.ts scripts [first|replay] [count]
//     The store's scripts alone, 64 calls in flight: Redis CPU per first request (begin + complete) or per replay,
//     and EVALSHA's own time per call from `INFO commandstats`.
//   node --conditions=idempotency-kit-source --import tsx bench/redis-cost.ts lua [count]
//     What the parts of a script cost: EVALSHA's time per call for scripts that do one thing each (return at once,
//     load the shared helpers, call TIME, …), with complete's arguments.
//
// Redis must not be busy with anything else meanwhile: its CPU is read for the whole server. Keys go under a random
// prefix and are removed at the end.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { Redis } from 'ioredis'
import { load, purgeRedis, type RunningServer, startServer } from './http-bench.js'
import { SUBJECTS } from './subjects.js'

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const admin = new Redis(REDIS_URL)
const prefix = `bench-cost-${randomBytes(4).toString('hex')}`

/** Redis's CPU time so far (user + system, main thread and children), in µs. */
async function redisCpu(): Promise<number> {
  const info = await admin.info('cpu')
  const read = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN)
  return (read('used_cpu_user') + read('used_cpu_sys')) * 1e6
}

let sequence = 0
const nextKey = () => `cost-${sequence++}`

async function http(ids: readonly string[], seconds: number, rounds: number): Promise<void> {
  const servers: Array<{ readonly id: string; readonly server: RunningServer }> = []
  try {
    for (const id of ids) {
      const subject = SUBJECTS.find((s) => s.id === id)
      if (subject === undefined) throw new Error(`unknown subject ${id}`)
      servers.push({ id, server: await startServer(subject, { BENCH_PREFIX: `${prefix}-${id}` }) })
    }
    for (const { server } of servers) await load(server.url, nextKey, { connections: 32, duration: 2 })
    const totals = new Map<string, { requests: number; cpu: number; redis: number; rps: number[] }>()
    for (let round = 0; round < rounds; round++) {
      for (const { id, server } of round % 2 === 0 ? servers : [...servers].reverse()) {
        const [before, redisBefore] = [await server.stats(), await redisCpu()]
        const result = await load(server.url, nextKey, { connections: 32, duration: seconds })
        const [after, redisAfter] = [await server.stats(), await redisCpu()]
        const total = totals.get(id) ?? { requests: 0, cpu: 0, redis: 0, rps: [] }
        total.requests += after.requests - before.requests
        total.cpu += after.cpuMicros - before.cpuMicros
        total.redis += redisAfter - redisBefore
        total.rps.push(Math.round(result.requests.average))
        totals.set(id, total)
      }
    }
    for (const [id, t] of totals) {
      const server = (t.cpu / t.requests).toFixed(1)
      const redis = (t.redis / t.requests).toFixed(1)
      console.log(`${id.padEnd(24)} req/s ${t.rps.join(' ')}  server µs/req ${server}  Redis µs/req ${redis}`)
    }
  } finally {
    for (const { server } of servers) await server.stop()
  }
}

async function scripts(path: 'first' | 'replay', count: number): Promise<void> {
  const client = new Redis(REDIS_URL, { enableAutoPipelining: true })
  try {
    const store = new RedisStore({ client: ioredisClient(client), prefix, onWarning: () => {} })
    const body = Buffer.from(JSON.stringify({ id: 'ch_0123456789abcdef01234567', amount: 5000, status: 'succeeded' }))
    const response = { status: 200, headers: [['content-type', 'application/json']] as const, body, replayable: true }
    const fingerprint = `v1:${'a'.repeat(64)}`
    const begin = (key: string, token: string) =>
      store.begin({ key, scope: 's', fingerprint, token, leaseMs: 30_000, retentionMs: 86_400_000 })
    const first = async (key: string) => {
      const token = randomBytes(16).toString('hex')
      await begin(key, token)
      await store.complete({ key, token, response, retentionMs: 86_400_000 })
    }
    await first('replayed')
    const one = path === 'first' ? (i: number) => first(`k${i}`) : () => begin('replayed', 'unused')
    await admin.config('RESETSTAT')
    const cpu = await redisCpu()
    let next = 0
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < count) await one(next++)
      }),
    )
    const perOp = ((await redisCpu()) - cpu) / count
    const evalsha = /^cmdstat_evalsha:calls=(\d+),usec=\d+,usec_per_call=([\d.]+)/m.exec(
      await admin.info('commandstats'),
    )
    console.log(
      `${path}: Redis µs per ${path === 'first' ? 'first request' : 'replay'} ${perOp.toFixed(1)}; ` +
        `EVALSHA ${evalsha?.[1]} calls, ${evalsha?.[2]} µs each`,
    )
  } finally {
    client.disconnect()
  }
}

/** EVALSHA's own time per call (`INFO commandstats`) of scripts that each add one part of what the store's do. */
async function lua(count: number): Promise<void> {
  const client = new Redis(REDIS_URL, { enableAutoPipelining: true })
  try {
    const lib = readFileSync(new URL('../src/stores/redis/lua/lib.lua', import.meta.url), 'utf8')
    const parts: Record<string, string> = {
      'return at once': '#!lua\nreturn 1',
      'the shared helpers': `#!lua\n${lib}\nreturn 1`,
      TIME: "#!lua\nlocal t = redis.call('TIME')\nreturn 1",
      'HMGET, missing key':
        "#!lua\nlocal f = redis.call('HMGET', KEYS[1], 'v', 'state', 'token', 'exp', 'sk')\nreturn 1",
      'five string.format': `#!lua\nlocal s = ''\nfor i = 1, 5 do s = s .. string.format('%d', i) end\nreturn 1`,
    }
    // complete's arguments: token, status, replayable, headers, a 180-byte body, retention, offset.
    const args = [
      randomBytes(16).toString('hex'),
      '200',
      '1',
      'content-type\0application/json',
      'x'.repeat(180),
      '1',
      '0',
    ]
    for (const [name, source] of Object.entries(parts)) {
      const sha = String(await client.script('LOAD', source))
      await admin.config('RESETSTAT')
      let next = 0
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (next++ < count) await client.evalsha(sha, 1, `${prefix}:missing`, ...args)
        }),
      )
      const perCall = /^cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/m.exec(
        await admin.info('commandstats'),
      )?.[1]
      console.log(`${name.padEnd(20)} ${perCall} µs per EVALSHA`)
    }
  } finally {
    client.disconnect()
  }
}

try {
  const [mode = 'http', a, b, c] = process.argv.slice(2)
  if (mode === 'http') {
    const ids = a?.split(',') ?? SUBJECTS.filter((s) => s.store === 'redis').map((s) => s.id)
    await http(ids, Number(b ?? 5), Number(c ?? 2))
  } else if (mode === 'scripts') {
    await scripts(a === 'replay' ? 'replay' : 'first', Number(b ?? 40_000))
  } else if (mode === 'lua') {
    await lua(Number(a ?? 30_000))
  } else {
    throw new Error(`unknown mode ${mode}: http, scripts or lua`)
  }
} finally {
  await purgeRedis(REDIS_URL, prefix)
  admin.disconnect()
}
