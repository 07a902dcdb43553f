// On every store: a key never crosses tenants, and raw keys, bodies, credentials and cookies never reach storage.
import { randomBytes } from 'node:crypto'
import type { Server } from 'node:http'
import express, { type Request } from 'express'
import type { IdempotencyEvent } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type OpenedStore, openStore, STORE_NAMES } from '../faults/every-store.js'
import { closeServer, listen, type RawResponse, request } from '../support/http.js'

const secret = (label: string) => `${label}-${randomBytes(6).toString('hex')}`

/** The principal is the bearer token here; what matters is that the scope is whatever `scope()` answers. */
function tenantOf(req: Request): string | undefined {
  return /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1]
}

interface App {
  readonly url: string
  readonly events: IdempotencyEvent[]
  /** Executions of the route, per tenant. */
  readonly runs: Map<string, number>
  close(): Promise<void>
}

/** A route that answers who ran it and sets every header that must never be stored, with secret values. */
async function startApp(store: OpenedStore['store'], never: Record<string, string>): Promise<App> {
  const events: IdempotencyEvent[] = []
  const runs = new Map<string, number>()
  const app = express()
  app.use(json())
  app.use(idempotency({ store, scope: tenantOf, onEvent: (event) => events.push(event) }))
  app.post('/orders', (req, res) => {
    const tenant = tenantOf(req) ?? ''
    const n = (runs.get(tenant) ?? 0) + 1
    runs.set(tenant, n)
    for (const [name, value] of Object.entries(never)) res.setHeader(name, value)
    res.setHeader('x-kept', 'kept')
    // Named tenants are echoed so a test sees who ran; a secret credential never is.
    res.status(201).json({ tenant: tenant.startsWith('tenant-') ? tenant : 'someone', n })
  })
  const server: Server = app.listen(0, '127.0.0.1')
  const url = await listen(server)
  return { url, events, runs, close: () => closeServer(server) }
}

function post(url: string, key: string, credential: string, body: string): Promise<RawResponse> {
  return request(`${url}/orders`, {
    method: 'POST',
    headers: [
      ['content-type', 'application/json'],
      ['idempotency-key', key],
      ['authorization', `Bearer ${credential}`],
    ],
    body,
  })
}

describe.each(STORE_NAMES)('security on %s', (name) => {
  let opened: OpenedStore
  let app: App
  const cookie = secret('cookie')
  const hop = `x-hop-${randomBytes(4).toString('hex')}`
  // Every response carries these; none may be stored or replayed.
  const never: Record<string, string> = {
    'set-cookie': `sid=${cookie}; HttpOnly`,
    // Connection names another header as hop-by-hop for this message (RFC 9110 §7.6.1).
    connection: `close, ${hop}`,
    [hop]: secret('hop-value'),
    'keep-alive': `timeout=5, ${secret('keep-alive')}`,
    'proxy-authenticate': `Basic realm="${secret('proxy')}"`,
    upgrade: secret('upgrade'),
    te: secret('te'),
    // Not `Trailer`: a route that sets it crashes the process through the Express adapter (Node throws
    // ERR_HTTP_TRAILER_INVALID from res.end inside capture-response's promise; see the report).
  }

  beforeAll(async () => {
    // Limited, so the raw scan below also covers what a store keeps to count a tenant's records.
    opened = await openStore(name, { maxRecordsPerScope: 1_000 })
    app = await startApp(opened.store, never)
  })
  afterAll(async () => {
    await app?.close()
    await opened?.close()
  })

  it("never replays tenant A's response to tenant B for the same key", async () => {
    const key = secret('shared-key')
    const body = '{"amount":100}'
    const a1 = await post(app.url, key, 'tenant-a', body)
    const b1 = await post(app.url, key, 'tenant-b', body)
    const a2 = await post(app.url, key, 'tenant-a', body)
    const b2 = await post(app.url, key, 'tenant-b', body)
    expect([a1.status, b1.status, a2.status, b2.status]).toEqual([201, 201, 201, 201])
    expect(a1.json()).toEqual({ tenant: 'tenant-a', n: 1 })
    expect(b1.json()).toEqual({ tenant: 'tenant-b', n: 1 })
    expect(b1.header('idempotent-replayed')).toBeUndefined()
    expect(a2.header('idempotent-replayed')).toBe('true')
    expect(b2.header('idempotent-replayed')).toBe('true')
    expect(a2.body.equals(a1.body)).toBe(true)
    expect(b2.body.equals(b1.body)).toBe(true)
    // A different body under B's scope is B's own business: it does not see A's record at all.
    const b3 = await post(app.url, secret('other'), 'tenant-b', '{"amount":999}')
    expect(b3.status).toBe(201)
    expect(app.runs.get('tenant-a')).toBe(1)
    expect(app.runs.get('tenant-b')).toBe(2)
  })

  it('stores no raw key, request body, credential, cookie or hop-by-hop value: hashes only', async () => {
    const key = secret('raw-key')
    const credential = secret('credential')
    const bodySecret = secret('body-secret')
    const first = await post(app.url, key, credential, JSON.stringify({ amount: 1, note: bodySecret }))
    expect(first.status).toBe(201)
    // Not vacuous: the route really sent the cookie on the first response.
    expect(first.header('set-cookie')).toContain(cookie)
    const dump = await opened.dump()
    expect(dump).toContain('x-kept')
    const forbidden = [key, credential, bodySecret, cookie, ...Object.values(never).map((v) => v.split(', ').at(-1))]
    for (const needle of forbidden) {
      expect(dump.includes(needle ?? '<none>'), `${needle} is in the ${name} store`).toBe(false)
      expect(dump.includes(Buffer.from(needle ?? '<none>').toString('hex')), `${needle} (hex) is in the store`).toBe(
        false,
      )
    }
    expect(dump.toLowerCase()).not.toContain('set-cookie')
  })

  it('lets one tenant use up only its own records: 429 for it, 201 for the others, existing keys still replay', async () => {
    const limited = await openStore(name, { maxRecordsPerScope: 3 })
    const own = await startApp(limited.store, {})
    try {
      const greedy = []
      for (let i = 0; i < 5; i++) greedy.push(await post(own.url, `k${i}`, 'tenant-greedy', '{}'))
      expect(greedy.map((r) => r.status)).toEqual([201, 201, 201, 429, 429])
      const refused = greedy[3] as RawResponse
      expect(refused.header('content-type')).toBe('application/problem+json')
      expect(refused.json()).toMatchObject({ status: 429, error: 'IDEMPOTENCY_RECORD_LIMIT_REACHED' })
      // About a day: the tenant's first record expires after the default 24 h retention (plus its lease).
      expect(Number(refused.header('retry-after'))).toBeGreaterThan(23 * 3600)
      expect(own.runs.get('tenant-greedy')).toBe(3)
      const replay = await post(own.url, 'k0', 'tenant-greedy', '{}')
      expect([replay.status, replay.header('idempotent-replayed')]).toEqual([201, 'true'])
      expect((await post(own.url, 'k0', 'tenant-modest', '{}')).status).toBe(201)
      expect(own.runs).toEqual(
        new Map([
          ['tenant-greedy', 3],
          ['tenant-modest', 1],
        ]),
      )
      // The refusal wrote nothing: once a day has passed, the tenant's new keys are taken again.
      limited.advance(25 * 3600 * 1000)
      expect((await post(own.url, 'k3', 'tenant-greedy', '{}')).status).toBe(201)
      expect(own.runs.get('tenant-greedy')).toBe(4)
    } finally {
      await own.close()
      await limited.close()
    }
  })

  it('replays none of Set-Cookie, Connection, the headers it names, Keep-Alive, Proxy-*, Upgrade, TE', async () => {
    const key = secret('key')
    await post(app.url, key, 'tenant-h', '{}')
    const replay = await post(app.url, key, 'tenant-h', '{}')
    expect(replay.header('idempotent-replayed')).toBe('true')
    expect(replay.header('x-kept')).toBe('kept')
    const replayed = replay.rawHeaders.map(([n, v]) => `${n.toLowerCase()}: ${v}`).join('\n')
    for (const [header, value] of Object.entries(never)) {
      expect(replayed, header).not.toContain(value.split(', ').at(-1))
    }
    expect(replay.all('set-cookie')).toEqual([])
    expect(replay.all(hop)).toEqual([])
    expect(replay.all('proxy-authenticate')).toEqual([])
    expect(replay.all('upgrade')).toEqual([])
    expect(replay.all('te')).toEqual([])
  })
})
