// Two servers in turns, A then B: two checkouts of the kit on one subject (what a change saves or costs), or two
// subjects head to head (the kit against a peer), on a machine whose speed drifts by a third within minutes. A full
// `npm run bench` compares each subject with its own baseline, not with another version of the code or directly
// with another subject.
//
//   git worktree add /tmp/before HEAD~1 && ln -s "$PWD/node_modules" /tmp/before/node_modules
//   node --conditions=idempotency-kit-source --import tsx bench/ab.ts kit-postgres@/tmp/before kit-postgres
//   node --conditions=idempotency-kit-source --import tsx bench/ab.ts seed-redis kit-redis
//     [--scenario=unique|replay] [--seconds=3] [--rounds=6]
//
// A side is SUBJECT or SUBJECT@CHECKOUT (default: this checkout); each side's bench/server.ts runs from its own
// checkout, so each loads its own sources; both share the services. Each round loads the sides in turns, the order
// swapped every round, 32 connections, and reads each server's CPU per request; the last lines give the medians and
// B/A. Redis keys and PostgreSQL schemas are made per side and removed at the end.
import { randomBytes } from 'node:crypto'
import { load, purgeRedis, REPO_ROOT, type RunningServer, startServer, withPg } from './http-bench.js'
import { SUBJECTS } from './subjects.js'

const args = process.argv.slice(2)
const option = (name: string, fallback: string) =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const specs = args.filter((a) => !a.startsWith('--'))
if (specs.length !== 2) {
  throw new Error(`usage: bench/ab.ts A B, each SUBJECT[@CHECKOUT]; subjects: ${SUBJECTS.map((s) => s.id).join(' ')}`)
}
const scenario = option('scenario', 'unique')
if (scenario !== 'unique' && scenario !== 'replay') throw new Error('--scenario is unique or replay')
const seconds = Number(option('seconds', '3'))
const rounds = Number(option('rounds', '6'))
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const postgresUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const tag = randomBytes(6).toString('hex')
const sides = specs.map((spec, i) => {
  const [id, root = REPO_ROOT] = spec.split('@')
  const subject = SUBJECTS.find((s) => s.id === id)
  if (subject === undefined) throw new Error(`unknown subject ${id}; subjects: ${SUBJECTS.map((s) => s.id).join(' ')}`)
  const name = i === 0 ? 'A' : 'B'
  return { name, spec, subject, root, prefix: `bench-ab-${tag}-${name}`, schema: `bench_ab_${tag}_${name}` }
})
const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN

const servers: RunningServer[] = []
try {
  for (const side of sides) {
    if (side.subject.store === 'postgres') {
      await withPg(postgresUrl, (c) => c.query(`CREATE SCHEMA "${side.schema}"`))
    }
    const env = { BENCH_REDIS_URL: redisUrl, BENCH_PREFIX: side.prefix, BENCH_PG_URL: postgresUrl }
    servers.push(await startServer(side.subject, { ...env, BENCH_PG_SCHEMA: side.schema }, side.root))
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
  const [cpuA, cpuB] = cpu.map(median) as [number, number]
  const [rpsA, rpsB] = rps.map(median) as [number, number]
  process.stdout.write(
    `${scenario}, medians of ${rounds} rounds of ${seconds} s:\n` +
      `  A ${sides[0]?.spec}: ${Math.round(rpsA)} req/s, server CPU ${cpuA.toFixed(1)} µs/req\n` +
      `  B ${sides[1]?.spec}: ${Math.round(rpsB)} req/s, server CPU ${cpuB.toFixed(1)} µs/req\n` +
      `  B/A: ${(rpsB / rpsA).toFixed(2)}× req/s, ${(cpuB / cpuA).toFixed(2)}× CPU\n`,
  )
} finally {
  for (const server of servers) await server.stop()
  for (const side of sides) {
    if (side.subject.store === 'redis') await purgeRedis(redisUrl, side.prefix)
    if (side.subject.store === 'postgres') {
      await withPg(postgresUrl, (c) => c.query(`DROP SCHEMA IF EXISTS "${side.schema}" CASCADE`))
    }
  }
}
