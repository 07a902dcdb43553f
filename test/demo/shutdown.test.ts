// SIGTERM to `npm start` lets a charge already running finish and answer before the process exits.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { charge, type RawResponse, type SpawnedDemo, spawnDemo } from '../support/http.js'

let demo: SpawnedDemo | undefined
afterEach(async () => {
  await demo?.stop()
  demo = undefined
})

describe('npm start shutting down', () => {
  it('SIGTERM while a charge runs: the charge still answers 200, then the server exits', async () => {
    demo = await spawnDemo({ STORE_URL: 'memory:', GATEWAY_LATENCY_MS: '1000' })
    const serverPid = demo.serverPid()
    if (serverPid === undefined) throw new Error(`no node process found under npm start:\n${demo.output()}`)
    const inFlight: Promise<RawResponse | Error> = charge(demo.url, randomUUID()).catch((error: Error) => error)
    await sleep(300)
    // Only the server: what a process manager sends to the service it runs.
    process.kill(serverPid, 'SIGTERM')

    const res = await inFlight
    // DESIGN §4.11: close({ graceMs }) lets running handlers finish and complete before the process ends.
    expect(res instanceof Error ? `the in-flight request failed: ${res.message}` : res.status).toBe(200)
    await demo.exited
  })
})
