// The in-process engine benchmark: decisions per second through `engine.handle` + `finish`, no HTTP, one core.
import { randomBytes } from 'node:crypto'
import { createIdempotency, type IdempotencyRequest, MemoryStore, type Store } from 'idempotency-kit'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { Redis } from 'ioredis'

/** One measured path: `first` is begin + complete with fingerprinting; `replay` is begin answering a replay. */
export interface EngineRow {
  readonly store: 'memory' | 'redis'
  readonly path: 'first' | 'replay'
  readonly body: 'small' | '64KiB'
  /** Requests in flight at once: 1 is the latency-bound sequential rate. */
  readonly concurrency: number
  readonly decisions: number
  readonly seconds: number
  /** Wall-clock rate. */
  readonly decisions_per_s: number
  /** Decisions per second of this process's CPU time (user + system): steadier on a shared machine. */
  readonly decisions_per_cpu_s: number
}

/** The floor on Redis: the same client's bare round trips per second (a one-key script), at each concurrency. */
export interface RedisFloorRow {
  readonly concurrency: number
  readonly round_trips_per_s: number
}

const SMALL_BODY = Buffer.from(JSON.stringify({ amount: 5000, customerId: 'cus_123', currency: 'usd' }))

/** A JSON object of about 64 KiB: many short fields, as a large form or order would have. */
function largeBody(): Buffer {
  const items: Record<string, unknown> = { amount: 5000, customerId: 'cus_123', currency: 'usd' }
  let size = Buffer.byteLength(JSON.stringify(items))
  for (let i = 0; size < 64 * 1024 - 128; i++) {
    const line = { sku: `sku-${i}`, quantity: i % 7, price: 1999 + i, note: 'gift wrapped' }
    items[`line_${i}`] = line
    size += Buffer.byteLength(JSON.stringify({ [`line_${i}`]: line })) - 1
  }
  return Buffer.from(JSON.stringify(items))
}

const RESPONSE = {
  kind: 'response',
  status: 200,
  headers: [['content-type', 'application/json; charset=utf-8']],
  body: Buffer.from(
    JSON.stringify({
      id: 'ch_0123456789abcdef01234567',
      amount: 5000,
      currency: 'usd',
      customerId: 'cus_123',
      status: 'succeeded',
      createdAt: '2026-01-01T00:00:00.000Z',
    }),
  ),
} as const

/**
 * One keyed JSON POST as an adapter hands it over. A class, so making one costs one object and no closure: the
 * harness's own allocations are not the engine's (under tsx every closure also pays a `__name` call).
 */
class BenchRequest implements IdempotencyRequest {
  readonly method = 'POST'
  readonly url = '/api/payments/charge'
  readonly contentType = 'application/json'
  readonly scope = 'tenant_1'
  readonly body: { readonly kind: 'raw'; readonly bytes: Buffer }

  constructor(
    readonly key: string,
    bytes: Buffer,
  ) {
    this.body = { kind: 'raw', bytes }
  }

  header(name: string): string | undefined {
    return name === 'idempotency-key' ? this.key : name === 'content-type' ? 'application/json' : undefined
  }
}

function request(key: string, body: Buffer): IdempotencyRequest {
  return new BenchRequest(key, body)
}

/** Runs `one(i)` with `concurrency` in flight for about `seconds`; returns how many completed and how long it took. */
async function drive(seconds: number, concurrency: number, one: (i: number) => Promise<void>) {
  let next = 0
  const cpu = process.cpuUsage()
  const started = performance.now()
  const until = started + seconds * 1000
  const worker = async () => {
    while (performance.now() < until) await one(next++)
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  return { decisions: next, seconds: elapsed, cpuSeconds: (used.user + used.system) / 1e6 }
}

function rates(r: { decisions: number; seconds: number; cpuSeconds: number }) {
  return {
    decisions: r.decisions,
    seconds: Math.round(r.seconds * 1000) / 1000,
    decisions_per_s: Math.round(r.decisions / r.seconds),
    decisions_per_cpu_s: Math.round(r.decisions / r.cpuSeconds),
  }
}

/** Measures one (store, path, body, concurrency) on a fresh engine and store. */
async function measure(
  store: Store,
  path: 'first' | 'replay',
  body: Buffer,
  seconds: number,
  concurrency: number,
): Promise<{ decisions: number; seconds: number; cpuSeconds: number }> {
  // As the demo: default lease (30 s, heartbeat on), node:crypto, the seed's marker.
  const engine = createIdempotency({ store, markers: { 'Idempotency-Cached': ['false', 'true'] } })
  const tag = randomBytes(6).toString('hex')
  const first = async (key: string) => {
    const decision = await engine.handle(request(key, body))
    if (decision.kind !== 'execute') throw new Error(`expected execute, got ${decision.kind}`)
    const sent = await decision.execution.finish(RESPONSE)
    if (sent !== null) throw new Error(`expected the captured response to be sent, got ${sent.status}`)
  }
  const replayKey = `${tag}-replay`
  if (path === 'replay') await first(replayKey)
  const one =
    path === 'first'
      ? (i: number) => first(`${tag}-${i}`)
      : async () => {
          const decision = await engine.handle(request(replayKey, body))
          if (decision.kind !== 'respond' || decision.response.status !== 200) throw new Error('expected a replay')
        }
  // Warm the JIT on the same path for a fifth of the time, then measure.
  await drive(Math.min(1, seconds / 5), concurrency, path === 'first' ? (i) => first(`${tag}-w${i}`) : one)
  const result = await drive(seconds, concurrency, one)
  await engine.close({ graceMs: 100 })
  return result
}

export interface EngineBenchOptions {
  readonly seconds: number
  /** Include Redis rows (needs a reachable Redis). */
  readonly redisUrl?: string
  /** Only these paths/bodies/stores (for profiling one of them). */
  readonly only?: { readonly store?: string; readonly path?: string; readonly body?: string }
}

/** Runs the engine benchmark; on Redis the keys go under a random prefix removed afterwards. */
export async function runEngineBench(
  options: EngineBenchOptions,
): Promise<{ rows: EngineRow[]; floor: RedisFloorRow[] }> {
  const bodies = { small: SMALL_BODY, '64KiB': largeBody() } as const
  const rows: EngineRow[] = []
  const floor: RedisFloorRow[] = []
  const wanted = (store: string, path: string, body: string) =>
    (options.only?.store ?? store) === store &&
    (options.only?.path ?? path) === path &&
    (options.only?.body ?? body) === body
  for (const path of ['first', 'replay'] as const) {
    for (const body of ['small', '64KiB'] as const) {
      if (!wanted('memory', path, body)) continue
      const store = new MemoryStore({ maxRecords: 10_000_000, maxBytes: 8 * 1024 ** 3 })
      const r = await measure(store, path, bodies[body], options.seconds, 1)
      rows.push({ store: 'memory', path, body, concurrency: 1, ...rates(r) })
    }
  }
  if (options.redisUrl !== undefined && (options.only?.store ?? 'redis') === 'redis') {
    const client = new Redis(options.redisUrl, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      lazyConnect: true,
    })
    await client.connect()
    const prefix = `bench-engine-${randomBytes(6).toString('hex')}`
    try {
      const store = new RedisStore({ client: ioredisClient(client), prefix, onWarning: () => {} })
      for (const concurrency of [1, 64]) {
        const r = await drive(Math.min(2, options.seconds), concurrency, async () => {
          await client.call('EVAL', ['return 1', '1', `${prefix}:floor`])
        })
        floor.push({ concurrency, round_trips_per_s: Math.round(r.decisions / r.seconds) })
        for (const path of ['first', 'replay'] as const) {
          if (!wanted('redis', path, 'small')) continue
          const m = await measure(store, path, bodies.small, options.seconds, concurrency)
          rows.push({ store: 'redis', path, body: 'small', concurrency, ...rates(m) })
        }
      }
    } finally {
      let cursor = '0'
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
        cursor = next
        if (keys.length > 0) await client.unlink(...keys)
      } while (cursor !== '0')
      client.disconnect()
    }
  }
  return { rows, floor }
}

// Run as a script (by bench/run.ts, possibly under --cpu-prof): print the result as one JSON line.
if (process.argv[1]?.endsWith('engine-bench.ts')) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const result = await runEngineBench({
    seconds: Number(arg('seconds') ?? 3),
    ...(arg('redis') === undefined ? {} : { redisUrl: arg('redis') as string }),
    only: {
      ...(arg('store') === undefined ? {} : { store: arg('store') as string }),
      ...(arg('path') === undefined ? {} : { path: arg('path') as string }),
      ...(arg('body') === undefined ? {} : { body: arg('body') as string }),
    },
  })
  process.stdout.write(`${JSON.stringify(result)}\n`)
}
