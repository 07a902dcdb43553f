// What only the memory store does: bounds by records and bytes without evicting, and private buffer copies.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { IdempotencyConfigError, IdempotencyStoreError } from '../../core/errors.js'
import type { StoredResponse } from '../../core/store.js'
import { MemoryStore } from './memory-store.js'

const LEASE = 1_000
const RETENTION = 1_000
const FP = 'v1:fingerprint'
const SCOPE = 'scope'

function key(n: number): string {
  return n.toString(16).padStart(64, '0')
}

function token(n: number): string {
  return n.toString(16).padStart(32, '0')
}

function response(body: Uint8Array): StoredResponse {
  return { status: 200, headers: [['content-type', 'application/octet-stream']], body, replayable: true }
}

/** A store with a clock the test moves, and short helpers over it. */
function subject(options: { maxRecords?: number; maxBytes?: number } = {}) {
  let offset = 0
  const store = new MemoryStore({ ...options, clockOffset: () => offset })
  return {
    store,
    advance(ms: number) {
      offset += ms
    },
    begin: (k: string, t: string) =>
      store.begin({ key: k, scope: SCOPE, fingerprint: FP, token: t, leaseMs: LEASE, retentionMs: RETENTION }),
    complete: (k: string, t: string, body: Uint8Array) =>
      store.complete({ key: k, token: t, response: response(body), retentionMs: RETENTION }),
  }
}

async function rejectionOf(operation: Promise<unknown>): Promise<unknown> {
  return operation.then(
    () => undefined,
    (error: unknown) => error,
  )
}

function expectFull(error: unknown): void {
  expect(error).toBeInstanceOf(IdempotencyStoreError)
  expect((error as IdempotencyStoreError).reason).toBe('full')
}

describe('MemoryStore', () => {
  it('throws full at maxRecords and evicts no live record', async () => {
    const s = subject({ maxRecords: 3 })
    await s.begin(key(1), token(1))
    await s.begin(key(2), token(2))
    await s.complete(key(2), token(2), new Uint8Array([42]))
    await s.begin(key(3), token(3))
    await s.store.release({ key: key(3), token: token(3), retentionMs: RETENTION })

    expectFull(await rejectionOf(s.begin(key(4), token(4))))

    expect(await s.store.get(key(4))).toBeNull()
    expect((await s.store.get(key(1)))?.token).toBe(token(1))
    expect((await s.store.get(key(2)))?.state).toBe('completed')
    expect((await s.store.get(key(3)))?.state).toBe('released')
    // Keys already held still work: a full store refuses only new records.
    expect(await s.complete(key(1), token(1), new Uint8Array([1]))).toBe(true)
    expect((await s.begin(key(2), token(9))).kind).toBe('replay')
    expect(await s.begin(key(3), token(9))).toEqual({ kind: 'acquired', fence: 2, takeover: false, previousFence: 1 })
  })

  it('throws full at maxBytes, keeping the record in progress and the other response intact', async () => {
    const s = subject({ maxBytes: 8 * 1024 })
    const first = new Uint8Array(5 * 1024).fill(1)
    await s.begin(key(1), token(1))
    await s.complete(key(1), token(1), first)
    await s.begin(key(2), token(2))

    expectFull(await rejectionOf(s.complete(key(2), token(2), new Uint8Array(5 * 1024))))

    const second = await s.store.get(key(2))
    expect(second).toMatchObject({ state: 'in_progress', token: token(2), response: null })
    const replay = await s.begin(key(1), token(9))
    expect(replay.kind === 'replay' && replay.response.body).toEqual(first)
    // A smaller response still fits.
    expect(await s.complete(key(2), token(2), new Uint8Array(16))).toBe(true)
  })

  it('throws full for a single response larger than maxBytes', async () => {
    const s = subject({ maxBytes: 4 * 1024 })
    await s.begin(key(1), token(1))
    expectFull(await rejectionOf(s.complete(key(1), token(1), new Uint8Array(8 * 1024))))
    expect((await s.store.get(key(1)))?.state).toBe('in_progress')
  })

  it('makes room by dropping expired records, and only those', async () => {
    const s = subject({ maxRecords: 3 })
    await s.begin(key(1), token(1)) // expires at lease + retention: 2000
    await s.begin(key(2), token(2))
    await s.complete(key(2), token(2), new Uint8Array([2])) // expires at 1000
    s.advance(1_500)
    await s.begin(key(3), token(3)) // expires at 3500
    s.advance(1_000)

    expect(await s.begin(key(4), token(4))).toEqual({ kind: 'acquired', fence: 1, takeover: false, previousFence: 0 })
    expect(await s.begin(key(5), token(5))).toEqual({ kind: 'acquired', fence: 1, takeover: false, previousFence: 0 })
    expect((await s.store.get(key(3)))?.token).toBe(token(3))
    expectFull(await rejectionOf(s.begin(key(6), token(6))))
  })

  it('frees exactly the expired records when full, in any order of expiry', async () => {
    const s = subject({ maxRecords: 60 })
    // Expiries 100 ms apart in a scrambled order (37 is coprime with 60), several extended twice.
    const expiries = Array.from({ length: 60 }, (_, i) => ((i * 37) % 60) * 100)
    for (const [i, retentionMs] of expiries.entries()) {
      await s.store.begin({ key: key(i), scope: SCOPE, fingerprint: FP, token: token(i), leaseMs: 0, retentionMs })
      if (i % 3 === 0) {
        await s.store.extend({ key: key(i), token: token(i), leaseMs: 0, retentionMs: retentionMs + 50 })
        await s.store.extend({ key: key(i), token: token(i), leaseMs: 0, retentionMs })
      }
    }
    s.advance(2_950)
    const expired = expiries.filter((at) => at <= 2_950).length

    let acquired = 0
    for (let i = 100; i < 200; i++) {
      const error = await rejectionOf(s.begin(key(i), token(i)))
      if (error !== undefined) {
        expectFull(error)
        break
      }
      acquired += 1
    }
    expect(acquired).toBe(expired)
    for (const [i, at] of expiries.entries()) {
      if (at > 2_950) expect((await s.store.get(key(i)))?.token).toBe(token(i))
    }
  })

  it('makes room by bytes from an expired response', async () => {
    const s = subject({ maxBytes: 8 * 1024 })
    await s.begin(key(1), token(1))
    await s.complete(key(1), token(1), new Uint8Array(6 * 1024))
    s.advance(RETENTION + 1)
    await s.begin(key(2), token(2))
    expect(await s.complete(key(2), token(2), new Uint8Array(6 * 1024))).toBe(true)
    expect(await s.store.get(key(1))).toBeNull()
  })

  it('keeps its own copy of a response: mutating the caller buffer or a replay changes nothing', async () => {
    const s = subject()
    const body = Buffer.from('original body')
    const headers: [string, string][] = [['x-a', '1']]
    await s.begin(key(1), token(1))
    await s.store.complete({
      key: key(1),
      token: token(1),
      response: { status: 201, headers, body, replayable: true },
      retentionMs: RETENTION,
    })
    body.fill(0)
    headers.push(['x-b', '2'])
    const first = headers[0]
    if (first !== undefined) first[1] = 'changed'

    const replay = await s.begin(key(1), token(9))
    if (replay.kind !== 'replay') throw new Error(`expected a replay, got ${replay.kind}`)
    expect(new TextDecoder().decode(replay.response.body)).toBe('original body')
    expect(replay.response.headers).toEqual([['x-a', '1']])

    replay.response.body.fill(0)
    const shown = await s.store.get(key(1))
    shown?.response?.body.fill(0)
    const again = await s.begin(key(1), token(9))
    expect(again.kind === 'replay' && new TextDecoder().decode(again.response.body)).toBe('original body')
  })

  it('keeps small bodies apart though they share storage: a replay of one is never another', async () => {
    const s = subject()
    const bodies = Array.from({ length: 200 }, (_, i) => new TextEncoder().encode(`body ${i} `.repeat((i % 13) + 1)))
    for (const [i, body] of bodies.entries()) {
      await s.begin(key(i), token(i))
      await s.complete(key(i), token(i), body)
    }
    for (const body of bodies) body.fill(0)
    for (const [i] of bodies.entries()) {
      const replay = await s.begin(key(i), token(999))
      if (replay.kind !== 'replay') throw new Error(`expected a replay, got ${replay.kind}`)
      const text = new TextDecoder().decode(replay.response.body)
      expect(text).toBe(`body ${i} `.repeat((i % 13) + 1))
      // The replay is a buffer of its own: nothing else of the store can be reached through it.
      expect(replay.response.body.byteOffset).toBe(0)
      expect(replay.response.body.buffer.byteLength).toBe(replay.response.body.byteLength)
      replay.response.body.fill(0)
    }
    const again = await s.begin(key(7), token(999))
    expect(again.kind === 'replay' && new TextDecoder().decode(again.response.body)).toBe('body 7 '.repeat(8))
  })

  it('counts slabs that long-lived bodies pin toward maxBytes, and frees them as those expire', async () => {
    // Each round: one body kept for a long time, then short-lived ones that fill the rest of its slab and expire.
    // Without counting the slab, live records stay tiny while every round pins another 32 KiB of memory.
    let offset = 0
    const store = new MemoryStore({ maxBytes: 1024 * 1024, clockOffset: () => offset })
    const body = new Uint8Array(100).fill(7)
    let n = 0
    const keep = async (retentionMs: number) => {
      n += 1
      const input = { key: key(n), scope: SCOPE, fingerprint: FP, token: token(n), leaseMs: LEASE, retentionMs }
      expect((await store.begin(input)).kind).toBe('acquired')
      await store.complete({ key: key(n), token: token(n), response: response(body), retentionMs })
    }
    let fullAt: number | undefined
    for (let round = 0; round < 100 && fullAt === undefined; round++) {
      try {
        await keep(3_600_000)
        for (let i = 0; i < 400; i++) await keep(RETENTION)
      } catch (error) {
        expectFull(error)
        fullAt = round
      }
      offset += 2 * LEASE + RETENTION
    }
    // 1 MiB holds about 32 pinned slabs; live records alone (one small one per round) would never fill it.
    expect(fullAt).toBeGreaterThan(10)
    expect(fullAt).toBeLessThan(40)
    offset += 3_600_000
    await keep(RETENTION)
  })

  it('hands out headers nobody can change', async () => {
    const s = subject()
    await s.begin(key(1), token(1))
    await s.complete(key(1), token(1), new Uint8Array([1]))
    const replay = await s.begin(key(1), token(9))
    if (replay.kind !== 'replay') throw new Error(`expected a replay, got ${replay.kind}`)
    const headers = replay.response.headers as Array<[string, string]>
    expect(() => headers.push(['x-b', '2'])).toThrow(TypeError)
    expect(() => {
      ;(headers[0] as [string, string])[1] = 'changed'
    }).toThrow(TypeError)
    const again = await s.begin(key(1), token(9))
    expect(again.kind === 'replay' && again.response.headers).toEqual([['content-type', 'application/octet-stream']])
  })

  it('sweeps a record whose write brought its expiry forward', async () => {
    const s = subject({ maxRecords: 2 })
    const begin = (n: number, leaseMs: number, retentionMs: number) =>
      s.store.begin({ key: key(n), scope: SCOPE, fingerprint: FP, token: token(n), leaseMs, retentionMs })
    await begin(1, 0, 5_000) // expires at 5000
    await begin(2, 3_000, 3_000) // expires at 6000
    await s.store.complete({ key: key(2), token: token(2), response: response(new Uint8Array([2])), retentionMs: 100 })
    s.advance(200)
    // Key 2 expired at 100, before key 1: the sweep must find it to make room.
    expect((await begin(3, 0, 1_000)).kind).toBe('acquired')
    expect((await s.store.get(key(1)))?.state).toBe('in_progress')
  })

  it('sweeps exactly the expired records, whatever the writes moved their expiry to (random operations)', async () => {
    type Op =
      | { readonly op: 'begin'; readonly k: number; readonly lease: number; readonly retention: number }
      | { readonly op: 'complete' | 'release' | 'extend'; readonly k: number; readonly retention: number }
      | { readonly op: 'delete'; readonly k: number }
      | { readonly op: 'advance'; readonly ms: number }
    const k = fc.integer({ min: 0, max: 5 })
    const ms = fc.integer({ min: 0, max: 3_000 })
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('begin' as const), k, lease: ms, retention: ms }),
      fc.record({ op: fc.constantFrom('complete' as const, 'release' as const, 'extend' as const), k, retention: ms }),
      fc.record({ op: fc.constant('delete' as const), k }),
      fc.record({ op: fc.constant('advance' as const), ms }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), fc.integer({ min: 1, max: 4 }), async (ops, maxRecords) => {
        let offset = 0
        const store = new MemoryStore({ maxRecords, clockOffset: () => offset })
        // The model: each key's expiry and owner; a record is live while the clock is before its expiry.
        const model = new Map<number, { expiresAt: number; token: string; state: string; leaseDeadline: number }>()
        const clock = () => offset
        const live = () => [...model.entries()].filter(([, r]) => clock() < r.expiresAt)
        for (const [n, step] of ops.entries()) {
          if (step.op === 'advance') {
            offset += step.ms
            continue
          }
          for (const [i, r] of model) if (clock() >= r.expiresAt) model.delete(i)
          const r = model.get(step.k)
          const t = token(n)
          switch (step.op) {
            case 'begin': {
              const input = { key: key(step.k), scope: SCOPE, fingerprint: FP, token: t }
              const result = await rejectionOf(
                store.begin({ ...input, leaseMs: step.lease, retentionMs: step.retention }).then((x) => {
                  throw x
                }),
              )
              const acquires = r === undefined || r.state === 'released' || clock() >= r.leaseDeadline
              if (r === undefined && live().length >= maxRecords) {
                expectFull(result)
              } else if (r !== undefined && r.state === 'completed') {
                expect((result as { kind: string }).kind).toBe('replay')
              } else if (acquires) {
                expect((result as { kind: string }).kind).toBe('acquired')
                const leaseDeadline = clock() + step.lease
                model.set(step.k, {
                  token: t,
                  state: 'in_progress',
                  leaseDeadline,
                  expiresAt: leaseDeadline + step.retention,
                })
              }
              break
            }
            case 'complete':
            case 'release':
            case 'extend': {
              // Written by the current owner, if any.
              const owner = r?.state === 'in_progress' ? r.token : t
              const write = { key: key(step.k), token: owner, retentionMs: step.retention }
              const done =
                step.op === 'complete'
                  ? await store.complete({ ...write, response: response(new Uint8Array([step.k])) })
                  : step.op === 'release'
                    ? await store.release(write)
                    : await store.extend({ ...write, leaseMs: 10 })
              if (r?.state === 'in_progress') {
                expect(done).toBe(true)
                const leaseDeadline = step.op === 'extend' ? clock() + 10 : r.leaseDeadline
                const expiresAt = step.op === 'extend' ? leaseDeadline + step.retention : clock() + step.retention
                const state = step.op === 'complete' ? 'completed' : step.op === 'release' ? 'released' : r.state
                model.set(step.k, { token: r.token, state, leaseDeadline, expiresAt })
              }
              break
            }
            case 'delete':
              await store.delete(key(step.k), { force: true })
              model.delete(step.k)
              break
          }
        }
        // Only now: reading a key drops it when expired, which would spare the sweep its work.
        for (let i = 0; i <= 5; i++) {
          const expected = model.get(i)
          const actual = await store.get(key(i))
          if (expected === undefined || clock() >= expected.expiresAt) expect(actual, `key ${i}`).toBeNull()
          else expect(actual?.state, `key ${i}`).toBe(expected.state)
        }
      }),
      { numRuns: 500 },
    )
  })

  it('rejects limits that are not positive integers', () => {
    expect(() => new MemoryStore({ maxRecords: 0 })).toThrow(IdempotencyConfigError)
    expect(() => new MemoryStore({ maxBytes: 1.5 })).toThrow(IdempotencyConfigError)
  })
})
