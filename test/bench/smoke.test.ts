// A short run of the benchmark harness (memory and Redis, under a second per scenario), so it cannot rot.
// It checks the results are well formed and count the right things; it never asserts a speed.
import { describe, expect, it } from 'vitest'
import { runEngineBench } from '../../bench/engine-bench.js'
import { runHttpBench } from '../../bench/http-bench.js'
import { chartSvg, judgeTargets, machineFacts, type Results, resultsMarkdown, withRatios } from '../../bench/report.js'
import { PROBES, SUBJECTS } from '../../bench/subjects.js'

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A run short enough for `npm test`: a fraction of a second per scenario, 2 slices in turns, 20 duplicates. */
const SHORT = {
  durationS: 0.3,
  warmupS: 0,
  connections: 8,
  slices: 2,
  duplicates: 20,
  runs: 1,
  redisUrl: REDIS_URL,
  postgresUrl: 'postgres://postgres@127.0.0.1:5432/test',
} as const

describe('bench harness smoke run', () => {
  it('measures every scenario on the memory and Redis subjects and writes well-formed results', async () => {
    const subjects = SUBJECTS.filter((s) => s.id === 'kit-memory' || s.id === 'kit-redis')
    const rows = await runHttpBench({
      ...SHORT,
      subjects,
      scenarios: ['unique', 'replay', 'mixed', 'concurrent-slow'],
      mixedPool: 32,
    })
    expect(rows.map((r) => `${r.id}/${r.scenario}`)).toEqual([
      'kit-memory/unique',
      'kit-memory/replay',
      'kit-memory/mixed',
      'kit-memory/concurrent-slow',
      'kit-redis/unique',
      'kit-redis/replay',
      'kit-redis/mixed',
      'kit-redis/concurrent-slow',
    ])
    for (const row of rows) {
      expect(row.errors, `${row.id}/${row.scenario}`).toBe(0)
      expect(row.requests).toBeGreaterThan(0)
      expect(Number.isFinite(row.rps) && row.rps > 0).toBe(true)
      expect(row.p99_ms).toBeGreaterThanOrEqual(row.p50_ms)
      // Every throughput row was measured in turns with its baseline, which answered too; the slow one alone.
      if (row.scenario === 'concurrent-slow') expect(row.paired_baseline).toBeUndefined()
      else {
        expect(row.paired_baseline?.id).toBe('baseline-kit-json')
        expect(row.paired_baseline?.requests).toBeGreaterThan(0)
        expect(row.paired_baseline?.cpu_us_per_req).toBeGreaterThan(0)
      }
    }
    const by = (id: string, scenario: string) => rows.find((r) => r.id === id && r.scenario === scenario)!
    for (const id of ['kit-memory', 'kit-redis']) {
      // What the counters count: every unique request charged once at 2 round trips, every replay 1 and none.
      const unique = by(id, 'unique')
      expect(unique.status_codes).toEqual({ 200: unique.requests })
      expect(unique.executions).toBeGreaterThanOrEqual(unique.requests)
      expect(unique.round_trips).toBeCloseTo(2, 1)
      const replay = by(id, 'replay')
      expect(replay.executions).toBe(0)
      expect(replay.round_trips).toBeCloseTo(1, 1)
      expect(by(id, 'mixed').round_trips).toBeGreaterThan(1.2)
      expect(by(id, 'mixed').round_trips).toBeLessThan(1.8)
      // 20 concurrent duplicates on a slow gateway: one charge, the others 409.
      const slow = by(id, 'concurrent-slow')
      expect(slow.executions).toBe(1)
      expect(slow.status_codes).toEqual({ 200: 1, 409: 19 })
    }

    const engine = await runEngineBench({ seconds: 0.2, only: { store: 'memory', body: 'small' } })
    expect(engine.rows.map((r) => `${r.path}/${r.body}`)).toEqual(['first/small', 'replay/small'])
    for (const r of engine.rows) expect(r.decisions_per_s).toBeGreaterThan(0)

    const runs = withRatios(rows)
    // A ratio divides by the baseline measured in turns with the row.
    const paired = runs.find((r) => r.id === 'kit-memory' && r.scenario === 'unique')!
    expect(paired.ratio_to_baseline).toBeCloseTo(paired.rps / paired.paired_baseline!.rps, 2)
    const results: Results = {
      timestamp: new Date().toISOString(),
      machine: machineFacts(),
      node: process.version,
      quiet: false,
      options: {},
      runs,
      engine: { rows: engine.rows, redis_floor: engine.floor },
      profile: {},
      targets: judgeTargets(runs, engine.rows),
      not_measured: [],
    }
    expect(JSON.parse(JSON.stringify(results))).toEqual(results)
    expect(results.targets.length).toBeGreaterThan(5)
    expect(resultsMarkdown(results, 'chart.svg')).toContain('| idempotency-kit | redis | express | 1 |')
    const svg = chartSvg(results)
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg).toContain('idempotency-kit (redis)')
  }, 120_000)

  it("runs bench/ab.ts's probes: the capture alone, and the kit on a store that keeps nothing", async () => {
    const rows = await runHttpBench({ ...SHORT, subjects: PROBES, scenarios: ['unique'] })
    expect(rows.map((r) => r.id)).toEqual(['probe-capture', 'probe-null-store'])
    for (const row of rows) {
      expect(row.errors, row.id).toBe(0)
      expect(row.status_codes, row.id).toEqual({ 200: row.requests })
      expect(row.executions, row.id).toBeGreaterThanOrEqual(row.requests)
    }
    // The capture probe calls no store; the null store is called as any store is, begin and complete.
    expect(rows[0]?.round_trips).toBe(0)
    expect(rows[1]?.round_trips).toBeCloseTo(2, 1)
  }, 60_000)

  it('runs the Redis peers as wired, each counting the commands its design sends', async () => {
    // First request and replay: the seed's design GET, SET NX, SET, DEL then GET; @node-idempotency and Powertools
    // a conditional write and an update, then a read and (for both) a second command; express-idempotency GET,
    // SET, SET then GET. A client left uncounted, or a guard that fell back to another adapter, moves these.
    const expected: Record<string, readonly [number, number]> = {
      'seed-redis': [4, 1],
      'node-idempotency-redis': [2, 2],
      'powertools-redis': [2, 2],
      'express-idempotency-redis': [3, 1],
    }
    const subjects = SUBJECTS.filter((s) => s.id in expected)
    expect(subjects.map((s) => s.id).sort()).toEqual(Object.keys(expected).sort())
    // One slice each in turns (a slice took about a second here, whatever the duration asked): only counts are read.
    const rows = await runHttpBench({ ...SHORT, slices: 1, subjects, scenarios: ['unique', 'replay'] })
    for (const row of rows) {
      const name = `${row.id}/${row.scenario}`
      expect(row.errors, name).toBe(0)
      expect(row.status_codes, name).toEqual({ 200: row.requests })
      const [first, replay] = expected[row.id] as readonly [number, number]
      if (row.scenario === 'unique') {
        expect(row.round_trips, name).toBeCloseTo(first, 1)
        expect(row.executions, name).toBeGreaterThanOrEqual(row.requests)
      } else {
        expect(row.round_trips, name).toBeCloseTo(replay, 1)
        expect(row.executions, name).toBe(0)
      }
    }
    expect(rows).toHaveLength(8)
  }, 120_000)
})
