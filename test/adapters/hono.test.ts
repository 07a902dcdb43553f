// The Hono adapter on @hono/node-server over a real socket: capture, replay, policy, rejections, streams, signals.

import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAdaptorServer } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { cors } from 'hono/cors'
import { HTTPException } from 'hono/http-exception'
import { createIdempotency, type IdempotencyEvent, type Lease, MemoryStore, type Store } from 'idempotency-kit'
import { type HonoIdempotencyOptions, type IdempotencyVariables, idempotency } from 'idempotency-kit/hono'
import { afterEach, describe, expect, it } from 'vitest'
import { startDemoProcess } from '../support/demo-process.js'
import { closeServer, listen, postJson as post, problemOf, request } from '../support/http.js'
import { importGraph } from '../support/import-graph.js'

type Env = { Variables: IdempotencyVariables }
const servers: Server[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map(closeServer))
})

async function serve(app: Hono<Env>): Promise<string> {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server
  servers.push(server)
  return listen(server)
}

const key = () => crypto.randomUUID()

type Route = (c: Context<Env>, runs: number) => Response | Promise<Response>

/** An app whose POST /r counts its runs; a middleware before ours sets a per-request id. */
async function app(route: Route, options: Partial<HonoIdempotencyOptions> = {}) {
  const counter = { runs: 0 }
  const a = new Hono<Env>()
  a.use(async (c, next) => {
    c.header('x-request-id', crypto.randomUUID())
    await next()
  })
  a.use(idempotency({ store: new MemoryStore(), ...options } as HonoIdempotencyOptions))
  a.post('/r', (c) => route(c, ++counter.runs))
  a.get('/r', (c) => c.text(`get ${++counter.runs}`))
  return { url: `${await serve(a)}/r`, counter }
}

describe('Hono adapter', () => {
  it('replays status, headers and body byte for byte, running the route once', async () => {
    const bytes = new Uint8Array(Array.from({ length: 256 }, (_, i) => i))
    const { url, counter } = await app((c) => {
      c.header('x-custom', 'one')
      c.header('x-custom', 'two', { append: true })
      return c.body(bytes, 201, { location: '/things/1', 'content-type': 'application/octet-stream' })
    })
    const k = key()
    const first = await post(url, k)
    const second = await post(url, k)
    expect(counter.runs).toBe(1)
    for (const res of [first, second]) {
      expect(res.status).toBe(201)
      expect(res.body.equals(Buffer.from(bytes))).toBe(true)
      expect(res.header('location')).toBe('/things/1')
      expect(res.header('content-type')).toBe('application/octet-stream')
      expect(res.header('x-custom')).toBe('one, two')
      expect(res.header('content-length')).toBe('256')
    }
    expect(first.header('idempotent-replayed')).toBeUndefined()
    expect(second.header('idempotent-replayed')).toBe('true')
    // Set before the middleware: each response has its own, never the stored one.
    expect(second.header('x-request-id')).toBeDefined()
    expect(second.header('x-request-id')).not.toBe(first.header('x-request-id'))
  })

  it('replays c.json with its exact content type, never Set-Cookie, with the engine markers', async () => {
    const { url, counter } = await app(
      (c, runs) => {
        c.header('set-cookie', 'session=secret')
        return c.json({ runs, big: 9007199254740993n.toString() })
      },
      { markers: { 'Idempotency-Cached': ['false', 'true'] } },
    )
    const k = key()
    const first = await post(url, k)
    const second = await post(url, k)
    expect(counter.runs).toBe(1)
    expect(second.body.equals(first.body)).toBe(true)
    expect(second.header('content-type')).toBe(first.header('content-type'))
    expect(first.header('content-type')).toBe('application/json')
    expect(first.header('set-cookie')).toBe('session=secret')
    expect(second.header('set-cookie')).toBeUndefined()
    expect(first.header('idempotency-cached')).toBe('false')
    expect(second.header('idempotency-cached')).toBe('true')
  })

  it('fingerprints the raw body (big numbers kept) and the route can still read c.req.json()', async () => {
    const { url, counter } = await app(async (c) => c.json({ got: await c.req.json() }))
    const k = key()
    const first = await post(url, k, '{"amount": 9007199254740993}')
    expect(first.json()).toEqual({ got: { amount: 9007199254740992 } })
    // Equal as doubles, different as sent: a different request, never a replay of the first.
    const other = await post(url, k, '{"amount":9007199254740992}')
    expect(other.status).toBe(422)
    // Whitespace and key order are not part of the request.
    const same = await post(url, k, '{ "amount" : 9007199254740993 }')
    expect(same.header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(1)
  })

  it('reads the body after c.req.json() or bodyLimit ran, and refuses one consumed through c.req.raw', async () => {
    const errors: unknown[] = []
    let runs = 0
    const a = new Hono<Env>()
    a.onError((error, c) => {
      errors.push(error)
      return error instanceof HTTPException ? error.getResponse() : c.text('failed', 500)
    })
    a.use('/limited', bodyLimit({ maxSize: 64 }))
    // A validator-like middleware before ours: it reads through Hono's cache.
    a.use('/validated', async (c, next) => {
      await c.req.json()
      await next()
    })
    a.use('/consumed', async (c, next) => {
      await c.req.raw.arrayBuffer()
      await next()
    })
    a.use(idempotency({ store: new MemoryStore() }))
    a.post('*', async (c) => c.json({ runs: ++runs, body: await c.req.json() }))
    const base = await serve(a)
    const k = key()
    const validated = await post(`${base}/validated`, k, { amount: 1 })
    expect(validated.json()).toEqual({ runs: 1, body: { amount: 1 } })
    expect((await post(`${base}/validated`, k, { amount: 2 })).status).toBe(422)
    expect((await post(`${base}/validated`, k, { amount: 1 })).header('idempotent-replayed')).toBe('true')
    // The limit answers first, and its 413 is never stored: a smaller body with the same key runs.
    const limited = key()
    expect((await post(`${base}/limited`, limited, { pad: 'x'.repeat(100) })).status).toBe(413)
    expect((await post(`${base}/limited`, limited, { small: true })).json()).toEqual({ runs: 2, body: { small: true } })
    const consumed = await post(`${base}/consumed`, key())
    expect(consumed.status).toBe(500)
    expect(errors.at(-1)).toMatchObject({ name: 'IdempotencyConfigError', code: 'ERR_IDEMPOTENCY_CONFIG' })
    expect(runs).toBe(2)
  })

  it('answers 422 for the same key with another body, before 409, and 409 with Retry-After while running', async () => {
    const { url, counter } = await app(async (c) => {
      await sleep(400)
      return c.json({ ok: true })
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
    // The rejection keeps the headers of this request set before the middleware.
    expect(running.header('x-request-id')).toBeDefined()
    expect((await first).status).toBe(200)
    expect(counter.runs).toBe(1)
  })

  it("waits for the running request and replays its result with onConflict: 'wait'", async () => {
    const { url, counter } = await app(
      async (c, runs) => {
        await sleep(300)
        return c.json({ runs })
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
    const { url, counter } = await app((c) => c.json({ ok: true }))
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

    const strict = await app((c) => c.json({ ok: true }), { required: true })
    const missing = await post(strict.url, undefined)
    expect(missing.status).toBe(400)
    expect(problemOf(missing).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
    expect(strict.counter.runs).toBe(0)
  })

  it('scopes keys by principal: the same key from two principals runs twice, from one replays', async () => {
    const { url, counter } = await app((c, runs) => c.json({ runs, user: c.req.header('x-user') }), {
      scope: (c) => c.req.header('x-user'),
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
    const { url, counter } = await app(async (c) => {
      if ((await c.req.json()).commit) c.get('idempotency')?.commit()
      return c.json({ error: 'upstream' }, 502)
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

  it('treats a thrown error as onError renders it: released before commit, stored and replayed after', async () => {
    const counter = { runs: 0 }
    const a = new Hono<Env>()
    a.onError((error, c) => c.json({ failed: error.message }, error instanceof HTTPException ? error.status : 500))
    a.use(idempotency({ store: new MemoryStore() }))
    a.post('/r', async (c) => {
      counter.runs++
      const body = await c.req.json()
      if (body.commit) c.get('idempotency')?.commit()
      if (body.http) throw new HTTPException(402, { message: 'declined' })
      throw new Error(`boom ${counter.runs}`)
    })
    const url = `${await serve(a)}/r`
    const released = key()
    expect((await post(url, released, { commit: false })).status).toBe(500)
    expect((await post(url, released, { commit: false })).json()).toEqual({ failed: 'boom 2' })
    const stored = key()
    const first = await post(url, stored, { commit: true })
    const replay = await post(url, stored, { commit: true })
    expect(replay.status).toBe(500)
    expect(replay.body.equals(first.body)).toBe(true)
    expect(replay.header('idempotent-replayed')).toBe('true')
    // A final 4xx rendered from an HTTPException is stored even before commit.
    const declined = key()
    await post(url, declined, { http: true })
    const again = await post(url, declined, { http: true })
    expect(again.status).toBe(402)
    expect(again.header('idempotent-replayed')).toBe('true')
    expect(counter.runs).toBe(4)
  })

  it('releases on lease.release() even after commit, and stores a 400 but releases a 429 before commit', async () => {
    const { url, counter } = await app(async (c) => {
      const { kind } = await c.req.json()
      if (kind === 'release') {
        c.get('idempotency')?.commit()
        c.get('idempotency')?.release()
        return c.json({ released: true })
      }
      return c.json({ kind }, kind === 'limit' ? 429 : 400)
    })
    for (const kind of ['limit', 'bad', 'release']) {
      const k = key()
      await post(url, k, { kind })
      await post(url, k, { kind })
    }
    // limit: 2 runs, bad: 1 run, release: 2 runs
    expect(counter.runs).toBe(5)
  })

  it('keeps a response larger than maxResponseBytes as unreplayable: sent whole, 410 on retry, never rerun', async () => {
    const big = 'x'.repeat(5000)
    const { url, counter } = await app((c) => c.text(big, 201), { maxResponseBytes: 1000 })
    const k = key()
    const first = await post(url, k)
    expect(first.status).toBe(201)
    expect(first.body.toString()).toBe(big)
    const retry = await post(url, k)
    expect(retry.status).toBe(410)
    expect(problemOf(retry)).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
    expect(counter.runs).toBe(1)
  })

  it('buffers a stream body of unknown length within the limit, and passes a longer one through whole', async () => {
    const chunk = new Uint8Array(300).fill(65)
    const { url, counter } = await app(
      async (c) => {
        const { chunks } = await c.req.json()
        let sent = 0
        const stream = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (sent++ === chunks) return controller.close()
            await sleep(5)
            controller.enqueue(chunk)
          },
        })
        return c.body(stream, 200, { 'content-type': 'text/plain' })
      },
      { maxResponseBytes: 1000 },
    )
    const small = key()
    const first = await post(url, small, { chunks: 3 })
    expect(first.body.byteLength).toBe(900)
    expect(first.header('content-length')).toBe('900')
    const replay = await post(url, small, { chunks: 3 })
    expect(replay.body.equals(first.body)).toBe(true)
    expect(replay.header('idempotent-replayed')).toBe('true')

    const large = key()
    const whole = await post(url, large, { chunks: 10 })
    expect(whole.status).toBe(200)
    expect(whole.body.equals(Buffer.alloc(3000, 65))).toBe(true)
    expect((await post(url, large, { chunks: 10 })).status).toBe(410)
    expect(counter.runs).toBe(2)
  })

  it('passes an event stream through as it is produced, and answers its retry 410', async () => {
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    const { url, counter } = await app((c) => {
      const encoder = new TextEncoder()
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode('data: 1\n\n'))
          // Ends only after the client has seen the first event: a buffering middleware would deadlock here.
          await released
          controller.enqueue(encoder.encode('data: 2\n\n'))
          controller.close()
        },
      })
      return c.body(stream, 200, { 'content-type': 'text/event-stream' })
    })
    const k = key()
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': k },
      body: '{}',
    })
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    const firstEvent = await reader.read()
    expect(new TextDecoder().decode(firstEvent.value)).toBe('data: 1\n\n')
    release()
    let rest = ''
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value)
    expect(rest).toBe('data: 2\n\n')
    expect((await post(url, k, {})).status).toBe(410)
    expect(counter.runs).toBe(1)
  })

  it('never uses the request signal as the lease signal: a client that goes away does not abort the work', async () => {
    const seen: { requestAborted?: boolean; leaseAborted?: boolean; sameSignal?: boolean } = {}
    const { url, counter } = await app(async (c, runs) => {
      const lease = c.get('idempotency') as Lease
      seen.sameSignal = lease.signal === c.req.raw.signal
      await sleep(400)
      seen.requestAborted = c.req.raw.signal.aborted
      seen.leaseAborted = lease.signal.aborted
      return c.json({ runs })
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
    expect(seen).toEqual({ sameSignal: false, requestAborted: true, leaseAborted: false })
    const retry = await post(url, k)
    expect(retry.status).toBe(200)
    expect(retry.header('idempotent-replayed')).toBe('true')
    expect(retry.json()).toEqual({ runs: 1 })
    expect(counter.runs).toBe(1)
  })

  it('completes before the Response leaves the middleware (store, then send)', async () => {
    const events: string[] = []
    const a = new Hono<Env>()
    a.use(async (_c, next) => {
      await next()
      events.push('response leaves the idempotency middleware')
    })
    a.use(
      idempotency({
        store: new MemoryStore(),
        onEvent: (event: IdempotencyEvent) => events.push(event.type),
      }),
    )
    a.post('/r', (c) => c.json({ ok: true }))
    const url = `${await serve(a)}/r`
    await post(url, key())
    expect(events).toEqual(['acquired', 'completed', 'response leaves the idempotency middleware'])
  })

  it('runs a 2-second route under a 600 ms lease once: the heartbeat keeps the key', async () => {
    const { url, counter } = await app(
      async (c, runs) => {
        await sleep(2000)
        return c.json({ runs })
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
    const { url, counter } = await app((c) => c.json({}), { store: hanging, beginTimeoutMs: 200 })
    const res = await post(url, key())
    expect(res.status).toBe(503)
    expect(res.header('retry-after')).toBe('2')
    expect(problemOf(res).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
    expect(counter.runs).toBe(0)
  })

  it('handles a request once when mounted app-wide and per route', async () => {
    const engine = createIdempotency({ store: new MemoryStore() })
    let runs = 0
    const a = new Hono<Env>()
    a.use(idempotency({ engine }))
    a.post('/r', idempotency({ engine }), (c) => c.json({ runs: ++runs }))
    const url = `${await serve(a)}/r`
    const k = key()
    expect((await post(url, k)).status).toBe(200)
    expect((await post(url, k)).header('idempotent-replayed')).toBe('true')
    expect(runs).toBe(1)
  })

  it('keeps CORS headers per request: a replay to another origin carries that origin, never the stored one', async () => {
    let runs = 0
    const a = new Hono<Env>()
    a.use(
      cors({
        origin: (origin) => origin,
        allowHeaders: ['Content-Type', 'Idempotency-Key'],
        exposeHeaders: ['Idempotent-Replayed', 'Retry-After'],
      }),
    )
    a.use(idempotency({ store: new MemoryStore() }))
    a.post('/r', (c) => c.json({ runs: ++runs }))
    const url = `${await serve(a)}/r`
    const k = key()
    const first = await post(url, k, { a: 1 }, [['origin', 'https://a.example']])
    const second = await post(url, k, { a: 1 }, [['origin', 'https://b.example']])
    expect(first.header('access-control-allow-origin')).toBe('https://a.example')
    expect(second.header('access-control-allow-origin')).toBe('https://b.example')
    expect(second.header('access-control-expose-headers')).toBe('Idempotent-Replayed,Retry-After')
    expect(second.header('idempotent-replayed')).toBe('true')
    const preflight = await request(url, {
      method: 'OPTIONS',
      headers: [
        ['origin', 'https://a.example'],
        ['access-control-request-method', 'POST'],
        ['access-control-request-headers', 'idempotency-key'],
      ],
    })
    expect(preflight.status).toBe(204)
    expect(preflight.header('access-control-allow-headers')).toContain('Idempotency-Key')
    expect(runs).toBe(1)
  })

  it('hashes alike with the pure-TypeScript SHA-256 and with node:crypto: two engines share one store', async () => {
    const store = new MemoryStore()
    let runs = 0
    const web = new Hono<Env>()
    web.use(idempotency({ store }))
    web.post('/r', (c) => c.json({ runs: ++runs }))
    const node = new Hono<Env>()
    node.use(idempotency({ engine: createIdempotency({ store }) }))
    node.post('/r', (c) => c.json({ runs: ++runs }))
    const [webUrl, nodeUrl] = [`${await serve(web)}/r`, `${await serve(node)}/r`]
    const k = key()
    const first = await post(webUrl, k, { amount: 1 }, [['x-user', 'u']])
    const second = await post(nodeUrl, k, { amount: 1 }, [['x-user', 'u']])
    expect(second.header('idempotent-replayed')).toBe('true')
    expect(second.body.equals(first.body)).toBe(true)
    expect((await post(nodeUrl, k, { amount: 2 })).status).toBe(422)
    expect(runs).toBe(1)
  })

  it('answers 409 instead of the aborted handler’s response when another holder took the key over', async () => {
    const lost: string[] = []
    const { url, counter } = await app(
      async (c, runs) => {
        if (runs === 1) {
          // Outlives maxExecutionMs: the signal fires, the heartbeat stops, and the lease lapses in the store.
          await sleep(1200)
          return c.json({ runs, aborted: c.get('idempotency')?.signal.aborted })
        }
        return c.json({ runs })
      },
      {
        leaseMs: 400,
        maxExecutionMs: 200,
        onEvent: (e) => e.type === 'lease_lost' && lost.push(e.reason ?? ''),
      },
    )
    const k = key()
    const first = post(url, k)
    await sleep(800)
    const takeover = await post(url, k)
    expect(takeover.json()).toEqual({ runs: 2 })
    const late = await first
    expect(late.status).toBe(409)
    expect(problemOf(late).error).toBe('REQUEST_IN_PROGRESS')
    expect(late.header('x-request-id')).toBeDefined()
    expect((await post(url, k)).json()).toEqual({ runs: 2 })
    expect(counter.runs).toBe(2)
    expect(lost).toContain('complete')
  })

  it('works on the bare fetch interface, with no Node server: what a worker or Deno.serve calls', async () => {
    let runs = 0
    const a = new Hono<Env>()
    a.use(idempotency({ store: new MemoryStore() }))
    a.post('/r', async (c) => c.json({ runs: ++runs, body: await c.req.json() }, 201))
    const call = (body: string) =>
      a.fetch(
        new Request('https://worker.example/r?x=1', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'k1' },
          body,
        }),
      )
    const first = await call('{"a":1}')
    const second = await call('{"a":1}')
    expect(first.status).toBe(201)
    expect(second.status).toBe(201)
    expect(second.headers.get('idempotent-replayed')).toBe('true')
    expect(await second.text()).toBe(await first.text())
    expect((await call('{"a":2}')).status).toBe(422)
    expect(runs).toBe(1)
  })

  it('imports no node: module, and not the node:crypto entry, anywhere below idempotency-kit/hono', () => {
    const { files, external } = importGraph('adapters/hono/index.ts')
    expect(files.some((f) => f.endsWith('core/engine.ts'))).toBe(true)
    expect(files.filter((f) => /node-crypto|create-idempotency/.test(f))).toEqual([])
    expect(external).toEqual(['hono'])
  })
  it('runs examples/hono/server.ts as documented: a charge, its replay, and 400 without a key', async () => {
    const example = await startDemoProcess({}, { script: 'examples/hono/server.ts' })
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
