// The seed's own test scripts, ported to fetch, run against `npm start` print the seed's Expected Output.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { charges, REPO_ROOT, runNode, type SpawnedDemo, spawnDemo } from '../support/http.js'

const SCRIPTS = join(REPO_ROOT, 'examples/payments/scripts')
const RESPONSE =
  /^Response: \{ id: '(ch_[0-9a-f]+)', amount: 5000, currency: 'usd', customerId: 'cus_123', status: 'succeeded', createdAt: '[^']+' \}$/

describe("the seed's scripts against npm start (STORE_URL=memory:)", () => {
  let demo: SpawnedDemo
  beforeAll(async () => {
    // A slow gateway makes the concurrent script's ten requests overlap, as the seed intends, even on a busy machine.
    demo = await spawnDemo({ STORE_URL: 'memory:', GATEWAY_LATENCY_MS: '800' })
  })
  afterAll(async () => {
    await demo?.stop()
  })

  it('npm start announces its port and store', () => {
    expect(demo.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(store: memory\)/)
  })

  it("test-idempotency.mjs prints the seed's Expected Output", async () => {
    const before = await charges(demo.url)
    const { code, stdout, stderr } = await runNode(join(SCRIPTS, 'test-idempotency.mjs'), { API_URL: demo.url })
    expect(code, stderr).toBe(0)
    const lines = stdout.trimEnd().split('\n')
    expect(lines, stdout).toHaveLength(14)
    expect(lines[0]).toBe('Test 1: First request should process')
    expect(lines[1]).toMatch(RESPONSE)
    expect(lines[2]).toBe('Cached: false')
    expect(lines[3]).toBe('')
    expect(lines[4]).toBe('Test 2: Retry with same key should return cached result')
    // The replay is the same charge, down to createdAt.
    expect(lines[5]).toBe(lines[1])
    expect(lines[6]).toBe('Cached: true')
    expect(lines[7]).toBe('')
    expect(lines[8]).toBe('Test 3: Same key with different body should fail')
    expect(lines[9]).toMatch(/^Expected error: \{ .*error: 'IDEMPOTENCY_KEY_REUSED', message: '[^']+'.* \}$/)
    expect(lines[10]).toBe('')
    expect(lines[11]).toBe('Test 4: Different key should create new charge')
    expect(lines[12]).toMatch(RESPONSE)
    expect(lines[13]).toBe('Cached: false')
    const firstId = RESPONSE.exec(lines[1] ?? '')?.[1]
    const newId = RESPONSE.exec(lines[12] ?? '')?.[1]
    expect(newId).not.toBe(firstId)

    // Two charges, not three: the retry and the reused key charged nothing.
    const after = await charges(demo.url)
    expect(after.charges.slice(before.charges.length).map((c) => c.id)).toEqual([firstId, newId])
    expect(after.attempts - before.attempts).toBe(2)
  })

  it('test-concurrent.mjs: one success, nine conflicts, one charge id', async () => {
    const before = await charges(demo.url)
    const { code, stdout, stderr } = await runNode(join(SCRIPTS, 'test-concurrent.mjs'), { API_URL: demo.url })
    expect(code, stderr).toBe(0)
    expect(stdout).toBe(
      [
        'Sending 10 concurrent requests with same key...',
        'Successes: 1',
        'Conflicts (409): 9',
        'All responses have same charge ID: true',
        '',
      ].join('\n'),
    )
    const after = await charges(demo.url)
    expect(after.charges.length - before.charges.length).toBe(1)
    expect(after.attempts - before.attempts).toBe(1)
  })
})
