// The HTTP benchmark: spawns one subject server at a time (beside its baseline's) and drives them with autocannon
// from this process. A subject and its baseline are loaded in turns, slice by slice, so that the ratio between them
// is taken under the same machine conditions: on a shared machine the speed drifts by ±30% within minutes.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import autocannon, { type AutocannonRequest, type AutocannonResult } from 'autocannon'
import { Redis } from 'ioredis'
import pg from 'pg'
import { SLOW_GATEWAY_MS } from './bench-app.js'
import { SUBJECTS, type Subject } from './subjects.js'

/** The repository root: servers run from here so the source condition resolves. */
export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url))

/** The four scenarios of the issue. */
export type Scenario = 'unique' | 'replay' | 'mixed' | 'concurrent-slow'

/** One measured (scenario, subject, run). `round_trips` is per request; `executions` counts gateway calls. */
export interface HttpRow {
  readonly run: number
  readonly scenario: Scenario
  readonly subject: string
  readonly store: string
  readonly framework: string
  readonly id: string
  readonly connections: number
  readonly duration_s: number
  readonly requests: number
  readonly rps: number
  readonly p50_ms: number
  readonly p99_ms: number
  readonly round_trips: number
  /** The server process's CPU time (user + system) per request served, µs: steadier than req/s on a shared machine. */
  readonly cpu_us_per_req: number
  readonly executions: number
  readonly non_2xx: number
  readonly errors: number
  readonly status_codes: Readonly<Record<string, number>>
  /**
   * The subject's baseline as measured in turns with this row (absent for the baselines themselves and for the
   * slow scenario): what this row's ratios divide by.
   */
  readonly paired_baseline?: PairedBaseline
}

/** A baseline measured slice by slice in turns with a subject. */
export interface PairedBaseline {
  readonly id: string
  readonly requests: number
  readonly rps: number
  readonly p50_ms: number
  readonly p99_ms: number
  readonly cpu_us_per_req: number
}

export interface HttpBenchOptions {
  readonly subjects: readonly Subject[]
  readonly scenarios: readonly Scenario[]
  /** Seconds of measurement per throughput scenario. */
  readonly durationS: number
  /** Seconds of warm-up load before each throughput scenario (not measured). */
  readonly warmupS: number
  readonly connections: number
  /**
   * Slices a subject's measurement is cut into, each followed (or preceded, in turn) by a slice of its baseline;
   * default 5. Both get `durationS` in all.
   */
  readonly slices?: number
  /** Concurrent duplicates in the slow scenario. */
  readonly duplicates: number
  readonly runs: number
  /** Keys completed before the 50% duplicates scenario, replayed in turn; default 512. */
  readonly mixedPool?: number
  readonly redisUrl: string
  readonly postgresUrl: string
  /** Progress lines; default none. */
  readonly log?: (line: string) => void
}

const CHARGE_BODY = JSON.stringify({ amount: 5000, customerId: 'cus_123', currency: 'usd' })
const PATH = '/api/payments/charge'
const REDIS_HINT = 'start it with: redis-server --daemonize yes (or service redis-server start)'
const POSTGRES_HINT = 'start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'

interface Stats {
  requests: number
  roundTrips: number
  attempts: number
  cpuMicros: number
}

/** A subject's server process, listening on loopback. */
export interface RunningServer {
  readonly url: string
  readonly child: ChildProcess
  stats(): Promise<Stats>
  post(path: string): Promise<void>
  stop(): Promise<void>
}

/** Fails, saying how to start it, when a service a subject needs cannot be reached. */
export async function checkServices(subjects: readonly Subject[], redisUrl: string, postgresUrl: string) {
  if (subjects.some((s) => s.store === 'redis')) {
    const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000 })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.ping()
    } catch (error) {
      throw new Error(`Redis at ${redisUrl} is unreachable (${String(error)}); ${REDIS_HINT}`)
    } finally {
      client.disconnect()
    }
  }
  if (subjects.some((s) => s.store === 'postgres')) {
    const client = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 2000 })
    try {
      await client.connect()
      await client.query('SELECT 1')
    } catch (error) {
      throw new Error(`PostgreSQL at ${postgresUrl} is unreachable (${String(error)}); ${POSTGRES_HINT}`)
    } finally {
      await client.end().catch(() => undefined)
    }
  }
}

/** Starts `subject`'s server from the checkout at `root` (this one by default), so it loads that checkout's sources. */
export async function startServer(
  subject: Subject,
  env: Record<string, string>,
  root: string = REPO_ROOT,
): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--conditions=idempotency-kit-source', '--import', 'tsx', 'bench/server.ts'], {
    cwd: root,
    env: { ...process.env, ...env, BENCH_SUBJECT: subject.id },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${subject.id} did not listen within 60 s: ${stderr}`)), 60_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (line !== undefined) {
        clearTimeout(timer)
        resolve((JSON.parse(line) as { port: number }).port)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${subject.id} exited with ${code} before listening: ${stderr}`))
    })
  })
  const url = `http://127.0.0.1:${port}`
  return {
    url,
    child,
    stats: async () => (await (await fetch(`${url}/__bench/stats`)).json()) as Stats,
    post: async (path) => {
      const res = await fetch(`${url}${path}`, { method: 'POST' })
      await res.arrayBuffer()
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      }
    },
  }
}

/** A key generator per scenario: each request's `Idempotency-Key` (letters, digits and `-`, as the seed accepts). */
function keysFor(scenario: Scenario, tag: string, pool: readonly string[]): () => string {
  let n = 0
  switch (scenario) {
    case 'unique':
      return () => `${tag}-u${n++}`
    case 'replay':
      return () => pool[0] as string
    case 'mixed':
      // Every other request repeats a key completed before the run: 50% first requests, 50% replays.
      return () => {
        const i = n++
        return i % 2 === 0 ? `${tag}-m${i}` : (pool[(i >> 1) % pool.length] as string)
      }
    case 'concurrent-slow':
      return () => pool[0] as string
    default: {
      const unknown: never = scenario
      throw new TypeError(`unknown scenario ${String(unknown)}`)
    }
  }
}

export function load(
  url: string,
  nextKey: () => string,
  options: { connections: number; duration?: number; amount?: number },
) {
  const request: AutocannonRequest = {
    method: 'POST',
    path: PATH,
    headers: { 'content-type': 'application/json' },
    body: CHARGE_BODY,
    setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'idempotency-key': nextKey() } }),
  }
  return autocannon({
    url,
    connections: options.connections,
    ...(options.amount === undefined ? { duration: options.duration ?? 1 } : { amount: options.amount }),
    timeout: 20,
    requests: [request],
  })
}

/** Completes `keys` (first requests), `connections` at a time, so replays have something to replay. */
async function prime(url: string, keys: readonly string[], connections: number): Promise<void> {
  let i = 0
  await load(url, () => keys[i++ % keys.length] as string, {
    connections: Math.min(connections, keys.length),
    amount: keys.length,
  })
}

/**
 * The keys a scenario repeats (512 for the 50% duplicates, one otherwise), completed on each of `servers` first
 * when the scenario replays them.
 */
async function primedPool(
  servers: readonly RunningServer[],
  scenario: Scenario,
  tag: string,
  options: HttpBenchOptions,
): Promise<string[]> {
  const pool =
    scenario === 'mixed' ? Array.from({ length: options.mixedPool ?? 512 }, (_, i) => `${tag}-p${i}`) : [`${tag}-k`]
  if (scenario === 'replay' || scenario === 'mixed') {
    for (const server of servers) await prime(server.url, pool, options.connections)
  }
  return pool
}

/** Runs every (run, subject, scenario) one at a time and returns the rows. */
export async function runHttpBench(options: HttpBenchOptions): Promise<HttpRow[]> {
  const log = options.log ?? (() => {})
  await checkServices(options.subjects, options.redisUrl, options.postgresUrl)
  const rows: HttpRow[] = []
  for (let run = 1; run <= options.runs; run++) {
    for (const subject of options.subjects) {
      const tag = randomBytes(6).toString('hex')
      const prefix = `bench-${tag}`
      const schema = `bench_${tag}`
      if (subject.store === 'postgres') await withPg(options.postgresUrl, (c) => c.query(`CREATE SCHEMA "${schema}"`))
      const server = await startServer(subject, {
        BENCH_REDIS_URL: options.redisUrl,
        BENCH_PREFIX: prefix,
        BENCH_PG_URL: options.postgresUrl,
        BENCH_PG_SCHEMA: schema,
      })
      const baselineSubject = SUBJECTS.find((s) => s.id === subject.baseline && s.id !== subject.id)
      const baseline = baselineSubject === undefined ? undefined : await startServer(baselineSubject, {})
      try {
        for (const scenario of options.scenarios) {
          log(
            `run ${run} ${subject.id}${baseline === undefined ? '' : ` (in turns with ${subject.baseline})`} ${scenario}`,
          )
          const measured =
            baseline === undefined || scenario === 'concurrent-slow'
              ? await measure(server, subject, scenario, run, `${tag}-${scenario}`, options)
              : await measurePaired(server, baseline, subject, scenario, run, `${tag}-${scenario}`, options)
          rows.push(measured)
        }
      } finally {
        await baseline?.stop()
        await server.stop()
        if (subject.store === 'redis') await purgeRedis(options.redisUrl, prefix)
        if (subject.store === 'postgres') {
          await withPg(options.postgresUrl, (c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
        }
      }
    }
  }
  return rows
}

async function measure(
  server: RunningServer,
  subject: Subject,
  scenario: Scenario,
  run: number,
  tag: string,
  options: HttpBenchOptions,
): Promise<HttpRow> {
  const slow = scenario === 'concurrent-slow'
  const pool = await primedPool([server], scenario, tag, options)
  if (slow) {
    await server.post('/__bench/slow?on=1')
  } else if (options.warmupS > 0) {
    // Warm the JIT and the connections on the same path, with keys of their own.
    await load(server.url, keysFor(scenario, `${tag}-w`, pool), {
      connections: options.connections,
      duration: options.warmupS,
    })
  }
  const before = await server.stats()
  const connections = slow ? options.duplicates : options.connections
  const result = await load(server.url, keysFor(scenario, tag, pool), {
    connections,
    ...(slow ? { amount: options.duplicates } : { duration: options.durationS }),
  })
  // In-flight completions (a store write after the response) land a moment later.
  await new Promise((resolve) => setTimeout(resolve, slow ? SLOW_GATEWAY_MS + 200 : 200))
  const after = await server.stats()
  if (slow) await server.post('/__bench/slow?on=0')
  const served = after.requests - before.requests
  const total = result['2xx'] + result.non2xx
  return {
    ...rowOf(subject, run, scenario),
    connections,
    duration_s: round(result.duration, 3),
    requests: total,
    rps: round(total / result.duration, 1),
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    round_trips: served === 0 ? 0 : round((after.roundTrips - before.roundTrips) / served, 3),
    cpu_us_per_req: served === 0 ? 0 : round((after.cpuMicros - before.cpuMicros) / served, 1),
    executions: after.attempts - before.attempts,
    non_2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    status_codes: statusCodesOf(result),
  }
}

/** What names a row: the run, the scenario and the subject. */
function rowOf(subject: Subject, run: number, scenario: Scenario) {
  return {
    run,
    scenario,
    subject: subject.subject,
    store: subject.store,
    framework: subject.framework,
    id: subject.id,
  }
}

function statusCodesOf(result: AutocannonResult): Record<string, number> {
  const codes: Record<string, number> = {}
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) codes[code] = count
  return codes
}

/** One slice of load on one server. */
interface Slice {
  readonly duration: number
  readonly requests: number
  readonly non2xx: number
  readonly errors: number
  readonly p50: number
  readonly p99: number
  readonly statusCodes: Record<string, number>
}

async function slice(url: string, nextKey: () => string, connections: number, seconds: number): Promise<Slice> {
  const result = await load(url, nextKey, { connections, duration: seconds })
  return {
    duration: result.duration,
    requests: result['2xx'] + result.non2xx,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    p50: result.latency.p50,
    p99: result.latency.p99,
    statusCodes: statusCodesOf(result),
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** What a server's slices add up to: requests/s over their summed time, the median of their p50 and p99. */
function totals(slices: readonly Slice[]) {
  const duration = slices.reduce((a, s) => a + s.duration, 0)
  const requests = slices.reduce((a, s) => a + s.requests, 0)
  const statusCodes: Record<string, number> = {}
  for (const s of slices)
    for (const [code, n] of Object.entries(s.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n
  return {
    duration,
    requests,
    rps: duration === 0 ? 0 : requests / duration,
    p50: median(slices.map((s) => s.p50)),
    p99: median(slices.map((s) => s.p99)),
    non2xx: slices.reduce((a, s) => a + s.non2xx, 0),
    errors: slices.reduce((a, s) => a + s.errors, 0),
    statusCodes,
  }
}

/**
 * A throughput scenario on `server` in turns with its baseline: both primed and warmed alike, then `slices` rounds
 * of one slice each, the order swapped every round (S B, B S, S B…) so that neither always goes first. Server CPU and
 * round trips are the counters' change over the whole alternation (a server is idle while the other is loaded).
 */
export async function measurePaired(
  server: RunningServer,
  baseline: RunningServer,
  subject: Subject,
  scenario: Exclude<Scenario, 'concurrent-slow'>,
  run: number,
  tag: string,
  options: HttpBenchOptions,
): Promise<HttpRow> {
  const both = [server, baseline]
  const pool = await primedPool(both, scenario, tag, options)
  if (options.warmupS > 0) {
    for (const s of both) {
      await load(s.url, keysFor(scenario, `${tag}-w`, pool), {
        connections: options.connections,
        duration: options.warmupS,
      })
    }
  }
  const rounds = Math.max(1, options.slices ?? 5)
  const seconds = options.durationS / rounds
  const keys = [keysFor(scenario, tag, pool), keysFor(scenario, `${tag}-b`, pool)] as const
  const slices: [Slice[], Slice[]] = [[], []]
  const before = [await server.stats(), await baseline.stats()] as const
  for (let round = 0; round < rounds; round++) {
    for (const which of round % 2 === 0 ? ([0, 1] as const) : ([1, 0] as const)) {
      slices[which].push(await slice((both[which] as RunningServer).url, keys[which], options.connections, seconds))
    }
  }
  // In-flight completions (a store write after the response) land a moment later.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const after = [await server.stats(), await baseline.stats()] as const
  const cpuPerRequest = (which: 0 | 1) => {
    const served = after[which].requests - before[which].requests
    return served === 0 ? 0 : round((after[which].cpuMicros - before[which].cpuMicros) / served, 1)
  }
  const mine = totals(slices[0])
  const theirs = totals(slices[1])
  const served = after[0].requests - before[0].requests
  return {
    ...rowOf(subject, run, scenario),
    connections: options.connections,
    duration_s: round(mine.duration, 3),
    requests: mine.requests,
    rps: round(mine.rps, 1),
    p50_ms: mine.p50,
    p99_ms: mine.p99,
    round_trips: served === 0 ? 0 : round((after[0].roundTrips - before[0].roundTrips) / served, 3),
    cpu_us_per_req: cpuPerRequest(0),
    executions: after[0].attempts - before[0].attempts,
    non_2xx: mine.non2xx,
    errors: mine.errors,
    status_codes: mine.statusCodes,
    paired_baseline: {
      id: subject.baseline,
      requests: theirs.requests,
      rps: round(theirs.rps, 1),
      p50_ms: theirs.p50,
      p99_ms: theirs.p99,
      cpu_us_per_req: cpuPerRequest(1),
    },
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

export async function withPg(url: string, fn: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  await client.connect()
  try {
    await fn(client)
  } finally {
    await client.end()
  }
}

/** Removes every key this run wrote (and only those): SCAN by the run's random prefix, then UNLINK. */
export async function purgeRedis(url: string, prefix: string): Promise<number> {
  const client = new Redis(url, { lazyConnect: true })
  await client.connect()
  let removed = 0
  try {
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) removed += await client.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    client.disconnect()
  }
  return removed
}
