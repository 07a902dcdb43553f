// Summarises a V8 .cpuprofile: self and inclusive time per function, so the report can say what dominated.
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples?: number[]
  timeDeltas?: number[]
}

/** One function's share of the sampled time. */
export interface ProfileEntry {
  readonly fn: string
  readonly where: string
  readonly self_pct: number
  readonly total_pct: number
}

function label(node: ProfileNode, root: string): { fn: string; where: string } {
  const { functionName, url, lineNumber } = node.callFrame
  const file = url.replace(/^file:\/\//, '').replace(root, '')
  return { fn: functionName || '(anonymous)', where: file === '' ? '' : `${file}:${lineNumber + 1}` }
}

/** Top functions by self time (idle and GC kept as they are), with inclusive time alongside. */
export function summariseProfile(path: string, root: string, top = 15): ProfileEntry[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const selfByNode = new Map<number, number>()
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  let total = 0
  samples.forEach((id, i) => {
    const dt = Math.max(deltas[i + 1] ?? deltas[i] ?? 0, 0)
    selfByNode.set(id, (selfByNode.get(id) ?? 0) + dt)
    total += dt
  })
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const labels = new Map<string, { fn: string; where: string }>()
  for (const [id, t] of selfByNode) {
    const node = byId.get(id)
    if (node === undefined) continue
    const l = label(node, root)
    const key = `${l.fn}@${l.where}`
    labels.set(key, l)
    self.set(key, (self.get(key) ?? 0) + t)
    // Inclusive: charge each distinct function on the stack once.
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)
      if (n === undefined) break
      const ln = label(n, root)
      const k = `${ln.fn}@${ln.where}`
      if (seen.has(k)) continue
      seen.add(k)
      labels.set(k, ln)
      inclusive.set(k, (inclusive.get(k) ?? 0) + t)
    }
  }
  const pct = (t: number) => Math.round((1000 * t) / Math.max(total, 1)) / 10
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, t]) => {
      const l = labels.get(key) as { fn: string; where: string }
      return { ...l, self_pct: pct(t), total_pct: pct(inclusive.get(key) ?? 0) }
    })
}

/** Top functions by inclusive time among the project's own code (src/), to see which step costs most. */
export function summariseOwnCode(path: string, root: string, top = 15): ProfileEntry[] {
  const all = summariseProfile(path, root, 100_000)
  return all
    .filter((e) => e.where.startsWith('src/'))
    .sort((a, b) => b.total_pct - a.total_pct)
    .slice(0, top)
}

if (process.argv[1]?.endsWith('profile-summary.ts')) {
  const [file, mode] = process.argv.slice(2)
  if (file === undefined) throw new Error('usage: profile-summary.ts FILE.cpuprofile [own]')
  const root = `${process.cwd()}/`
  const rows = mode === 'own' ? summariseOwnCode(file, root) : summariseProfile(file, root)
  for (const r of rows)
    process.stdout.write(
      `${String(r.self_pct).padStart(5)}% self ${String(r.total_pct).padStart(5)}% total  ${r.fn}  ${r.where}\n`,
    )
}
