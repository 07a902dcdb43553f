// Two servers in turns, A then B: two checkouts of the kit on one subject (what a change saves or costs), or two
// subjects head to head (the kit against a peer), on a machine whose speed drifts by a third within minutes. A full
// `npm run bench` compares each subject with its own baseline, not with another version of the code or directly
// with another subject.
//
//   git worktree add /tmp/before HEAD~1 && ln -s "$PWD/node_modules" /tmp/before/node_modules
//   node --conditions=idempotency-kit-source --import tsx bench/ab.ts kit-postgres@/tmp/before kit-postgres
//   node --conditions=idempotency-kit-source --import tsx bench/ab.ts seed-redis kit-redis
//     [--scenario=unique|replay|mixed] [--seconds=3] [--rounds=6]
//
// Besides the full run's subjects, two probes take the kit apart on Express (bench/subjects.ts, PROBES):
//   bench/ab.ts baseline-kit-json probe-capture    the capture and store-then-send alone
//   bench/ab.ts probe-capture probe-null-store     plus the engine, on a store that keeps nothing
//   bench/ab.ts probe-null-store kit-memory        plus the memory store
//
// A side is SUBJECT or SUBJECT@CHECKOUT (default: this checkout); each side's bench/server.ts runs from its own
// checkout, so each loads its own sources; both share the services. The measurement is the full run's own
// (`measurePaired`, with A in the baseline's place): both primed and warmed alike, then the slices in turns, the
// order swapped every round, 32 connections; requests/s over the summed slices and server CPU per request over the
// whole alternation, then B/A. Redis keys and PostgreSQL schemas are made per side and removed at the end.
import { randomBytes } from 'node:crypto'
import {
  measurePaired,
  purgeRedis,
  REPO_ROOT,
  type RunningServer,
  type Scenario,
  startServer,
  withPg,
} from './http-bench.js'
import { PROBES, SUBJECTS } from './subjects.js'

const args = process.argv.slice(2)
const option = (name: string, fallback: string) =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const specs = args.filter((a) => !a.startsWith('--'))
const measurable = [...SUBJECTS, ...PROBES]
const known = measurable.map((s) => s.id).join(' ')
if (specs.length !== 2) {
  throw new Error(`usage: bench/ab.ts A B, each SUBJECT[@CHECKOUT]; subjects: ${known}`)
}
const scenario = option('scenario', 'unique') as Scenario
if (scenario !== 'unique' && scenario !== 'replay' && scenario !== 'mixed') {
  throw new Error('--scenario is unique, replay or mixed')
}
const seconds = Number(option('seconds', '3'))
const rounds = Number(option('rounds', '6'))
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const postgresUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const tag = randomBytes(6).toString('hex')
const sides = specs.map((spec, i) => {
  const [id, root = REPO_ROOT] = spec.split('@')
  const subject = measurable.find((s) => s.id === id)
  if (subject === undefined) throw new Error(`unknown subject ${id}; subjects: ${known}`)
  const name = i === 0 ? 'A' : 'B'
  return { name, spec, subject, root, prefix: `bench-ab-${tag}-${name}`, schema: `bench_ab_${tag}_${name}` }
})
const [a, b] = sides as [(typeof sides)[0], (typeof sides)[0]]

const servers: RunningServer[] = []
try {
  for (const side of sides) {
    if (side.subject.store === 'postgres') {
      await withPg(postgresUrl, (c) => c.query(`CREATE SCHEMA "${side.schema}"`))
    }
    const env = { BENCH_REDIS_URL: redisUrl, BENCH_PREFIX: side.prefix, BENCH_PG_URL: postgresUrl }
    servers.push(await startServer(side.subject, { ...env, BENCH_PG_SCHEMA: side.schema }, side.root))
  }
  // The full run's own measurement, with A in the baseline's place.
  const row = await measurePaired(
    servers[1] as RunningServer,
    servers[0] as RunningServer,
    b.subject,
    scenario,
    1,
    tag,
    {
      subjects: [b.subject],
      scenarios: [scenario],
      durationS: rounds * seconds,
      warmupS: 2,
      connections: 32,
      slices: rounds,
      duplicates: 100,
      runs: 1,
      redisUrl,
      postgresUrl,
    },
  )
  const them = row.paired_baseline
  if (them === undefined) throw new Error('measurePaired returned no paired row')
  process.stdout.write(
    `${scenario}, ${rounds} slices of ${seconds} s each, in turns:\n` +
      `  A ${a.spec}: ${Math.round(them.rps)} req/s, server CPU ${them.cpu_us_per_req} µs/req\n` +
      `  B ${b.spec}: ${Math.round(row.rps)} req/s, server CPU ${row.cpu_us_per_req} µs/req\n` +
      `  B/A: ${(row.rps / them.rps).toFixed(2)}× req/s, ${(row.cpu_us_per_req / them.cpu_us_per_req).toFixed(2)}× CPU\n`,
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
