// `npm run bench`: every subject over HTTP, one at a time, then the in-process engine and its CPU profile.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { EngineRow, RedisFloorRow } from './engine-bench.js'
import { REPO_ROOT, runHttpBench, type Scenario } from './http-bench.js'
import { type ProfileEntry, summariseProfile } from './profile-summary.js'
import {
  chartSvg,
  judgeTargets,
  machineFacts,
  type Results,
  type Revision,
  resultsMarkdown,
  withRatios,
} from './report.js'
import { NOT_MEASURED, SUBJECTS } from './subjects.js'

const args = process.argv.slice(2)
const flag = (name: string) => args.includes(`--${name}`)
const value = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const quick = flag('quick')
const redisUrl = value('redis') ?? process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const postgresUrl = value('postgres') ?? process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)

const fastifyReady = existsSync(join(REPO_ROOT, 'src/adapters/fastify/index.ts'))
const only = value('only')?.split(',')
const subjects = SUBJECTS.filter(
  (s) =>
    (only === undefined || only.includes(s.id)) && (s.framework !== 'fastify' || fastifyReady || only !== undefined),
)
const notMeasured = [
  ...NOT_MEASURED,
  ...(fastifyReady
    ? []
    : [
        {
          subject: 'idempotency-kit',
          store: 'memory',
          why: 'Fastify: idempotency-kit/fastify was not there at run time',
        },
      ]),
]
const scenarios = (value('scenarios')?.split(',') ?? ['unique', 'replay', 'mixed', 'concurrent-slow']) as Scenario[]
const options = {
  durationS: Number(value('duration') ?? (quick ? 2 : 10)),
  warmupS: Number(value('warmup') ?? (quick ? 0.5 : 2)),
  connections: 32,
  duplicates: 100,
  runs: Number(value('runs') ?? (quick ? 1 : 2)),
  // Each subject in turns with its baseline: this many slices of each, of duration / slices seconds.
  slices: Number(value('slices') ?? (quick ? 2 : 5)),
  engineSeconds: Number(value('engine-seconds') ?? (quick ? 1 : 3)),
}
// Only a full run (every subject, the default durations) may become the committed results.
const full =
  !quick &&
  only === undefined &&
  value('duration') === undefined &&
  value('runs') === undefined &&
  value('slices') === undefined
const out = value('out') ?? (full ? join(REPO_ROOT, 'bench/results/latest.json') : join(tmpdir(), 'bench-latest.json'))

/** Writes the chart and the generated block of docs/BENCHMARKS.md from a results file's content. */
function writeDocs(results: Results): void {
  const chart = join(REPO_ROOT, 'docs/benchmarks-chart.svg')
  writeFileSync(chart, chartSvg(results))
  const docs = join(REPO_ROOT, 'docs/BENCHMARKS.md')
  const text = readFileSync(docs, 'utf8')
  const start = '<!-- results:start -->'
  const end = '<!-- results:end -->'
  const [head, rest] = text.split(start)
  const tail = rest?.split(end)[1]
  if (head === undefined || tail === undefined) throw new Error(`docs/BENCHMARKS.md lacks ${start} … ${end}`)
  writeFileSync(docs, `${head}${start}\n${resultsMarkdown(results, 'benchmarks-chart.svg')}${end}${tail}`)
  log('wrote docs/BENCHMARKS.md and docs/benchmarks-chart.svg')
}

/**
 * The CPU the engine benchmark is pinned to, with `taskset`, where there is one (Linux): "per second on one core"
 * taken literally, the collector's helper threads share that core instead of adding another's time.
 */
function pinnedCpu(): number | null {
  if (process.platform !== 'linux') return null
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' })
    return cpus().length - 1
  } catch {
    return null
  }
}
const engineCpu = pinnedCpu()

/** Runs a bench script in its own process (optionally under --cpu-prof) and parses its one JSON line. */
function child<T>(script: string, scriptArgs: string[], profileDir?: string): Promise<T> {
  const node = ['--conditions=idempotency-kit-source', '--import', 'tsx']
  if (profileDir !== undefined) node.unshift('--cpu-prof', `--cpu-prof-dir=${profileDir}`)
  const [command, args] =
    engineCpu === null
      ? [process.execPath, [...node, script, ...scriptArgs]]
      : ['taskset', ['-c', String(engineCpu), process.execPath, ...node, script, ...scriptArgs]]
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let stdout = ''
    proc.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    proc.once('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('{'))
      if (code !== 0 || line === undefined) reject(new Error(`${script} exited with ${code}`))
      else resolve(JSON.parse(line) as T)
    })
  })
}

// `--from=FILE`: render the docs and chart again from a results file, without measuring anything.
const from = value('from')
if (from !== undefined) {
  // The targets are judged again by this code from the stored rows (the measurements are not touched).
  const stored = JSON.parse(readFileSync(from, 'utf8')) as Results
  writeDocs({ ...stored, targets: judgeTargets(stored.runs, stored.engine.rows) })
  process.exit(0)
}

/** The commit measured, and whether src/ had uncommitted changes (the run measures the working tree). */
function revision(): Revision {
  const git = (...a: string[]) => execFileSync('git', a, { cwd: REPO_ROOT }).toString().trim()
  try {
    return {
      commit: git('rev-parse', 'HEAD'),
      src_tree: git('rev-parse', 'HEAD:src'),
      src_dirty: git('status', '--porcelain', 'src') !== '',
    }
  } catch {
    return { commit: 'unknown', src_dirty: true }
  }
}

const startedAt = new Date().toISOString()
const atStart = revision()
const machine = machineFacts()
log(
  `${subjects.length} subjects, ${scenarios.join(', ')}; ${options.runs} run(s) of ${options.durationS} s; out ${out}`,
)

const rows = flag('no-http') ? [] : await runHttpBench({ subjects, scenarios, redisUrl, postgresUrl, log, ...options })

let engine: { rows: EngineRow[]; floor: RedisFloorRow[] } = { rows: [], floor: [] }
const profile: Record<string, ProfileEntry[]> = {}
if (!flag('no-engine')) {
  log('in-process engine')
  engine = await child('bench/engine-bench.ts', [`--seconds=${options.engineSeconds}`, `--redis=${redisUrl}`])
  if (!flag('no-profile')) {
    for (const path of ['first', 'replay'] as const) {
      log(`profiling the engine, memory store, ${path} path, small body`)
      const dir = mkdtempSync(join(tmpdir(), 'bench-prof-'))
      try {
        await child(
          'bench/engine-bench.ts',
          [`--seconds=${options.engineSeconds}`, '--store=memory', `--path=${path}`, '--body=small'],
          dir,
        )
        // The main thread's profile is the largest file; workers (tsx's loader) write small ones.
        const files = readdirSync(dir).map((f) => join(dir, f))
        const main = files.sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]
        if (main !== undefined)
          profile[`engine, memory, ${path} path, small body`] = summariseProfile(main, REPO_ROOT, 12)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
}

const runs = withRatios(rows)
const results: Results = {
  timestamp: startedAt,
  machine,
  node: process.version,
  quiet: flag('quiet-machine'),
  options: { ...options, scenarios, subjects: subjects.map((s) => s.id), full, engine_pinned_to_cpu: engineCpu },
  // Each server loads the sources when it starts: a commit landing mid-run splits the subjects between two.
  revision: { at_start: atStart, at_end: revision() },
  runs,
  engine: { rows: engine.rows, redis_floor: engine.floor },
  profile,
  targets: judgeTargets(runs, engine.rows),
  not_measured: notMeasured,
}
mkdirSync(join(out, '..'), { recursive: true })
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
// The repository's formatter checks bench/**: leave the file as it would write it.
if (out.startsWith(REPO_ROOT))
  execFileSync('npx', ['biome', 'format', '--write', out], { cwd: REPO_ROOT, stdio: 'ignore' })
log(`wrote ${out}`)

if (full || flag('docs')) writeDocs(results)
for (const t of results.targets) log(`${t.met === null ? 'n/a ' : t.met ? 'met ' : 'MISS'} ${t.target}: ${t.measured}`)
