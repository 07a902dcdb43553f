// The only demo process SIGKILLed with charges done and in flight, then restarted: replays survive, nothing stays stuck.
import { randomUUID } from 'node:crypto'
import type { StoredRecord } from 'idempotency-kit'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DemoProcess, startDemoProcess, stopAllDemoProcesses } from '../support/demo-process.js'
import { type Durable, durableStores } from '../support/durable-stores.js'
import { charge, charges, type RawResponse } from '../support/http.js'
import { storageKey, until } from '../support/records.js'

const LEASE_MS = 1000
/** Long enough that the process is surely killed while the in-flight charges wait on the gateway. */
const GATEWAY_LATENCY_MS = 800
afterAll(() => stopAllDemoProcesses())

describe.each(durableStores)('the only demo process crashes on $name', (backend) => {
  let durable: Durable | undefined
  beforeAll(async () => {
    durable = await backend.open()
  })
  afterAll(async () => {
    await stopAllDemoProcesses()
    await durable?.close()
  })

  it('SIGKILL with 5 keys done and 5 in flight, restart: the done keys replay their bytes, every in-flight key is taken over at its first retry after the lease, logged as a takeover', async () => {
    const { storeUrl, inspector } = durable as Durable
    const env = { STORE_URL: storeUrl, IDEMPOTENCY_LEASE_MS: String(LEASE_MS) }
    const first = await startDemoProcess({ ...env, GATEWAY_LATENCY_MS: String(GATEWAY_LATENCY_MS) })

    // Done before the crash: four charges and a decline (a final answer, stored like a charge).
    const done = Array.from({ length: 5 }, (_, i) => ({
      key: randomUUID(),
      body: { amount: 1000 + i, customerId: i === 4 ? 'cus_decline' : `cus_${i}`, currency: 'usd' },
    }))
    const answers = await Promise.all(done.map(({ key, body }) => charge(first.url, key, body)))
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 402])

    // In flight at the crash: committed, the gateway called, its answer never comes.
    const inFlight = Array.from({ length: 5 }, () => randomUUID())
    const lost = inFlight.map((key) =>
      charge(first.url, key).then(
        (res) => `answered ${res.status}`,
        (error: unknown) => error,
      ),
    )
    await until(
      'the in-flight gateway calls',
      () => charges(first.url),
      (s) => s.attempts === 10,
    )
    first.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')
    for (const outcome of await Promise.all(lost)) expect(outcome).toBeInstanceOf(Error)

    const orphans = (await Promise.all(inFlight.map((key) => inspector.get(storageKey(key))))) as StoredRecord[]
    for (const orphan of orphans) expect(orphan).toMatchObject({ state: 'in_progress', fence: 1 })
    const lapses = Math.max(...orphans.map((orphan) => orphan.leaseDeadline))

    // The same program restarted on the same store: nothing of the first process survives but the store.
    const second: DemoProcess = await startDemoProcess({ ...env, GATEWAY_LATENCY_MS: '0' })
    try {
      for (const [i, { key, body }] of done.entries()) {
        const replay = await charge(second.url, key, body)
        const original = answers[i] as RawResponse
        expect(replay.status).toBe(original.status)
        expect(replay.header('idempotent-replayed')).toBe('true')
        expect(replay.header('content-type')).toBe(original.header('content-type'))
        expect(replay.body.equals(original.body), `${key} replayed other bytes after the restart`).toBe(true)
      }
      expect((await charges(second.url)).attempts).toBe(0)

      // Nothing stuck past the lease: the first retry after the deadline runs, none answers 409.
      // The stores decide with this host's clock (SQLite) or a server on this host (TIME, clock_timestamp()).
      await until(
        'the lease deadline',
        async () => Date.now(),
        (now) => now > lapses + 50,
      )
      const retries = await Promise.all(inFlight.map((key) => charge(second.url, key)))
      for (const retry of retries) {
        expect(retry.status, retry.body.toString()).toBe(200)
        expect(retry.header('idempotent-replayed')).toBeUndefined()
      }
      expect((await charges(second.url)).attempts).toBe(inFlight.length)
      for (const [i, key] of inFlight.entries()) {
        const hash = storageKey(key)
        // The new holder's takeover is visible to an operator, with the fence it followed.
        expect(second.output()).toContain(`idempotency takeover ${hash} fence 1 -> 2`)
        expect(await inspector.get(hash)).toMatchObject({ state: 'completed', fence: 2 })
        const replay = await charge(second.url, key)
        expect(replay.header('idempotent-replayed')).toBe('true')
        expect(replay.body.equals((retries[i] as RawResponse).body)).toBe(true)
      }
      // Only the in-flight keys were taken over: the done ones were never run again.
      expect(second.output().match(/idempotency takeover /g)).toHaveLength(inFlight.length)
      expect((await charges(second.url)).attempts).toBe(inFlight.length)
    } finally {
      await second.stop()
    }
  })
})
