// The Express adapter over a real socket, on Express 5 and Express 4: capture, replay, policy, rejections.

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import express5 from 'express'
import express4 from 'express4'
import { createIdempotency, MemoryStore, type Store } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterEach, describe, expect, it } from 'vitest'
import { fetchJson as post, snapshot } from '../support/http.js'

type ExpressFactory = typeof express5
const servers: Server[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})

async function listen(app: ReturnType<ExpressFactory>): Promise<string> {
  const server = app.listen(0, '127.0.0.1')
  servers.push(server)
  await new Promise((resolve) => server.once('listening', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const key = () => crypto.randomUUID()

for (const [major, express] of [
  ['Express 5', express5],
  ['Express 4', express4 as unknown as ExpressFactory],
] as const) {
  describe(major, () => {
    /** An app whose single route counts its runs and renders as `render` says. */
    async function app(
      render: (req: express5.Request, res: express5.Response, runs: number) => void | Promise<void>,
      options: { store?: Store; leaseMs?: number; extra?: object } = {},
    ) {
      const counter = { runs: 0 }
      const a = express()
      a.use((_req, res, next) => {
        // Set before the middleware: belongs to this request only, never stored.
        res.setHeader('x-request-id', crypto.randomUUID())
        next()
      })
      a.use(json())
      a.use(
        idempotency({
          store: options.store ?? new MemoryStore(),
          ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
          ...options.extra,
        }),
      )
      a.post('/r', async (req, res) => {
        counter.runs++
        await render(req, res, counter.runs)
      })
      a.get('/r', (_req, res) => {
        counter.runs++
        res.send('get')
      })
      return { url: `${await listen(a)}/r`, counter }
    }

    it('replays status, headers set by writeHead and the body byte for byte, running the route once', async () => {
      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      const { url, counter } = await app((_req, res) => {
        res.setHeader('x-custom', ['one', 'two'])
        res.writeHead(201, { location: '/things/1', 'content-type': 'application/octet-stream' })
        res.write(bytes.subarray(0, 100))
        res.end(bytes.subarray(100))
      })
      const k = key()
      const first = await snapshot(await post(url, k))
      const second = await snapshot(await post(url, k))
      expect(counter.runs).toBe(1)
      expect(first.status).toBe(201)
      expect(first.body.equals(bytes)).toBe(true)
      expect(second.status).toBe(201)
      expect(second.body.equals(bytes)).toBe(true)
      expect(second.headers.location).toBe('/things/1')
      expect(second.headers['content-type']).toBe('application/octet-stream')
      expect(second.headers['x-custom']).toBe('one, two')
      expect(second.headers['idempotent-replayed']).toBe('true')
      expect(first.headers['idempotent-replayed']).toBeUndefined()
      // Set before the middleware: each response has its own.
      expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id'])
    })

    it('replays res.json with its exact content type and never stores Set-Cookie', async () => {
      const { url, counter } = await app((_req, res, runs) => {
        res.cookie('session', 'secret')
        res.status(200).json({ runs, big: '9007199254740993' })
      })
      const k = key()
      const first = await snapshot(await post(url, k))
      const second = await snapshot(await post(url, k))
      expect(counter.runs).toBe(1)
      expect(second.body.equals(first.body)).toBe(true)
      expect(second.headers['content-type']).toBe(first.headers['content-type'])
      expect(first.headers['set-cookie']).toContain('session=secret')
      expect(second.headers['set-cookie']).toBeUndefined()
    })

    it('answers 422 for the same key with another body, before 409, and 409 with Retry-After while running', async () => {
      const { url, counter } = await app(async (_req, res) => {
        await sleep(400)
        res.json({ ok: true })
      })
      const k = key()
      const first = post(url, k, { a: 1 })
      await sleep(100)
      const reused = await post(url, k, { a: 2 })
      const running = await post(url, k, { a: 1 })
      expect(reused.status).toBe(422)
      expect(reused.headers.get('content-type')).toBe('application/problem+json')
      expect((await reused.json()).error).toBe('IDEMPOTENCY_KEY_REUSED')
      expect(running.status).toBe(409)
      expect(Number(running.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      const problem = await running.json()
      expect(problem).toMatchObject({ error: 'REQUEST_IN_PROGRESS', status: 409 })
      expect(problem.message).toBeTypeOf('string')
      expect((await first).status).toBe(200)
      expect(counter.runs).toBe(1)
    })

    it("waits for the running request and replays its result with onConflict: 'wait'", async () => {
      const { url, counter } = await app(
        async (_req, res, runs) => {
          await sleep(300)
          res.json({ runs })
        },
        { extra: { onConflict: 'wait' } },
      )
      const k = key()
      const results = await Promise.all([post(url, k), sleep(50).then(() => post(url, k))])
      const bodies = await Promise.all(results.map((r) => r.text()))
      expect(results.map((r) => r.status)).toEqual([200, 200])
      expect(bodies[1]).toBe(bodies[0])
      expect(results[1]?.headers.get('idempotent-replayed')).toBe('true')
      expect(counter.runs).toBe(1)
    })

    it('rejects bad keys with 400 problem+json and lets keyless and GET requests pass', async () => {
      const { url, counter } = await app((_req, res) => void res.json({ ok: true }))
      for (const bad of ['', 'x'.repeat(256), 'a, b', '"unterminated', '"bad\\n"', 'with space']) {
        const response = await post(url, bad)
        expect(response.status, JSON.stringify(bad)).toBe(400)
        expect((await response.json()).error).toBe('INVALID_IDEMPOTENCY_KEY')
      }
      expect(counter.runs).toBe(0)
      expect((await post(url, undefined)).status).toBe(200)
      expect((await fetch(url)).status).toBe(200)
      expect(counter.runs).toBe(2)
      const k = key()
      await post(url, k)
      const quoted = await post(url, `"${k}"`)
      expect(quoted.headers.get('idempotent-replayed')).toBe('true')
      expect(counter.runs).toBe(3)
    })

    it('releases a 5xx before commit (the retry runs) and stores it after commit (the retry replays)', async () => {
      const { url, counter } = await app((req, res) => {
        if (req.body.commit) req.idempotency?.commit()
        res.status(502).json({ error: 'upstream' })
      })
      const released = key()
      await post(url, released, { commit: false })
      await post(url, released, { commit: false })
      expect(counter.runs).toBe(2)
      const stored = key()
      await post(url, stored, { commit: true })
      const replay = await post(url, stored, { commit: true })
      expect(counter.runs).toBe(3)
      expect(replay.status).toBe(502)
      expect(replay.headers.get('idempotent-replayed')).toBe('true')
    })

    it('releases 429 before commit, stores a 400, and releases when the route calls lease.release()', async () => {
      const { url, counter } = await app((req, res) => {
        if (req.body.kind === 'release') {
          req.idempotency?.commit()
          req.idempotency?.release()
          return void res.status(200).json({ released: true })
        }
        res.status(req.body.kind === 'limit' ? 429 : 400).json({ kind: req.body.kind })
      })
      for (const kind of ['limit', 'bad', 'release']) {
        const k = key()
        await post(url, k, { kind })
        await post(url, k, { kind })
      }
      // limit: 2 runs, bad: 1 run, release: 2 runs
      expect(counter.runs).toBe(5)
    })

    it('keeps a response larger than maxResponseBytes as unreplayable: 410 on retry, never a second run', async () => {
      const big = 'x'.repeat(5000)
      const { url, counter } = await app((_req, res) => void res.status(201).send(big), {
        extra: { maxResponseBytes: 1000 },
      })
      const k = key()
      const first = await post(url, k)
      expect(first.status).toBe(201)
      expect(await first.text()).toBe(big)
      const retry = await post(url, k)
      expect(retry.status).toBe(410)
      expect(await retry.json()).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
      expect(counter.runs).toBe(1)
    })

    it('passes a streamed response through (flushHeaders) and answers its retry 410', async () => {
      const { url, counter } = await app(async (_req, res) => {
        res.setHeader('content-type', 'text/event-stream')
        res.flushHeaders()
        res.write('data: 1\n\n')
        await sleep(20)
        res.end('data: 2\n\n')
      })
      const k = key()
      const first = await post(url, k)
      expect(await first.text()).toBe('data: 1\n\ndata: 2\n\n')
      expect((await post(url, k)).status).toBe(410)
      expect(counter.runs).toBe(1)
    })

    it('handles a request once when mounted app-wide and per route', async () => {
      const store = new MemoryStore()
      const engine = createIdempotency({ store })
      let runs = 0
      const a = express()
      a.use(json())
      a.use(idempotency({ engine }))
      a.post('/r', idempotency({ engine }), (_req, res) => {
        runs++
        res.json({ runs })
      })
      const url = `${await listen(a)}/r`
      const k = key()
      const first = await post(url, k)
      expect(first.status).toBe(200)
      expect((await post(url, k)).headers.get('idempotent-replayed')).toBe('true')
      expect(runs).toBe(1)
    })

    it('stores the result when the client disconnects mid-request, and the retry replays it', async () => {
      const { url, counter } = await app(async (_req, res, runs) => {
        await sleep(300)
        res.json({ runs })
      })
      const k = key()
      const controller = new AbortController()
      const gone = fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': k },
        body: JSON.stringify({ a: 1 }),
        signal: controller.signal,
      }).catch(() => 'aborted')
      await sleep(100)
      controller.abort()
      expect(await gone).toBe('aborted')
      await sleep(400)
      const retry = await post(url, k)
      expect(retry.status).toBe(200)
      expect(retry.headers.get('idempotent-replayed')).toBe('true')
      expect(counter.runs).toBe(1)
    })

    it('runs a 3-second route under a 1-second lease once: the heartbeat keeps the key', async () => {
      const { url, counter } = await app(
        async (_req, res, runs) => {
          await sleep(3000)
          res.json({ runs })
        },
        { leaseMs: 1000 },
      )
      const k = key()
      const first = post(url, k)
      await sleep(1500)
      expect((await post(url, k)).status).toBe(409)
      await sleep(1000)
      expect((await post(url, k)).status).toBe(409)
      expect((await first).status).toBe(200)
      expect((await post(url, k)).headers.get('idempotent-replayed')).toBe('true')
      expect(counter.runs).toBe(1)
    })

    it('answers a fast 503 with Retry-After and does not run the route when the store hangs', async () => {
      const memory = new MemoryStore()
      const hanging: Store = {
        ...memory,
        begin: () => new Promise(() => {}),
        complete: (i) => memory.complete(i),
        release: (i) => memory.release(i),
        extend: (i) => memory.extend(i),
        get: (k) => memory.get(k),
        delete: (k, o) => memory.delete(k, o),
      }
      const { url, counter } = await app((_req, res) => void res.json({}), {
        store: hanging,
        extra: { beginTimeoutMs: 200 },
      })
      const started = performance.now()
      const response = await post(url, key())
      expect(performance.now() - started).toBeLessThan(1500)
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).toBe('2')
      expect((await response.json()).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
      expect(counter.runs).toBe(0)
    })
  })
}
