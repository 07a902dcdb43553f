// The harness's arithmetic on made-up rows: which baseline a ratio divides by, and how two subjects compare.
import { describe, expect, it } from 'vitest'
import type { HttpRow, PairedBaseline, Scenario } from '../../bench/http-bench.js'
import { judgeTargets, ratioToBaseline, runSpreads, withRatios } from '../../bench/report.js'

function row(id: string, scenario: Scenario, run: number, rps: number, cpu: number, paired?: PairedBaseline): HttpRow {
  return {
    run,
    scenario,
    subject: id,
    store: 'memory',
    framework: 'express',
    id,
    connections: 32,
    duration_s: 10,
    requests: rps * 10,
    rps,
    p50_ms: 10,
    p99_ms: 20,
    round_trips: 2,
    cpu_us_per_req: cpu,
    executions: rps * 10,
    non_2xx: 0,
    errors: 0,
    status_codes: { 200: rps * 10 },
    ...(paired === undefined ? {} : { paired_baseline: paired }),
  }
}

const base = (rps: number, cpu: number, p99 = 20): PairedBaseline => ({
  id: 'baseline-kit-json',
  requests: rps * 10,
  rps,
  p50_ms: 10,
  p99_ms: p99,
  cpu_us_per_req: cpu,
})

describe('bench ratios', () => {
  it('divide a row by the baseline measured in turns with it, not by the baseline row measured alone', () => {
    // The machine was twice as fast while the baseline's own row ran: that row must not count.
    const rows = withRatios([
      row('baseline-kit-json', 'unique', 1, 8000, 100),
      row('kit-memory', 'unique', 1, 3600, 250, base(4000, 225)),
    ])
    const kit = rows.find((r) => r.id === 'kit-memory')
    expect(kit?.ratio_to_baseline).toBe(0.9)
    expect(kit?.cpu_ratio_to_baseline).toBe(0.9)
    expect(rows.find((r) => r.id === 'baseline-kit-json')?.ratio_to_baseline).toBe(1)
  })

  it('fall back to the baseline row of the same run for a row measured alone', () => {
    const rows = withRatios([
      row('baseline-kit-json', 'unique', 1, 4000, 100),
      row('kit-memory', 'unique', 1, 2000, 200),
      row('baseline-kit-json', 'unique', 2, 8000, 100),
    ])
    expect(rows.find((r) => r.id === 'kit-memory')?.ratio_to_baseline).toBe(0.5)
  })

  it('average the per-run ratios, and compare two subjects through their ratios to their own baselines', () => {
    // Run 1 on a slow machine, run 2 on a fast one; the peer ran while the machine was faster still.
    const rows = withRatios([
      row('kit-redis', 'unique', 1, 1800, 500, base(2000, 450)),
      row('kit-redis', 'unique', 2, 3600, 250, base(4000, 225)),
      row('powertools-redis', 'unique', 1, 3750, 250, base(5000, 200)),
      row('powertools-redis', 'unique', 2, 3750, 250, base(5000, 200)),
      row('node-idempotency-redis', 'unique', 1, 3000, 250, base(5000, 200)),
      row('node-idempotency-redis', 'unique', 2, 3000, 250, base(5000, 200)),
      row('express-idempotency-redis', 'unique', 1, 2500, 300, base(5000, 200)),
      row('express-idempotency-redis', 'unique', 2, 2500, 300, base(5000, 200)),
      row('seed-redis', 'unique', 1, 900, 1000, base(2000, 450)),
      row('seed-redis', 'unique', 2, 1800, 500, base(4000, 225)),
    ])
    expect(ratioToBaseline(rows, 'kit-redis', 'unique', 'rps')).toBeCloseTo(0.9, 6)
    expect(ratioToBaseline(rows, 'kit-redis', 'unique', 'cpu_us_per_req')).toBeCloseTo(0.9, 6)
    const targets = judgeTargets(rows, [])
    // Measured raw, Powertools looks 1.4× faster than the kit; against their baselines the kit is ahead, 0.9 / 0.75.
    const peers = targets.find((t) => t.target.startsWith('Redis first-request throughput ahead'))
    expect(peers?.measured).toBe('1.20× the closest (runs: 1.20×, 1.20×)')
    expect(peers?.met).toBe(true)
    // A peer with no rows (a partial run) leaves the target unjudged rather than judged on the others alone.
    const partial = judgeTargets(
      rows.filter((r) => r.id !== 'express-idempotency-redis'),
      [],
    ).find((t) => t.target.startsWith('Redis first-request throughput ahead'))
    expect(partial?.met).toBeNull()
    const seed = targets.find((t) => t.target.startsWith('Redis first-request throughput ≥ 1.3×'))
    expect(seed?.measured).toBe('2.00× (runs: 2.00×, 2.00×); server CPU: 2.00×')
  })

  it('show each run beside the mean a target is judged on, and list the rows whose runs disagree', () => {
    const rows = withRatios([
      row('baseline-kit-json', 'unique', 1, 4000, 100),
      row('baseline-kit-json', 'unique', 2, 4000, 100),
      row('kit-memory', 'unique', 2, 3800, 105, base(4000, 100)),
      row('kit-memory', 'unique', 1, 2200, 182, base(4000, 100)),
      row('kit-redis', 'unique', 1, 2000, 200, base(4000, 100)),
      row('kit-redis', 'unique', 2, 2200, 180, base(4000, 100)),
    ])
    const memory = judgeTargets(rows, []).find((t) => t.target === 'memory store ≥ 0.90× baseline throughput (unique)')
    // Judged on the mean (0.75): run 2 alone would have met it.
    expect(memory?.measured).toMatch(/^0\.75× \(runs: 0\.55×, 0\.95×\); server CPU/)
    expect(memory?.met).toBe(false)
    const spreads = runSpreads(rows)
    expect(spreads.map((s) => [s.id, s.ratios, Number(s.spread.toFixed(2))])).toEqual([
      ['kit-memory', [0.55, 0.95], 0.4],
      ['kit-redis', [0.5, 0.55], 0.05],
    ])
  })
})
