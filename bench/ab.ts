// Two checkouts of the kit on one subject, in turns: what a change saves or costs, on a machine whose speed drifts
// by a third within minutes (a full `npm run bench` cannot compare two versions of the code).
//
//   git worktree add /tmp/before HEAD~1 && ln -s "$PWD/node_modules" /tmp/before/node_modules
//   node --conditions=idempotency-kit-source --import tsx bench/ab.ts SUBJECT /tmp/before [AFTER_DIR]
//     [--scenario=unique|replay] [--seconds=3] [--rounds=6]
//
// Each side's bench/server.ts runs from its own checkout (AFTER_DIR defaults to this one), so each loads its own
// sources; both share the services. Round r loads the sides in turns, the order swapped every round, 32 connections,
// and reads each server's CPU per request; the last lines give the medians and after/before. Redis keys and
// PostgreSQL schemas are made per side and removed at the end.
import { randomBytes } from 'node:crypto'
import { load, purgeRedis, REPO_ROOT, type RunningServer, startServer, withPg } from './http-bench.js'
import { SUBJECTS } from './subjects.js'

const args = process.argv.slice(2)
const option = (name: string, fallback: string) =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const [id, before, after = REPO_ROOT] = args.filter((a) => !a.startsWith('--'))
const subject = SUBJECTS.find((s) => s.id === id)
if (subject === undefined || before === undefined) {
  throw new Error(`usage: bench/ab.ts SUBJECT BEFORE_DIR [AFTER_DIR]; subjects: ${SUBJECTS.map((s) => s.id).join(' ')}`)
}
const scenario = option('scenario', 'unique')
if (scenario !== 'unique' && scenario !== 'replay') throw new Error('--scenario is unique or replay')
const seconds = Number(option('seconds', '3'))
const rounds = Number(option('rounds', '6'))
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const postgresUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const tag = randomBytes(6).toString('hex')
const sides = [
  { name: 'before', root: before, prefix: `bench-ab-${tag}-before`, schema: `bench_ab_${tag}_before` },
  { name: 'after', root: after, prefix: `bench-ab-${tag}-after`, schema: `bench_ab_${tag}_after` },
] as const
const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN

const servers: RunningServer[] = []
try {
  for (const side of sides) {
    if (subject.store === 'postgres') await withPg(postgresUrl, (c) => c.query(`CREATE SCHEMA "${side.schema}"`))
    const env = { BENCH_REDIS_URL: redisUrl, BENCH_PREFIX: side.prefix, BENCH_PG_URL: postgresUrl }
    servers.push(await startServer(subject, { ...env, BENCH_PG_SCHEMA: side.schema }, side.root))
  }
  let n = 0
  const replayKey = `ab-${tag}-replay`
  const nextKey = scenario === 'unique' ? () => `ab-${tag}-${n++}` : () => replayKey
  // Warm-up, which also completes the replayed key on both sides.
  for (const server of servers) await load(server.url, nextKey, { connections: 32, duration: 2 })
  const cpu: number[][] = [[], []]
  const rps: number[][] = [[], []]
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [0, 1] : [1, 0]
    const line: string[] = []
    for (const i of order) {
      const server = servers[i] as RunningServer
      const start = await server.stats()
      const result = await load(server.url, nextKey, { connections: 32, duration: seconds })
      const end = await server.stats()
      const perRequest = (end.cpuMicros - start.cpuMicros) / (end.requests - start.requests)
      cpu[i]?.push(perRequest)
      rps[i]?.push(result.requests.average)
      line.push(`${sides[i]?.name} ${Math.round(result.requests.average)} req/s ${perRequest.toFixed(1)} µs/req`)
    }
    process.stdout.write(`round ${round + 1}: ${line.join(', ')}\n`)
  }
  const [cpuBefore, cpuAfter] = cpu.map(median) as [number, number]
  const [rpsBefore, rpsAfter] = rps.map(median) as [number, number]
  process.stdout.write(
    `${id} ${scenario}, medians of ${rounds} rounds of ${seconds} s:\n` +
      `  before ${Math.round(rpsBefore)} req/s, server CPU ${cpuBefore.toFixed(1)} µs/req\n` +
      `  after  ${Math.round(rpsAfter)} req/s, server CPU ${cpuAfter.toFixed(1)} µs/req\n` +
      `  after/before: ${(rpsAfter / rpsBefore).toFixed(2)}× req/s, ${(cpuAfter / cpuBefore).toFixed(2)}× CPU\n`,
  )
} finally {
  for (const server of servers) await server.stop()
  if (subject.store === 'redis') {
    for (const side of sides) await purgeRedis(redisUrl, side.prefix)
  }
  if (subject.store === 'postgres') {
    for (const side of sides) {
      await withPg(postgresUrl, (c) => c.query(`DROP SCHEMA IF EXISTS "${side.schema}" CASCADE`))
    }
  }
}
