// Demo processes sharing one store (SQLite file, Redis, PostgreSQL): one charge per key, and a SIGKILLed holder's key taken over.
import { randomUUID } from 'node:crypto'
import type { StoredRecord } from 'idempotency-kit'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import { type DemoProcess, startDemoProcess, stopAllDemoProcesses } from '../support/demo-process.js'
import { type Durable, durableStores } from '../support/durable-stores.js'
import { charge, charges, problemOf, type RawResponse } from '../support/http.js'
import { storageKey, until } from '../support/records.js'

const LEASE_MS = 1000

function chargeOf(res: RawResponse): Charge {
  return res.json() as Charge
}

afterAll(() => stopAllDemoProcesses())

describe.each(durableStores)('two demo processes on $name', (backend) => {
  let shared: Durable | undefined
  let peers: DemoProcess[] = []
  const env = () => ({
    STORE_URL: shared?.storeUrl ?? '',
    IDEMPOTENCY_LEASE_MS: String(LEASE_MS),
    GATEWAY_LATENCY_MS: '300',
  })

  beforeAll(async () => {
    shared = await backend.open()
    // Two at once: on a fresh store both migrate concurrently, as two instances of an app would.
    peers = await Promise.all([startDemoProcess(env()), startDemoProcess(env())])
  })
  afterAll(async () => {
    await Promise.all(peers.map((peer) => peer.stop()))
    await stopAllDemoProcesses()
    await shared?.close()
  })

  async function totals() {
    const seen = await Promise.all(peers.map((peer) => charges(peer.url)))
    return {
      attempts: seen.reduce((sum, s) => sum + s.attempts, 0),
      charges: seen.flatMap((s) => s.charges),
      perProcess: seen.map((s) => s.attempts),
    }
  }

  it('50 concurrent same-key requests split over both: one charge, one charge id in every 2xx, the rest 409', async () => {
    const [a, b] = peers as [DemoProcess, DemoProcess]
    const key = randomUUID()
    const before = await totals()
    const targets = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b))
    const responses = await Promise.all(targets.map((peer) => charge(peer.url, key)))

    const ok = responses.filter((res) => res.status >= 200 && res.status < 300)
    const conflicts = responses.filter((res) => res.status === 409)
    expect(responses.map((res) => res.status).filter((s) => s !== 409 && !(s >= 200 && s < 300))).toEqual([])
    expect(ok.length + conflicts.length).toBe(50)
    for (const res of conflicts) {
      expect(problemOf(res).error).toBe('REQUEST_IN_PROGRESS')
      expect(Number(res.header('retry-after'))).toBeGreaterThanOrEqual(1)
    }
    const fresh = ok.filter((res) => res.header('idempotent-replayed') === undefined)
    expect(fresh).toHaveLength(1)
    const id = chargeOf(fresh[0] as RawResponse).id
    expect(new Set(ok.map((res) => chargeOf(res).id))).toEqual(new Set([id]))

    const after = await totals()
    expect(after.attempts - before.attempts).toBe(1)
    const made = after.charges.filter((c) => !before.charges.some((old) => old.id === c.id))
    expect(made.map((c) => c.id)).toEqual([id])
    // The process that did not charge turned its own share away: exclusion across processes, not within one.
    const idle = peers.find((_, i) => after.perProcess[i] === before.perProcess[i])
    expect(responses.some((res, i) => res.status === 409 && targets[i] === idle)).toBe(true)

    // And both replay the stored bytes.
    for (const peer of peers) {
      const replay = await charge(peer.url, key)
      expect(replay.status).toBe(200)
      expect(replay.header('idempotent-replayed')).toBe('true')
      expect(replay.body.equals((fresh[0] as RawResponse).body)).toBe(true)
    }
    expect((await totals()).attempts).toBe(after.attempts)
  })

  it('SIGKILL mid-charge: 409 until the lease passes, then a restarted process takes over (fence 2) and replays', async () => {
    const inspector = (shared as Durable).inspector
    const [a, b] = peers as [DemoProcess, DemoProcess]
    const key = randomUUID()
    const hash = storageKey(key)
    const before = await totals()

    const doomed = await startDemoProcess({ ...env(), GATEWAY_LATENCY_MS: '5000' })
    const lost = charge(doomed.url, key).then(
      (res) => `answered ${res.status}`,
      (error: unknown) => error,
    )
    // Mid-operation: begin done, committed, the gateway called and still waiting on its 5 s.
    await until(
      'the gateway call',
      () => charges(doomed.url),
      (s) => s.attempts === 1,
    )
    const held = (await until(
      'the record',
      () => inspector.get(hash),
      (r) => r !== null,
    )) as StoredRecord
    expect(held).toMatchObject({ state: 'in_progress', fence: 1 })
    // Kill right after a heartbeat landed, so the lease left is as long as it gets (about LEASE_MS).
    await until(
      'a heartbeat',
      () => inspector.get(hash),
      (r) => r !== null && r.leaseDeadline > held.leaseDeadline,
    )
    doomed.kill('SIGKILL')
    expect((await doomed.exited).signal).toBe('SIGKILL')
    expect(await lost).toBeInstanceOf(Error)

    const orphan = (await inspector.get(hash)) as StoredRecord
    expect(orphan).toMatchObject({ state: 'in_progress', fence: 1, token: held.token })

    // A retry before the lease passes, on a surviving process: 409, nothing charged.
    const early = await charge(a.url, key)
    expect(Date.now()).toBeLessThan(orphan.leaseDeadline)
    expect(early.status, early.body.toString()).toBe(409)
    expect(problemOf(early).error).toBe('REQUEST_IN_PROGRESS')

    // The crashed process comes back (a shorter gateway latency, only to keep the test short).
    const restarted = await startDemoProcess(env())
    try {
      // Stores decide with the host's clock here (SQLite) or the server's on this host (Redis TIME,
      // clock_timestamp()), so the lease has passed once Date.now() has.
      await until(
        'the lease deadline',
        async () => Date.now(),
        (now) => now > orphan.leaseDeadline + 50,
      )
      const takeover = charge(restarted.url, key)
      // The new holder took the record over: still in progress, its token, fence 1 → 2 without a release.
      const taken = await until(
        'the takeover',
        () => inspector.get(hash),
        (r) => r !== null && r.fence !== 1,
      )
      expect(taken).toMatchObject({ state: 'in_progress', fence: 2 })
      expect(taken?.token).not.toBe(held.token)

      const ran = await takeover
      expect(ran.status, ran.body.toString()).toBe(200)
      expect(ran.header('idempotent-replayed')).toBeUndefined()
      expect(ran.header('idempotency-cached')).toBe('false')
      const done = await inspector.get(hash)
      expect(done).toMatchObject({ state: 'completed', fence: 2, token: taken?.token })
      const restartedCharges = await charges(restarted.url)
      expect(restartedCharges.attempts).toBe(1)
      // The new holder's handler saw the takeover: the demo logs the engine's `takeover` event.
      expect(restarted.output()).toContain(`idempotency takeover ${hash} fence 1 -> 2`)
      expect(restartedCharges.charges.map((c) => c.id)).toEqual([chargeOf(ran).id])

      // Then every process replays it.
      for (const peer of [restarted, a, b]) {
        const replay = await charge(peer.url, key)
        expect(replay.status).toBe(200)
        expect(replay.header('idempotent-replayed')).toBe('true')
        expect(replay.body.equals(ran.body)).toBe(true)
      }
      expect((await charges(restarted.url)).attempts).toBe(1)
      expect((await totals()).attempts).toBe(before.attempts)
    } finally {
      await restarted.stop()
    }
  })
})
