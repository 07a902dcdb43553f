// Turns a run's rows into results/latest.json, the tables and targets of docs/BENCHMARKS.md, and the SVG chart.
import { readFileSync } from 'node:fs'
import { cpus, freemem, loadavg, release, totalmem, type } from 'node:os'
import { barChartSvg } from './chart.js'
import type { EngineRow, RedisFloorRow } from './engine-bench.js'
import type { HttpRow, Scenario } from './http-bench.js'
import type { ProfileEntry } from './profile-summary.js'
import { NOT_MEASURED, SUBJECTS } from './subjects.js'

/** The machine a run was taken on. */
export interface MachineFacts {
  readonly cpu_model: string
  /** The processor's clock, where the system tells it: machines of one kind differ by it (2.1 and 2.6 GHz seen). */
  readonly cpu_mhz?: number
  readonly cpus: number
  readonly memory_gib: number
  readonly free_memory_gib: number
  readonly os: string
  readonly load_average_at_start: readonly number[]
}

/** A row of the results file: a measured HTTP row plus its ratio to the same-framework baseline (same run). */
export type ResultRow = HttpRow & {
  readonly ratio_to_baseline: number | null
  /** The baseline's server CPU per request over this row's: the throughput ratio a CPU-bound server would see. */
  readonly cpu_ratio_to_baseline: number | null
}

/** The results file, `bench/results/latest.json`. */
export interface Results {
  readonly timestamp: string
  readonly machine: MachineFacts
  readonly node: string
  /** False: the machine was shared while measuring; regenerate on a quiet one before trusting small gaps. */
  readonly quiet: boolean
  readonly options: Readonly<Record<string, unknown>>
  /** The commit at the start and at the end of the run, and whether src/ had uncommitted changes. */
  readonly revision?: {
    readonly at_start: Revision
    readonly at_end: Revision
  }
  readonly runs: readonly ResultRow[]
  readonly engine: { readonly rows: readonly EngineRow[]; readonly redis_floor: readonly RedisFloorRow[] }
  readonly profile: Readonly<Record<string, readonly ProfileEntry[]>>
  readonly targets: readonly Target[]
  readonly not_measured: ReadonlyArray<{ readonly subject: string; readonly store: string; readonly why: string }>
}

/** A commit, its src/ tree (equal trees: the same sources) and whether src/ had uncommitted changes. */
export interface Revision {
  readonly commit: string
  readonly src_tree?: string
  readonly src_dirty: boolean
}

/** One target of the issue, judged on this run's numbers; never asserted by a test. */
export interface Target {
  readonly target: string
  readonly measured: string
  readonly met: boolean | null
}

/** The machine facts, read at the start of a run. */
export function machineFacts(): MachineFacts {
  const all = cpus()
  const mhz = clockMhz(all[0]?.speed ?? 0)
  return {
    cpu_model: all[0]?.model ?? 'unknown',
    ...(mhz === undefined ? {} : { cpu_mhz: mhz }),
    cpus: all.length,
    memory_gib: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    free_memory_gib: Math.round((freemem() / 1024 ** 3) * 10) / 10,
    os: `${type()} ${release()}`,
    load_average_at_start: loadavg().map((l) => Math.round(l * 100) / 100),
  }
}

/** `os.cpus()`'s speed, or Linux's `cpu MHz` where that is 0 (as in some virtual machines). */
function clockMhz(speed: number): number | undefined {
  if (speed > 0) return speed
  try {
    const line = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    return line === null ? undefined : Math.round(Number(line[1]))
  } catch {
    return undefined
  }
}

/** What a row divides by: its baseline measured in turns with it, else that baseline's own row of the run. */
/** The id of the subject a subject's throughput is divided by. */
function baselineIdOf(id: string): string | undefined {
  return SUBJECTS.find((s) => s.id === id)?.baseline
}

function baselineOf(
  rows: readonly HttpRow[],
  row: HttpRow,
): Pick<HttpRow, 'rps' | 'p99_ms' | 'cpu_us_per_req'> | undefined {
  if (row.paired_baseline !== undefined) return row.paired_baseline
  const baselineId = baselineIdOf(row.id)
  return rows.find((r) => r.run === row.run && r.scenario === row.scenario && r.id === baselineId)
}

/** Adds each row's ratio to its framework's baseline in the same run and scenario. */
export function withRatios(rows: readonly HttpRow[]): ResultRow[] {
  return rows.map((row) => {
    const base = baselineOf(rows, row)
    const slow = row.scenario === 'concurrent-slow'
    const ratio = base === undefined || base.rps === 0 ? null : Math.round((row.rps / base.rps) * 1000) / 1000
    const cpu =
      base === undefined || row.cpu_us_per_req === 0
        ? null
        : Math.round((base.cpu_us_per_req / row.cpu_us_per_req) * 1000) / 1000
    return { ...row, ratio_to_baseline: slow ? null : ratio, cpu_ratio_to_baseline: slow ? null : cpu }
  })
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length
}

/** The mean over runs of one field for (id, scenario); NaN when not measured. */
export function meanOf(
  rows: readonly ResultRow[],
  id: string,
  scenario: Scenario,
  field: 'rps' | 'p99_ms' | 'round_trips' | 'cpu_us_per_req',
) {
  return mean(rows.filter((r) => r.id === id && r.scenario === scenario).map((r) => r[field]))
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a')

/**
 * One subject against its baseline, as the mean over runs of each run's ratio. A row measured in turns with its
 * baseline is divided by that paired measurement (requests/s and p99: the row's over the baseline's; server CPU:
 * the baseline's over the row's, so that higher is better for both); a row without one by the baseline's own row.
 */
export function ratioToBaseline(
  rows: readonly ResultRow[],
  id: string,
  scenario: Scenario,
  field: 'rps' | 'p99_ms' | 'cpu_us_per_req',
): number {
  return mean(ratiosByRun(rows, id, scenario, field))
}

/** Each run's ratio of one subject to its baseline, in run order (see `ratioToBaseline`). */
export function ratiosByRun(
  rows: readonly ResultRow[],
  id: string,
  scenario: Scenario,
  field: 'rps' | 'p99_ms' | 'cpu_us_per_req',
): number[] {
  return rows
    .filter((r) => r.id === id && r.scenario === scenario)
    .sort((a, b) => a.run - b.run)
    .map((row) => {
      const base = baselineOf(rows, row)
      if (base === undefined) return Number.NaN
      return field === 'cpu_us_per_req' ? base[field] / row[field] : row[field] / base[field]
    })
}

/** A subject's throughput ratio in each run, and how far apart the runs are. */
export interface RunSpread {
  readonly id: string
  readonly subject: string
  readonly store: string
  readonly framework: string
  readonly scenario: Scenario
  readonly ratios: readonly number[]
  /** The largest ratio minus the smallest. */
  readonly spread: number
}

/**
 * How far each guarded subject's runs disagree on its throughput ratio, largest first. Both runs of a row were
 * measured in turns with its baseline, so a wide spread is the machine changing what a request costs (not just
 * how fast it runs), and neither run is the answer alone.
 */
export function runSpreads(rows: readonly ResultRow[]): RunSpread[] {
  const spreads: RunSpread[] = []
  const seen = new Set<string>()
  for (const row of rows) {
    const key = `${row.id} ${row.scenario}`
    if (row.ratio_to_baseline === null || seen.has(key)) continue
    seen.add(key)
    if (baselineIdOf(row.id) === row.id) continue
    const ratios = ratiosByRun(rows, row.id, row.scenario, 'rps')
    if (ratios.length < 2) continue
    const { id, subject, store, framework, scenario } = row
    spreads.push({ id, subject, store, framework, scenario, ratios, spread: Math.max(...ratios) - Math.min(...ratios) })
  }
  return spreads.sort((a, b) => b.spread - a.spread)
}

/**
 * Judges the issue's targets on this run. A subject is compared with its baseline measured in turns with it; two
 * subjects (the kit and a peer) by their ratios to their baselines, so machine drift between them cancels out.
 */
export function judgeTargets(rows: readonly ResultRow[], engine: readonly EngineRow[]): Target[] {
  const targets: Target[] = []
  // a over b: against its own baseline directly, else through both subjects' ratios to their baselines.
  const ratio = (a: string, b: string, s: Scenario, f: 'rps' | 'p99_ms' | 'cpu_us_per_req' = 'rps') =>
    baselineIdOf(a) === b
      ? ratioToBaseline(rows, a, s, f)
      : ratioToBaseline(rows, a, s, f) / ratioToBaseline(rows, b, s, f)
  // The same comparison in each run: the target is judged on the mean, and the runs show how far to trust it.
  const perRun = (a: string, b: string, s: Scenario, f: 'rps' | 'p99_ms' = 'rps') => {
    const own = ratiosByRun(rows, a, s, f)
    if (baselineIdOf(a) === b) return own
    const other = ratiosByRun(rows, b, s, f)
    return own.map((v, i) => v / (other[i] ?? Number.NaN))
  }
  const runs = (values: readonly number[]) =>
    values.length < 2 ? '' : ` (runs: ${values.map((v) => `${fmt(v)}×`).join(', ')})`
  // The same comparison by server CPU per request: what the ratio would be on a CPU-bound server.
  const cpu = (a: string, b: string, s: Scenario) => `; server CPU: ${fmt(ratio(a, b, s, 'cpu_us_per_req'))}×`
  const judge = (target: string, value: number, ok: (v: number) => boolean, measured: string) =>
    targets.push({ target, measured, met: Number.isFinite(value) ? ok(value) : null })
  for (const s of ['unique', 'replay'] as const) {
    const r = ratio('kit-memory', 'baseline-kit-json', s)
    judge(
      `memory store ≥ 0.90× baseline throughput (${s})`,
      r,
      (v) => v >= 0.9,
      `${fmt(r)}×${runs(perRun('kit-memory', 'baseline-kit-json', s))}${cpu('kit-memory', 'baseline-kit-json', s)}`,
    )
  }
  const seed = ratio('kit-redis', 'seed-redis', 'unique')
  judge(
    'Redis first-request throughput ≥ 1.3× the seed design',
    seed,
    (v) => v >= 1.3,
    `${fmt(seed)}×${runs(perRun('kit-redis', 'seed-redis', 'unique'))}${cpu('kit-redis', 'seed-redis', 'unique')}`,
  )
  const redisPeers = ['node-idempotency-redis', 'powertools-redis', 'express-idempotency-redis']
  const peers = redisPeers.map((p) => ratio('kit-redis', p, 'unique'))
  const worst = Math.min(...peers)
  const peerRuns = redisPeers.map((p) => perRun('kit-redis', p, 'unique'))
  const worstByRun = (peerRuns[0] ?? []).map((_, i) => Math.min(...peerRuns.map((r) => r[i] ?? Number.NaN)))
  judge(
    'Redis first-request throughput ahead of every Redis peer',
    worst,
    (v) => v > 1,
    `${fmt(worst)}× the closest${runs(worstByRun)}`,
  )
  const rtFirst = meanOf(rows, 'kit-redis', 'unique', 'round_trips')
  judge('2 round trips per first request (Redis)', rtFirst, (v) => Math.abs(v - 2) < 0.05, fmt(rtFirst, 3))
  const rtReplay = meanOf(rows, 'kit-redis', 'replay', 'round_trips')
  judge('1 round trip per replay (Redis)', rtReplay, (v) => Math.abs(v - 1) < 0.05, fmt(rtReplay, 3))
  for (const s of ['unique', 'replay'] as const) {
    const r = ratio('kit-memory', 'baseline-kit-json', s, 'p99_ms')
    const measured = `${fmt(r)}×${runs(perRun('kit-memory', 'baseline-kit-json', s, 'p99_ms'))}`
    judge(`p99 at 32 connections ≤ 1.5× baseline, memory store (${s})`, r, (v) => v <= 1.5, measured)
  }
  for (const s of ['unique', 'replay'] as const) {
    const r = ratio('fastify-kit-memory', 'fastify-baseline', s)
    judge(
      `Fastify, memory store ≥ 0.85× bare Fastify (${s})`,
      r,
      (v) => v >= 0.85,
      `${fmt(r)}×${runs(perRun('fastify-kit-memory', 'fastify-baseline', s))}${cpu('fastify-kit-memory', 'fastify-baseline', s)}`,
    )
  }
  const engineRate = (path: 'first' | 'replay') =>
    engine.find((e) => e.store === 'memory' && e.path === path && e.body === 'small')?.decisions_per_cpu_s ?? Number.NaN
  const first = engineRate('first')
  judge(
    'engine ≥ 100,000 first-request decisions/s/core (small body)',
    first,
    (v) => v >= 100_000,
    `${fmt(first, 0)} per CPU-second`,
  )
  const replay = engineRate('replay')
  judge('engine ≥ 250,000 replays/s/core (small body)', replay, (v) => v >= 250_000, `${fmt(replay, 0)} per CPU-second`)
  return targets
}

/**
 * The chart: each guarded subject's throughput as a multiple of its framework's unguarded route measured in turns
 * with it (mean over runs). Raw requests/s of subjects measured minutes apart would chart the machine's drift.
 */
export function chartSvg(results: Results): string {
  const scenarios: Scenario[] = ['unique', 'replay', 'mixed']
  const ids = SUBJECTS.filter((s) => s.baseline !== s.id && results.runs.some((r) => r.id === s.id))
  const groups = ids.map((s) => ({
    label: `${s.framework === 'fastify' ? 'Fastify · ' : ''}${s.subject}${s.store === 'none' ? '' : ` (${s.store})`}`,
    values: scenarios.map((sc) => ratioToBaseline(results.runs, s.id, sc, 'rps')),
  }))
  return barChartSvg(
    `Throughput × the unguarded route, in turns, mean of ${new Set(results.runs.map((r) => r.run)).size} runs (${results.timestamp})`,
    ['unique keys', 'same completed key', '50% duplicates'],
    groups,
    '1.00× = the same framework, no idempotency, measured in turns (higher is better); 32 connections',
    (value) => `${value.toFixed(2)}×`,
  )
}

const SCENARIO_NAMES: Record<Scenario, string> = {
  unique: 'unique key per request (first-request path)',
  replay: 'same completed key (replay path)',
  mixed: '50% duplicates (every other request replays a completed key)',
  'concurrent-slow': `100 concurrent duplicates, gateway slowed to 250 ms`,
}

/** Rows whose two runs differ by more than this are listed under the targets: read them as a range. */
const SPREAD_LISTED = 0.1
const SCENARIO_SHORT: Record<Scenario, string> = {
  unique: 'first requests',
  replay: 'replays',
  mixed: '50% duplicates',
  'concurrent-slow': 'concurrent duplicates',
}

/** The section saying how far each subject's runs agree, and which rows to read as a range. */
function agreementMarkdown(spreads: readonly RunSpread[]): string[] {
  const widest = spreads[0]
  if (widest === undefined) return []
  const wide = spreads.filter((s) => s.spread > SPREAD_LISTED)
  const lines = [
    '',
    '### How far the runs agree',
    '',
    `Each guarded row's throughput ratio in each run, each measured in turns with its baseline. The widest spread is ` +
      `${fmt(widest.spread)} (${widest.subject}, ${widest.store}, ${SCENARIO_SHORT[widest.scenario]}); ` +
      `${wide.length} of ${spreads.length} rows differ by more than ${SPREAD_LISTED}` +
      (wide.length === 0 ? '.' : ', and are best read as the range their runs give:'),
  ]
  if (wide.length === 0) return lines
  lines.push(
    '',
    '| subject | store | framework | scenario | × baseline, each run | spread |',
    '| --- | --- | --- | --- | --- | --- |',
  )
  for (const s of wide) {
    lines.push(
      `| ${s.subject} | ${s.store} | ${s.framework} | ${SCENARIO_SHORT[s.scenario]} | ` +
        `${s.ratios.map((r) => fmt(r)).join(', ')} | ${fmt(s.spread)} |`,
    )
  }
  return lines
}

/** The generated part of docs/BENCHMARKS.md: machine, targets, tables. */
export function resultsMarkdown(results: Results, chartPath: string): string {
  const m = results.machine
  const lines: string[] = []
  lines.push(
    `Run of ${results.timestamp}: ${m.cpus} × ${m.cpu_model}${m.cpu_mhz === undefined ? '' : ` at ${m.cpu_mhz} MHz`}, ${m.memory_gib} GiB, ${m.os}, Node ${results.node}, ` +
      `load average at start ${m.load_average_at_start.join(' / ')}.`,
    '',
  )
  const rev = results.revision
  if (rev !== undefined) {
    const dirty = rev.at_start.src_dirty || rev.at_end.src_dirty ? ' (with uncommitted changes under src/)' : ''
    lines.push(
      rev.at_start.commit === rev.at_end.commit
        ? `Measured commit: \`${rev.at_start.commit.slice(0, 7)}\`${dirty}.`
        : `The repository moved during the run: \`${rev.at_start.commit.slice(0, 7)}\` at its start, ` +
            `\`${rev.at_end.commit.slice(0, 7)}\` at its end${dirty}` +
            (rev.at_start.src_tree !== undefined && rev.at_start.src_tree === rev.at_end.src_tree
              ? ', with the same src/ tree: every server measured the same sources.'
              : '; each server measured the sources of its own start.'),
      '',
    )
  }
  if (!results.quiet) {
    lines.push(
      '> **These numbers were taken on a shared machine** whose speed drifts from minute to minute (other work may',
      '> have run on its cores). Ratios taken in turns within one run are comparable; absolute numbers are not.',
      '> Regenerate on your own machine with `npm run bench` before quoting them.',
      '',
    )
  }
  lines.push(
    `![requests per second](${chartPath})`,
    '',
    '### Targets',
    '',
    '| target | measured | met |',
    '| --- | --- | --- |',
  )
  for (const t of results.targets) {
    lines.push(`| ${t.target} | ${t.measured} | ${t.met === null ? 'not measured' : t.met ? 'met' : '**not met**'} |`)
  }
  lines.push(...agreementMarkdown(runSpreads(results.runs)))
  for (const scenario of ['unique', 'replay', 'mixed', 'concurrent-slow'] as const) {
    const rows = results.runs.filter((r) => r.scenario === scenario)
    if (rows.length === 0) continue
    lines.push('', `### ${SCENARIO_NAMES[scenario]}`, '')
    lines.push(
      '| subject | store | framework | run | req/s | baseline req/s, in turns | × baseline | server CPU µs/req | × baseline (CPU) | p50 ms | p99 ms | baseline p99 ms | round trips / req | executions | statuses |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    )
    for (const r of rows) {
      const statuses = Object.entries(r.status_codes)
        .map(([c, n]) => `${c}: ${n}`)
        .join(', ')
      lines.push(
        `| ${r.subject} | ${r.store} | ${r.framework} | ${r.run} | ${Math.round(r.rps)} | ` +
          `${r.paired_baseline === undefined ? '–' : Math.round(r.paired_baseline.rps)} | ${r.ratio_to_baseline ?? '–'} | ` +
          `${r.cpu_us_per_req} | ${r.cpu_ratio_to_baseline ?? '–'} | ` +
          `${r.p50_ms} | ${r.p99_ms} | ${r.paired_baseline?.p99_ms ?? '–'} | ` +
          `${r.round_trips} | ${r.executions} | ${statuses}${r.errors > 0 ? `, errors: ${r.errors}` : ''} |`,
      )
    }
  }
  if (results.engine.rows.length > 0) {
    lines.push('', '### In-process engine (no HTTP)', '')
    const pinned = results.options.engine_pinned_to_cpu
    if (typeof pinned === 'number') {
      lines.push(
        `Pinned to CPU ${pinned} with \`taskset\`: every thread of the process (the collector's helpers too) shares ` +
          'that one core, so decisions per CPU-second are decisions per second on one core.',
        '',
      )
    }
    lines.push(
      '| store | path | body | in flight | decisions/s (wall) | decisions per CPU-second |',
      '| --- | --- | --- | --- | --- | --- |',
    )
    for (const e of results.engine.rows) {
      lines.push(
        `| ${e.store} | ${e.path} | ${e.body} | ${e.concurrency} | ${e.decisions_per_s.toLocaleString('en-US')} | ` +
          `${e.decisions_per_cpu_s.toLocaleString('en-US')} |`,
      )
    }
    if (results.engine.redis_floor.length > 0) {
      lines.push('', 'Redis floor (bare `EVAL "return 1"` round trips/s on the same client):', '')
      for (const f of results.engine.redis_floor) {
        lines.push(`- ${f.concurrency} in flight: ${f.round_trips_per_s.toLocaleString('en-US')}/s`)
      }
    }
  }
  for (const [name, entries] of Object.entries(results.profile)) {
    lines.push(
      '',
      `### Profile: ${name} (top self time)`,
      '',
      '| function | where | self | inclusive |',
      '| --- | --- | --- | --- |',
    )
    for (const e of entries) lines.push(`| ${e.fn} | ${e.where || '(native)'} | ${e.self_pct}% | ${e.total_pct}% |`)
  }
  if (NOT_MEASURED.length > 0) {
    lines.push('', '### Not measured', '')
    for (const n of NOT_MEASURED) lines.push(`- ${n.subject} (${n.store}): ${n.why}`)
  }
  return `${lines.join('\n')}\n`
}
