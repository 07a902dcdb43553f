// The lease's one timer: heartbeats at their period, the local deadline and maxExecution abort, end() stops all.
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../stores/memory/memory-store.js'
import { HeldLease } from './lease.js'
import { resolveOptions } from './options.js'
import type { ExtendInput, Store } from './store.js'
import { webCrypto } from './web-crypto.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A memory store that counts extends and can be told to stop answering them. */
function countingStore() {
  const inner = new MemoryStore()
  const state = { extends: 0, hang: false }
  const store: Store = Object.assign(Object.create(inner) as Store, {
    extend: (input: ExtendInput) => {
      state.extends++
      return state.hang ? new Promise<boolean>(() => {}) : inner.extend(input)
    },
  })
  return { store, inner, state }
}

async function held(options: {
  leaseMs: number
  heartbeatMs: number
  extendTimeoutMs: number
  maxExecutionMs?: number
}) {
  const { store, inner, state } = countingStore()
  const o = resolveOptions({ store, ...options }, webCrypto)
  const key = 'a'.repeat(64)
  const token = 'b'.repeat(32)
  const sentAt = performance.now()
  await inner.begin({ key, scope: 's', fingerprint: 'v1:x', token, leaseMs: o.leaseMs, retentionMs: o.retentionMs })
  const aborts: string[] = []
  const lease = new HeldLease(o, key, token, { fence: 1, takeover: false, previousFence: 0 }, sentAt, sentAt, (_, r) =>
    aborts.push(r),
  )
  return { lease, state, aborts, inner, key }
}

describe('HeldLease', () => {
  it('beats every heartbeatMs and keeps the lease held well past leaseMs', async () => {
    const { lease, state, aborts, inner, key } = await held({ leaseMs: 300, heartbeatMs: 60, extendTimeoutMs: 60 })
    await sleep(700)
    expect(aborts).toEqual([])
    expect(state.extends).toBeGreaterThanOrEqual(6)
    expect(lease.remainingMs).toBeGreaterThan(0)
    expect((await inner.get(key))?.state).toBe('in_progress')
    lease.end()
    const after = state.extends
    await sleep(200)
    // Ended: no more heartbeats, and the signal says the lease is no longer to be trusted.
    expect(state.extends).toBe(after)
    expect(lease.signal.aborted).toBe(true)
    expect(aborts).toEqual([])
  })

  it('aborts at its local deadline when extends stop answering', async () => {
    const { lease, state, aborts } = await held({ leaseMs: 300, heartbeatMs: 60, extendTimeoutMs: 60 })
    state.hang = true
    const started = performance.now()
    const signal = lease.signal
    await new Promise((resolve) => signal.addEventListener('abort', resolve))
    const took = performance.now() - started
    expect(aborts).toEqual(['lease_expired'])
    // The deadline is the lease minus its margin (2% + 50 ms), counted from begin.
    expect(took).toBeGreaterThanOrEqual(200)
    expect(took).toBeLessThan(600)
    expect(() => lease.assertHeld()).toThrow()
  })

  it('aborts after maxExecutionMs even while the heartbeat holds the key', async () => {
    const { lease, aborts, state } = await held({
      leaseMs: 3000,
      heartbeatMs: 50,
      extendTimeoutMs: 50,
      maxExecutionMs: 180,
    })
    await sleep(300)
    expect(aborts).toEqual(['max_execution'])
    expect(lease.aborted).toBe(true)
    const after = state.extends
    expect(after).toBeGreaterThanOrEqual(2)
    await sleep(150)
    expect(state.extends).toBe(after)
  })
})
