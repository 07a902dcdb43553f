// The Koa adapter over a real socket: every way a route sets a body, replay, policy, rejections, throws, raw body.

import { createServer, type Server } from 'node:http'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { bodyParser } from '@koa/bodyparser'
import { createIdempotency, type IdempotencyEvent, type Lease, MemoryStore, type Store } from 'idempotency-kit'
import { type IdempotencyState, idempotency, type KoaIdempotencyOptions } from 'idempotency-kit/koa'
import Koa, { type ParameterizedContext } from 'koa'
import { afterEach, describe, expect, it } from 'vitest'
import { startDemoProcess } from '../support/demo-process.js'
import { closeServer, listen, postJson as post, problemOf, request } from '../support/http.js'

type Ctx = ParameterizedContext<IdempotencyState>
const servers: Server[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map(closeServer))
})

async function serve(app: Koa<IdempotencyState>): Promise<string> {
  app.silent = true
  const server = createServer(app.callback())
  servers.push(server)
  return listen(server)
}

const key = () => crypto.randomUUID()

type Route = (ctx: Ctx, runs: number) => void | Promise<void>

/** Sets a response property from an arrow function without an assignment in an expression. */
function set(ctx: Ctx, property: 'body' | 'status', value: unknown): void {
  if (property === 'status') ctx.status = value as number
  else ctx.body = value
}

/** An app whose POST /r counts its runs; a middleware before ours sets a per-request id. */
async function app(route: Route, options: Partial<KoaIdempotencyOptions> = {}) {
  const counter = { runs: 0 }
  const a = new Koa<IdempotencyState>()
  a.use(async (ctx, next) => {
    ctx.set('x-request-id', crypto.randomUUID())
    await next()
  })
  a.use(bodyParser({ enableTypes: ['json', 'form', 'text'] }))
  a.use(idempotency({ store: new MemoryStore(), ...options } as KoaIdempotencyOptions))
  a.use(async (ctx) => {
    if (ctx.method === 'GET') {
      ctx.body = `get ${++counter.runs}`
      return
    }
    await route(ctx, ++counter.runs)
  })
  return { url: `${await serve(a)}/r`, counter }
}

describe('Koa adapter', () => {
  it('replays status, headers and a Buffer body byte for byte, running the route once', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const { url, counter } = await app((ctx) => {
      ctx.status = 201
      ctx.set('location', '/things/1')
      ctx.set('x-custom', ['one', 'two'])
      ctx.body = bytes
    })
    const k = key()
    const first = await post(url, k)
    const second = await post(url, k)
    expect(counter.runs).toBe(1)
    for (const res of [first, second]) {
      expect(res.status).toBe(201)
      expect(res.body.equals(bytes)).toBe(true)
      expect(res.header('location')).toBe('/things/1')
      expect(res.header('content-type')).toBe('application/octet-stream')
      expect(res.all('x-custom')).toEqual(['one', 'two'])
      expect(res.header('content-length')).toBe('256')
    }
    expect(first.header('idempotent-replayed')).toBeUndefined()
    expect(second.header('idempotent-replayed')).toBe('true')
    expect(second.header('x-request-id')).toBeDefined()
    expect(second.header('x-request-id')).not.toBe(first.header('x-request-id'))
  })

  it('replays every kind of body Koa sends: object as JSON, string, html, Blob, null, empty 204, status only', async () => {
    const bodies: Record<string, (ctx: Ctx, runs: number) => void> = {
      object: (ctx, runs) => set(ctx, 'body', { runs, nested: { list: [1, 'two', null] } }),
      string: (ctx, runs) => set(ctx, 'body', `plain ${runs}`),
      html: (ctx, runs) => set(ctx, 'body', `<p>${runs}</p>`),
      blob: (ctx, runs) => set(ctx, 'body', new Blob([`blob ${runs}`], { type: 'text/csv' })),
      explicitNull: (ctx) => set(ctx, 'body', null),
      noContent: (ctx) => set(ctx, 'status', 204),
      statusOnly: (ctx) => set(ctx, 'status', 202),
      notFound: () => undefined,
    }
    const { url, counter } = await app(async (ctx, runs) => {
      const { kind } = ctx.request.body as { kind: string }
      bodies[kind]?.(ctx, runs)
    })
    for (const kind of Object.keys(bodies)) {
      const k = key()
      const first = await post(url, k, { kind })
      const second = await post(url, k, { kind })
      // Keyless, the request passes untouched: what Koa itself sends, which the keyed response must equal.
      const native = await post(url, undefined, { kind })
      expect(first.status, kind).toBe(native.status)
      expect(first.header('content-type'), kind).toBe(native.header('content-type'))
      expect(first.body.byteLength, kind).toBe(native.body.byteLength)
      expect(second.header('idempotent-replayed'), kind).toBe('true')
      expect(second.status, kind).toBe(first.status)
      expect(second.body.equals(first.body), kind).toBe(true)
      expect(second.header('content-type'), kind).toBe(first.header('content-type'))
      expect(second.header('content-length'), kind).toBe(first.header('content-length'))
    }
    expect(counter.runs).toBe(2 * Object.keys(bodies).length)
    const statuses = []
    for (const kind of Object.keys(bodies)) statuses.push((await post(url, key(), { kind })).status)
    expect(statuses).toEqual([200, 200, 200, 200, 204, 204, 202, 404])
  })

  it('replays JSON with its exact content type and never stores Set-Cookie; markers are fresh', async () => {
    const { url, counter } = await app(
      (ctx, runs) => {
        ctx.cookies.set('session', 'secret')
        ctx.body = { runs }
      },
      { markers: { 'Idempotency-Cached': ['false', 'true'] } },
    )
    const k = key()
    const first = await post(url, k)
    const second = await post(url, k)
    expect(counter.runs).toBe(1)
    expect(first.header('content-type')).toBe('application/json; charset=utf-8')
    expect(second.header('content-type')).toBe(first.header('content-type'))
    expect(first.header('set-cookie')).toContain('session=secret')
    expect(second.header('set-cookie')).toBeUndefined()
    expect(first.header('idempotency-cached')).toBe('false')
    expect(second.header('idempotency-cached')).toBe('true')
  })

  it("fingerprints @koa/bodyparser's rawBody (big numbers kept) and refuses a body it cannot see", async () => {
    const { url, counter } = await app((ctx) => set(ctx, 'body', { got: ctx.request.body }))
    const k = key()
    expect((await post(url, k, '{"amount": 9007199254740993}')).status).toBe(200)
    expect((await post(url, k, '{"amount":9007199254740992}')).status).toBe(422)
    expect((await post(url, k, '{ "amount" : 9007199254740993 }')).header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(1)

    // No body parser for this media type: a configuration error (500), never a fingerprint of nothing.
    const errors: unknown[] = []
    const a = new Koa<IdempotencyState>()
    a.use(bodyParser())
    a.use(idempotency({ store: new MemoryStore() }))
    a.use((ctx) => set(ctx, 'body', 'ran'))
    const plain = await serve(a)
    a.on('error', (error) => errors.push(error))
    const res = await request(plain, {
      method: 'POST',
      headers: [
        ['content-type', 'text/plain'],
        ['idempotency-key', key()],
      ],
      body: 'hello',
    })
    expect(res.status).toBe(500)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ name: 'IdempotencyConfigError', code: 'ERR_IDEMPOTENCY_CONFIG' })
    expect(String((errors[0] as Error).message)).toContain('@koa/bodyparser')
  })

  it('reads ctx.req.rawBody when a Node-level parser ran first (@koa/bodyparser enableRawChecking)', async () => {
    let runs = 0
    const a = new Koa<IdempotencyState>()
    a.use(async (ctx, next) => {
      // What a Node-level parser (a serverless platform, a shared http middleware) leaves on the request.
      const chunks: Buffer[] = []
      for await (const chunk of ctx.req) chunks.push(chunk as Buffer)
      const raw = Buffer.concat(chunks).toString('utf8')
      Object.assign(ctx.req, { rawBody: raw, body: JSON.parse(raw) })
      await next()
    })
    a.use(bodyParser({ enableRawChecking: true }))
    a.use(idempotency({ store: new MemoryStore() }))
    a.use((ctx) => set(ctx, 'body', { runs: ++runs, got: ctx.request.body }))
    const url = await serve(a)
    const k = key()
    expect((await post(url, k, '{"amount": 9007199254740993}')).json()).toMatchObject({ runs: 1 })
    expect((await post(url, k, '{"amount":9007199254740992}')).status).toBe(422)
    expect((await post(url, k, '{"amount":9007199254740993}')).header('idempotent-replayed')).toBe('true')
    expect(runs).toBe(1)
  })

  it('answers 422 for the same key with another body, before 409, and 409 with Retry-After while running', async () => {
    const { url, counter } = await app(async (ctx) => {
      await sleep(400)
      ctx.body = { ok: true }
    })
    const k = key()
    const first = post(url, k, { a: 1 })
    await sleep(150)
    const reused = await post(url, k, { a: 2 })
    const running = await post(url, k, { a: 1 })
    expect(reused.status).toBe(422)
    expect(problemOf(reused).error).toBe('IDEMPOTENCY_KEY_REUSED')
    expect(running.status).toBe(409)
    expect(Number(running.header('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(problemOf(running)).toMatchObject({ error: 'REQUEST_IN_PROGRESS', status: 409 })
    expect(running.header('content-type')).toBe('application/problem+json')
    expect(running.header('x-request-id')).toBeDefined()
    expect((await first).status).toBe(200)
    expect(counter.runs).toBe(1)
  })

  it("waits for the running request and replays its result with onConflict: 'wait'", async () => {
    const { url, counter } = await app(
      async (ctx, runs) => {
        await sleep(300)
        ctx.body = { runs }
      },
      { onConflict: 'wait' },
    )
    const k = key()
    const [a, b] = await Promise.all([post(url, k), sleep(50).then(() => post(url, k))])
    expect([a?.status, b?.status]).toEqual([200, 200])
    expect(b?.body.equals(a?.body ?? Buffer.alloc(0))).toBe(true)
    expect(b?.header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(1)
  })

  it('rejects bad keys with 400, requires a key where asked, and lets keyless and GET requests pass', async () => {
    const { url, counter } = await app((ctx) => set(ctx, 'body', { ok: true }))
    for (const bad of ['', 'x'.repeat(256), '"unterminated', '"bad\\n"', 'with space']) {
      const res = await post(url, bad)
      expect(res.status, JSON.stringify(bad)).toBe(400)
      expect(problemOf(res).error).toBe('INVALID_IDEMPOTENCY_KEY')
    }
    const twoLines = await post(url, undefined, { a: 1 }, [
      ['idempotency-key', 'a'],
      ['idempotency-key', 'b'],
    ])
    expect(twoLines.status).toBe(400)
    expect(counter.runs).toBe(0)
    expect((await post(url, undefined)).status).toBe(200)
    expect((await request(url)).status).toBe(200)
    expect(counter.runs).toBe(2)
    const k = key()
    await post(url, k)
    expect((await post(url, `"${k}"`)).header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(3)

    const strict = await app((ctx) => set(ctx, 'body', { ok: true }), { required: true })
    const missing = await post(strict.url, undefined)
    expect(missing.status).toBe(400)
    expect(problemOf(missing).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
    expect(strict.counter.runs).toBe(0)
  })

  it('scopes keys by principal: the same key from two principals runs twice, from one replays', async () => {
    const { url, counter } = await app((ctx, runs) => set(ctx, 'body', { runs, user: ctx.get('x-user') }), {
      scope: (ctx) => ctx.get('x-user'),
    })
    const k = key()
    const alice = await post(url, k, { a: 1 }, [['x-user', 'alice']])
    const bob = await post(url, k, { a: 1 }, [['x-user', 'bob']])
    const aliceAgain = await post(url, k, { a: 1 }, [['x-user', 'alice']])
    expect(alice.json()).toEqual({ runs: 1, user: 'alice' })
    expect(bob.json()).toEqual({ runs: 2, user: 'bob' })
    expect(aliceAgain.body.equals(alice.body)).toBe(true)
    expect(aliceAgain.header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(2)
  })

  it('releases a 5xx before commit (the retry runs) and stores it after commit (the retry replays)', async () => {
    const { url, counter } = await app((ctx) => {
      if ((ctx.request.body as { commit: boolean }).commit) ctx.state.idempotency?.commit()
      ctx.status = 502
      ctx.body = { error: 'upstream' }
    })
    const released = key()
    await post(url, released, { commit: false })
    expect((await post(url, released, { commit: false })).header('idempotent-replayed')).toBeUndefined()
    expect(counter.runs).toBe(2)
    const stored = key()
    await post(url, stored, { commit: true })
    const replay = await post(url, stored, { commit: true })
    expect(counter.runs).toBe(3)
    expect(replay.status).toBe(502)
    expect(replay.header('idempotent-replayed')).toBe('true')
  })

  it('stores what Koa renders for a throw, by its status: a 500 released before commit, replayed after', async () => {
    const { url, counter } = await app((ctx, runs) => {
      const { commit, status } = ctx.request.body as { commit: boolean; status?: number }
      if (commit) ctx.state.idempotency?.commit()
      ctx.set('x-route', 'set before the throw')
      if (status !== undefined) ctx.throw(status, `refused ${runs}`)
      throw new Error(`boom ${runs}`)
    })
    const released = key()
    const first = await post(url, released, { commit: false })
    expect(first.status).toBe(500)
    expect(first.body.toString()).toBe('Internal Server Error')
    expect((await post(url, released, { commit: false })).header('idempotent-replayed')).toBeUndefined()
    expect(counter.runs).toBe(2)
    // A thrown 4xx renders a final answer: stored like a rendered one, as the Express and Hono adapters do.
    const refused = key()
    const rendered = await post(url, refused, { commit: false, status: 400 })
    const replayed = await post(url, refused, { commit: false, status: 400 })
    expect(rendered.body.toString()).toBe('refused 3')
    expect(replayed.status).toBe(400)
    expect(replayed.body.equals(rendered.body)).toBe(true)
    expect(replayed.header('content-type')).toBe(rendered.header('content-type'))
    expect(replayed.header('idempotent-replayed')).toBe('true')
    const committed = key()
    const boom = await post(url, committed, { commit: true })
    const again = await post(url, committed, { commit: true })
    expect(again.status).toBe(500)
    expect(again.body.equals(boom.body)).toBe(true)
    expect(again.header('idempotent-replayed')).toBe('true')
    expect(again.header('x-route')).toBeUndefined()
    expect(counter.runs).toBe(4)
  })

  it("stores what the app's own error middleware renders for a throw, outside the idempotency middleware", async () => {
    let runs = 0
    const a = new Koa<IdempotencyState>()
    a.use(async (ctx, next) => {
      try {
        await next()
      } catch (error) {
        await sleep(20)
        ctx.status = (error as { status?: number }).status ?? 500
        ctx.body = { error: (error as Error).message }
      }
    })
    a.use(bodyParser())
    a.use(idempotency({ store: new MemoryStore() }))
    a.use((ctx) => {
      runs++
      ctx.state.idempotency?.commit()
      throw new Error(`declined ${runs}`)
    })
    const url = await serve(a)
    const k = key()
    const first = await post(url, k)
    const second = await post(url, k)
    expect(first.status).toBe(500)
    expect(first.json()).toEqual({ error: 'declined 1' })
    expect(second.header('idempotent-replayed')).toBe('true')
    expect(second.body.equals(first.body)).toBe(true)
    expect(second.header('content-type')).toBe('application/json; charset=utf-8')
    expect(runs).toBe(1)
  })

  it('finishes a throw whose client is gone as unreplayable: the key is not left held, the retry gets 410', async () => {
    const { url, counter } = await app(async (ctx) => {
      ctx.state.idempotency?.commit()
      await sleep(400)
      throw new Error('after the client left')
    })
    const k = key()
    const gone = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': k },
      body: '{"a":1}',
      onSocket: (socket) => setTimeout(() => socket.destroy(), 150),
    }).catch(() => 'aborted')
    expect(await gone).toBe('aborted')
    await sleep(600)
    const retry = await post(url, k)
    expect(retry.status).toBe(410)
    expect(problemOf(retry)).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 500 })
    expect(counter.runs).toBe(1)
  })

  it('releases on lease.release() even after commit, and stores a 400 but releases a 429 before commit', async () => {
    const { url, counter } = await app((ctx) => {
      const { kind } = ctx.request.body as { kind: string }
      if (kind === 'release') {
        ctx.state.idempotency?.commit()
        ctx.state.idempotency?.release()
        ctx.body = { released: true }
        return
      }
      ctx.status = kind === 'limit' ? 429 : 400
      ctx.body = { kind }
    })
    for (const kind of ['limit', 'bad', 'release']) {
      const k = key()
      await post(url, k, { kind })
      await post(url, k, { kind })
    }
    expect(counter.runs).toBe(5)
  })

  it('keeps a body larger than maxResponseBytes as unreplayable: sent whole, 410 on retry, never rerun', async () => {
    const big = 'x'.repeat(5000)
    const { url, counter } = await app(
      (ctx) => {
        ctx.status = 201
        ctx.body = big
      },
      { maxResponseBytes: 1000 },
    )
    const k = key()
    const first = await post(url, k)
    expect(first.status).toBe(201)
    expect(first.body.toString()).toBe(big)
    const retry = await post(url, k)
    expect(retry.status).toBe(410)
    expect(problemOf(retry)).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
    expect(counter.runs).toBe(1)
  })

  it('passes a stream body (Node Readable or Web ReadableStream) through whole and answers its retry 410', async () => {
    const { url, counter } = await app((ctx) => {
      const { kind } = ctx.request.body as { kind: string }
      ctx.type = 'text/plain'
      ctx.body =
        kind === 'node'
          ? Readable.from(['one ', 'two'])
          : new ReadableStream({
              start(controller) {
                controller.enqueue(new TextEncoder().encode('web stream'))
                controller.close()
              },
            })
    })
    for (const [kind, text] of [
      ['node', 'one two'],
      ['web', 'web stream'],
    ]) {
      const k = key()
      expect((await post(url, k, { kind })).body.toString()).toBe(text)
      expect((await post(url, k, { kind })).status).toBe(410)
    }
    expect(counter.runs).toBe(2)
  })

  it('keeps a route that writes to ctx.res itself as unreplayable, never a half-stored body', async () => {
    const { url, counter } = await app((ctx) => {
      ctx.respond = false
      ctx.res.writeHead(200, { 'content-type': 'text/plain' })
      ctx.res.end('raw')
    })
    const k = key()
    expect((await post(url, k)).body.toString()).toBe('raw')
    expect((await post(url, k)).status).toBe(410)
    expect(counter.runs).toBe(1)
  })

  it('stores the result when the client disconnects mid-request, and the retry replays it', async () => {
    const seen: { leaseAborted?: boolean } = {}
    const { url, counter } = await app(async (ctx, runs) => {
      await sleep(400)
      seen.leaseAborted = (ctx.state.idempotency as Lease).signal.aborted
      ctx.body = { runs }
    })
    const k = key()
    const gone = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': k },
      body: '{"a":1}',
      onSocket: (socket) => setTimeout(() => socket.destroy(), 150),
    }).catch(() => 'aborted')
    expect(await gone).toBe('aborted')
    await sleep(600)
    expect(seen.leaseAborted).toBe(false)
    const retry = await post(url, k)
    expect(retry.status).toBe(200)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect(retry.json()).toEqual({ runs: 1 })
    expect(counter.runs).toBe(1)
  })

  it('completes before Koa writes the response (store, then send)', async () => {
    const events: string[] = []
    const a = new Koa<IdempotencyState>()
    a.use(async (ctx, next) => {
      ctx.res.once('finish', () => events.push('response written'))
      await next()
    })
    a.use(bodyParser())
    a.use(idempotency({ store: new MemoryStore(), onEvent: (event: IdempotencyEvent) => events.push(event.type) }))
    a.use((ctx) => set(ctx, 'body', { ok: true }))
    await post(await serve(a), key())
    await sleep(20)
    expect(events).toEqual(['acquired', 'completed', 'response written'])
  })

  it('runs a 2-second route under a 600 ms lease once: the heartbeat keeps the key', async () => {
    const { url, counter } = await app(
      async (ctx, runs) => {
        await sleep(2000)
        ctx.body = { runs }
      },
      { leaseMs: 600 },
    )
    const k = key()
    const first = post(url, k)
    await sleep(1000)
    expect((await post(url, k)).status).toBe(409)
    await sleep(500)
    expect((await post(url, k)).status).toBe(409)
    expect((await first).status).toBe(200)
    expect((await post(url, k)).header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(1)
  })

  it('answers a fast 503 with Retry-After and does not run the route when the store hangs', async () => {
    const memory = new MemoryStore()
    const hanging: Store = {
      begin: () => new Promise(() => {}),
      complete: (i) => memory.complete(i),
      release: (i) => memory.release(i),
      extend: (i) => memory.extend(i),
      get: (k) => memory.get(k),
      delete: (k, o) => memory.delete(k, o),
    }
    const { url, counter } = await app((ctx) => set(ctx, 'body', {}), { store: hanging, beginTimeoutMs: 200 })
    const res = await post(url, key())
    expect(res.status).toBe(503)
    expect(res.header('retry-after')).toBe('2')
    expect(problemOf(res).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
    expect(counter.runs).toBe(0)
  })

  it('handles a request once when mounted app-wide and again in front of the route', async () => {
    const engine = createIdempotency({ store: new MemoryStore() })
    let runs = 0
    const a = new Koa<IdempotencyState>()
    a.use(bodyParser())
    a.use(idempotency({ engine }))
    a.use(idempotency({ engine }))
    a.use((ctx) => set(ctx, 'body', { runs: ++runs }))
    const url = await serve(a)
    const k = key()
    expect((await post(url, k)).status).toBe(200)
    expect((await post(url, k)).header('idempotent-replayed')).toBe('true')
    expect(runs).toBe(1)
  })

  it('answers 409 instead of the aborted handler’s response when another holder took the key over', async () => {
    const { url, counter } = await app(
      async (ctx, runs) => {
        if (runs === 1) {
          // Outlives maxExecutionMs: the signal fires, the heartbeat stops, and the lease lapses in the store.
          await sleep(1200)
          ctx.set('x-route', 'first')
        }
        ctx.body = { runs }
      },
      { leaseMs: 400, maxExecutionMs: 200 },
    )
    const k = key()
    const first = post(url, k)
    await sleep(800)
    expect((await post(url, k)).json()).toEqual({ runs: 2 })
    const late = await first
    expect(late.status).toBe(409)
    expect(problemOf(late).error).toBe('REQUEST_IN_PROGRESS')
    expect(late.header('x-route')).toBeUndefined()
    expect(late.header('x-request-id')).toBeDefined()
    expect((await post(url, k)).json()).toEqual({ runs: 2 })
    expect(counter.runs).toBe(2)
  })
  it('runs examples/koa/server.ts as documented: a charge, its replay, and 400 without a key', async () => {
    const example = await startDemoProcess({}, { script: 'examples/koa/server.ts' })
    try {
      const url = `${example.url}/api/payments/charge`
      const charge = { amount: 5000, customerId: 'cus_123' }
      const k = key()
      const first = await post(url, k, charge)
      const second = await post(url, k, charge)
      expect(first.status).toBe(201)
      expect(first.json()).toMatchObject({ amount: 5000, currency: 'usd', status: 'succeeded' })
      expect(second.body.equals(first.body)).toBe(true)
      expect(second.header('idempotent-replayed')).toBe('true')
      expect(problemOf(await post(url, undefined, charge)).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
    } finally {
      await example.stop()
    }
  })
})
