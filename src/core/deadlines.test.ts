// Shared-timer deadlines: each fires once, not before its time, never after cancel, and holds the process only
// while pending.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { setDeadline } from './deadlines.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('setDeadline', () => {
  it('fires each deadline once, in order, no earlier than its duration', async () => {
    const fired: Array<{ i: number; late: number }> = []
    const started = performance.now()
    for (let i = 0; i < 5; i++)
      setDeadline(30, (n: number) => fired.push({ i: n, late: performance.now() - started }), i)
    await sleep(10)
    expect(fired).toEqual([])
    await sleep(80)
    expect(fired.map((f) => f.i)).toEqual([0, 1, 2, 3, 4])
    for (const f of fired) expect(f.late).toBeGreaterThanOrEqual(29)
  })

  it('never fires a cancelled deadline, and fires those behind it on time', async () => {
    const fired: number[] = []
    const deadlines = Array.from({ length: 6 }, (_, i) => setDeadline(25, (n: number) => fired.push(n), i))
    for (const i of [0, 2, 3, 5]) deadlines[i]?.cancel()
    expect(deadlines.map((d) => d.pending)).toEqual([false, true, false, false, true, false])
    await sleep(70)
    expect(fired).toEqual([1, 4])
    // Cancelling after it fired changes nothing.
    deadlines[1]?.cancel()
    expect(deadlines[1]?.pending).toBe(false)
  })

  it('keeps deadlines of other durations apart', async () => {
    const fired: string[] = []
    setDeadline(60, (s: string) => fired.push(s), 'long')
    setDeadline(20, (s: string) => fired.push(s), 'short')
    await sleep(45)
    expect(fired).toEqual(['short'])
    await sleep(50)
    expect(fired).toEqual(['short', 'long'])
  })

  it('lets a firing call set and cancel deadlines of the same duration', async () => {
    const fired: string[] = []
    const later = setDeadline(20, (s: string) => fired.push(s), 'cancelled by the first')
    setDeadline(
      20,
      () => {
        fired.push('first')
        later.cancel()
        setDeadline(20, (s: string) => fired.push(s), 'set by the first')
      },
      undefined,
    )
    // Order: `later` was set before the one that cancels it, so it fires first.
    await sleep(50)
    expect(fired.slice(0, 2)).toEqual(['cancelled by the first', 'first'])
    await sleep(40)
    expect(fired).toEqual(['cancelled by the first', 'first', 'set by the first'])
  })

  it('runs the other due calls when one throws, and reports the throw as uncaught', async () => {
    const fired: number[] = []
    const uncaught: unknown[] = []
    const listener = (error: unknown) => uncaught.push(error)
    const listeners = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    process.on('uncaughtException', listener)
    try {
      setDeadline(
        15,
        () => {
          throw new Error('boom')
        },
        undefined,
      )
      setDeadline(15, (n: number) => fired.push(n), 2)
      await sleep(50)
    } finally {
      process.off('uncaughtException', listener)
      for (const l of listeners) process.on('uncaughtException', l)
    }
    expect(fired).toEqual([2])
    expect(uncaught).toHaveLength(1)
    expect((uncaught[0] as Error).message).toBe('boom')
  })

  it('holds the process open while a deadline is pending, and not once all are cancelled', async () => {
    const run = promisify(execFile)
    const module = fileURLToPath(new URL('./deadlines.ts', import.meta.url))
    const script = (body: string) =>
      `import { setDeadline } from ${JSON.stringify(module)}; const t0 = performance.now(); ${body}; ` +
      `process.on('exit', () => console.log(Math.round(performance.now() - t0)))`
    const elapsed = async (body: string) => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(body)])
      return Number(stdout.trim().split('\n').at(-1))
    }
    // Pending: the process waits for it (and it runs).
    expect(await elapsed(`setDeadline(300, () => console.log('fired'), 0)`)).toBeGreaterThanOrEqual(290)
    // Cancelled: the process exits at once, though the queue's timer is still set for 10 s.
    expect(await elapsed('setDeadline(10_000, () => {}, 0).cancel()')).toBeLessThan(2_000)
    // Cancelled after a while, with another long one pending elsewhere cancelled too.
    expect(
      await elapsed(`const a = setDeadline(10_000, () => {}, 0); const b = setDeadline(20_000, () => {}, 0);
        setTimeout(() => { a.cancel(); b.cancel() }, 100)`),
    ).toBeLessThan(2_000)
  }, 30_000)
})
