// The Fastify 5 plugin over a real socket: the adapter behaviour suite, then Fastify's own ways (serializers, config).

import { Readable } from 'node:stream'
import { setTimeout as sleep, setImmediate as turn } from 'node:timers/promises'
import { gunzipSync, gzipSync } from 'node:zlib'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { createIdempotency, MemoryStore, type Store } from 'idempotency-kit'
import { idempotency } from 'idempotency-kit/fastify'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type AdapterFixture,
  describeAdapterContract,
  type HeaderPairs,
  type Send,
} from '../contract/adapter-contract.js'
import { problemOf, request } from '../support/http.js'

function grouped(headers: HeaderPairs = []): Map<string, string[]> {
  const map = new Map<string, string[]>()
  for (const [name, value] of headers) map.set(name, [...(map.get(name) ?? []), value])
  return map
}

function chunksOf(send: { readonly chunks: readonly Uint8Array[] }): Buffer[] {
  return send.chunks.map((chunk) => Buffer.from(chunk))
}

/** Writes past reply.send, the way a route that hijacks the reply does. */
async function writeRaw(reply: FastifyReply, send: Send & { kind: 'stream' | 'flush' }): Promise<FastifyReply> {
  reply.hijack()
  const raw = reply.raw
  const headers: Record<string, string | string[]> = { 'content-type': send.contentType }
  for (const [name, values] of grouped(send.headers))
    headers[name] = values.length === 1 ? (values[0] as string) : values
  if (send.idiom?.includes('writeHead')) {
    raw.writeHead(send.status, headers)
  } else {
    raw.statusCode = send.status
    for (const [name, value] of Object.entries(headers)) raw.setHeader(name, value)
    if (send.idiom?.includes('flushHeaders')) raw.flushHeaders()
  }
  for (const chunk of chunksOf(send)) {
    raw.write(chunk)
    await turn()
  }
  raw.end()
  return reply
}

/** Renders a neutral send the Fastify way named by its idiom. */
async function render(reply: FastifyReply, send: Send): Promise<unknown> {
  if (send.kind === 'throw') {
    if (send.idiom === 'reply.send(Error)') return reply.send(new Error(send.message))
    throw new Error(send.message)
  }
  if (send.idiom?.startsWith('reply.hijack') && (send.kind === 'stream' || send.kind === 'flush')) {
    return writeRaw(reply, send)
  }
  reply.code(send.status)
  for (const [name, values] of grouped(send.headers)) reply.header(name, values.length === 1 ? values[0] : values)
  switch (send.kind) {
    case 'json':
      return send.idiom === 'return object' ? send.value : reply.send(send.value)
    case 'text':
      reply.type(send.contentType)
      return send.idiom === 'return string' ? send.text : reply.send(send.text)
    case 'bytes':
      reply.type(send.contentType)
      if (send.idiom === 'reply.send(Uint8Array)') return reply.send(new Uint8Array(send.bytes))
      return send.idiom === 'return Buffer' ? Buffer.from(send.bytes) : reply.send(Buffer.from(send.bytes))
    case 'stream': {
      reply.type(send.contentType)
      const chunks = chunksOf(send)
      if (send.idiom === 'reply.send(Readable)') return reply.send(Readable.from(chunks))
      const web = new ReadableStream<Uint8Array>({
        async start(controller) {
          for (const chunk of chunks) {
            controller.enqueue(chunk)
            await turn()
          }
          controller.close()
        },
      })
      if (send.idiom === 'reply.send(ReadableStream)') return reply.send(web)
      return reply.send(new Response(web, { status: send.status, headers: { 'content-type': send.contentType } }))
    }
    case 'flush':
      throw new TypeError('flush is only written through reply.raw')
    default: {
      const unknown: never = send
      throw new TypeError(`unknown send ${String(unknown)}`)
    }
  }
}

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

async function listen(app: FastifyInstance, path = '/r'): Promise<string> {
  apps.push(app)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  return `${address}${path}`
}

const fastifyFixture: AdapterFixture = {
  name: 'Fastify 5',
  idioms: {
    json: [{ name: 'reply.send(object)' }, { name: 'return object' }],
    text: [{ name: 'reply.send(string)' }, { name: 'return string' }],
    bytes: [{ name: 'reply.send(Buffer)' }, { name: 'reply.send(Uint8Array)' }, { name: 'return Buffer' }],
    stream: [
      { name: 'reply.send(Readable)', replay: 'unreplayable' },
      { name: 'reply.send(ReadableStream)', replay: 'unreplayable' },
      { name: 'reply.send(Response)', replay: 'unreplayable' },
      { name: 'reply.hijack + reply.raw.write + end', replay: 'unreplayable' },
    ],
    flush: [
      { name: 'reply.hijack + reply.raw.flushHeaders + write' },
      { name: 'reply.hijack + reply.raw.writeHead(event-stream) + write' },
    ],
    throw: [{ name: 'throw (error handler)' }, { name: 'reply.send(Error)' }],
  },
  async start(spec) {
    const app = Fastify()
    app.addHook('onRequest', async (_request, reply) => {
      reply.header('x-before', crypto.randomUUID())
    })
    await app.register(idempotency, {
      store: spec.store,
      ...spec.engineOptions,
      scope: (request) => request.headers['x-tenant'] as string | undefined,
    })
    // Route options go through Fastify's per-route config.
    app.post('/r', { config: { idempotency: spec.routeOptions } }, async (request, reply) =>
      render(reply, await spec.handler({ body: request.body, lease: request.idempotency })),
    )
    const url = await listen(app)
    return { url, close: () => app.close() }
  },
}

describeAdapterContract(fastifyFixture)

function post(
  url: string,
  key: string | undefined,
  body: string,
  contentType = 'application/json',
  more: HeaderPairs = [],
) {
  const keyed: HeaderPairs = key === undefined ? [] : [['idempotency-key', key]]
  return request(url, { method: 'POST', headers: [['content-type', contentType], ...keyed, ...more], body })
}

const newKey = () => crypto.randomUUID()

describe('Fastify specifics', () => {
  it('stores what the response schema serializer produced, and replays those bytes', async () => {
    const app = Fastify()
    await app.register(idempotency, { store: new MemoryStore() })
    let runs = 0
    app.post(
      '/r',
      {
        schema: {
          response: {
            201: { type: 'object', properties: { id: { type: 'string' }, amount: { type: 'integer' } } },
          },
        },
      },
      async (_request, reply) => {
        runs++
        reply.code(201)
        return { id: `ch_${runs}`, amount: 5000, secret: 'never serialized' }
      },
    )
    const url = await listen(app)
    const key = newKey()
    const first = await post(url, key, '{"amount":5000}')
    const second = await post(url, key, '{"amount":5000}')
    expect(runs).toBe(1)
    expect(first.body.toString()).toBe('{"id":"ch_1","amount":5000}')
    expect(Buffer.compare(second.body, first.body)).toBe(0)
    expect(second.status).toBe(201)
    expect(second.header('content-type')).toBe(first.header('content-type'))
    expect(second.header('idempotent-replayed')).toBe('true')
  })

  it('fingerprints the raw bytes: integers beyond 2^53 that JSON.parse merges are different requests', async () => {
    const app = Fastify()
    await app.register(idempotency, { store: new MemoryStore() })
    let runs = 0
    app.post('/r', async () => ({ runs: ++runs }))
    const url = await listen(app)
    const key = newKey()
    expect((await post(url, key, '{"amount":9007199254740993}')).status).toBe(200)
    const other = await post(url, key, '{"amount":9007199254740992}')
    expect(other.status).toBe(422)
    expect(problemOf(other).error).toBe('IDEMPOTENCY_KEY_REUSED')
    // Whitespace and key order are not part of the request: canonical JSON from the raw text.
    const same = await post(url, key, '{ "amount" : 9007199254740993 }')
    expect(same.header('idempotent-replayed')).toBe('true')
    expect(runs).toBe(1)
  })

  it('takes per-route options from config, and config: { idempotency: false } leaves a route alone', async () => {
    const app = Fastify()
    await app.register(idempotency, { store: new MemoryStore() })
    const runs = { off: 0, required: 0, plain: 0, get: 0, child: 0 }
    app.post('/off', { config: { idempotency: false } }, async () => ({ runs: ++runs.off }))
    app.post('/required', { config: { idempotency: { required: true } } }, async () => ({ runs: ++runs.required }))
    app.post('/plain', async () => ({ runs: ++runs.plain }))
    app.get('/plain', async () => ({ runs: ++runs.get }))
    await app.register(
      async (api) => {
        api.post('/charge', async () => ({ runs: ++runs.child }))
      },
      { prefix: '/api' },
    )
    const base = (await listen(app, '')).replace(/\/$/, '')
    const key = newKey()
    await post(`${base}/off`, key, '{}')
    const again = await post(`${base}/off`, key, '{}')
    expect(again.header('idempotent-replayed')).toBeUndefined()
    expect(runs.off).toBe(2)
    const missing = await post(`${base}/required`, undefined, '{}')
    expect(missing.status).toBe(400)
    expect(problemOf(missing).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
    expect(runs.required).toBe(0)
    expect((await post(`${base}/plain`, undefined, '{}')).status).toBe(200)
    expect(runs.plain).toBe(1)
    // /off stored nothing under the key: on /plain it is a fresh key.
    await post(`${base}/plain`, key, '{}')
    expect((await post(`${base}/plain`, key, '{}')).header('idempotent-replayed')).toBe('true')
    expect(runs.plain).toBe(2)
    expect((await request(`${base}/plain`, { headers: { 'idempotency-key': key } })).status).toBe(200)
    expect(runs.get).toBe(1)
    // Routes of a child context with a prefix, declared after the plugin, are covered too.
    const childKey = newKey()
    const child = await post(`${base}/api/charge`, childKey, '{}')
    expect((await post(`${base}/api/charge`, childKey, '{}')).header('idempotent-replayed')).toBe('true')
    expect(child.json()).toEqual({ runs: 1 })
    expect(runs.child).toBe(1)
  })

  it("answers Fastify's body-parser refusals as problem+json and never stores them", async () => {
    const app = Fastify({ bodyLimit: 100 })
    await app.register(idempotency, { store: new MemoryStore() })
    let runs = 0
    app.post('/r', async () => ({ runs: ++runs }))
    const url = await listen(app)
    const key = newKey()
    const tooLarge = await post(url, key, JSON.stringify({ pad: 'x'.repeat(200) }))
    expect(tooLarge.status).toBe(413)
    expect(problemOf(tooLarge).error).toBe('REQUEST_BODY_TOO_LARGE')
    const malformed = await post(url, key, '{"a":')
    expect(malformed.status).toBe(400)
    expect(problemOf(malformed).error).toBe('MALFORMED_REQUEST_BODY')
    const unsupported = await post(url, key, '<a/>', 'application/xml')
    expect(unsupported.status).toBe(415)
    expect(problemOf(unsupported).error).toBe('UNSUPPORTED_MEDIA_TYPE')
    expect(runs).toBe(0)
    // Nothing was stored under the key: the corrected request runs.
    const ok = await post(url, key, '{"a":1}')
    expect(ok.status).toBe(200)
    expect(ok.header('idempotent-replayed')).toBeUndefined()
    expect(runs).toBe(1)
  })

  it('answers 409 in place of the route response when the lease was lost while it ran', async () => {
    const memory = new MemoryStore()
    // The store says another holder took over: extend and complete answer false.
    const lost: Store = {
      begin: (input) => memory.begin(input),
      complete: async () => false,
      release: (input) => memory.release(input),
      extend: async () => false,
      get: (key) => memory.get(key),
      delete: (key, options) => memory.delete(key, options),
    }
    const app = Fastify()
    await app.register(idempotency, { store: lost, leaseMs: 1000 })
    let aborted = false
    app.post('/r', async (request, reply) => {
      await sleep(700)
      aborted = request.idempotency?.signal.aborted ?? false
      reply.header('x-route', 'set by the route').code(201)
      return { charged: true }
    })
    const url = await listen(app)
    const response = await post(url, newKey(), '{}')
    expect(aborted).toBe(true)
    expect(response.status).toBe(409)
    expect(problemOf(response).error).toBe('REQUEST_IN_PROGRESS')
    expect(response.header('x-route')).toBeUndefined()
  })

  it('fails loudly for a route declared before the plugin loaded, rather than running it unprotected', async () => {
    const app = Fastify()
    void app.register(idempotency, { store: new MemoryStore() })
    let runs = 0
    app.post('/r', async () => ({ runs: ++runs }))
    const url = await listen(app)
    const response = await post(url, newKey(), '{}')
    expect(response.status).toBe(500)
    expect(response.body.toString()).toContain('declared before idempotency-kit was registered')
    expect(runs).toBe(0)
  })

  it('stores plain bytes under a compressor registered after it, and compresses each replay for its client', async () => {
    const app = Fastify()
    await app.register(idempotency, { store: new MemoryStore() })
    // A compressor the way compression plugins hook routes: its onSend appended in its own onRoute.
    app.addHook('onRoute', (routeOptions) => {
      const gzip = async (request: { headers: Record<string, unknown> }, reply: FastifyReply, payload: unknown) => {
        if (!String(request.headers['accept-encoding'] ?? '').includes('gzip') || typeof payload !== 'string') {
          return payload
        }
        reply.header('content-encoding', 'gzip')
        return gzipSync(payload)
      }
      const existing = routeOptions.onSend
      routeOptions.onSend = [...(Array.isArray(existing) ? existing : existing ? [existing] : []), gzip] as never
    })
    let runs = 0
    app.post('/r', async () => ({ runs: ++runs, pad: 'x'.repeat(100) }))
    const url = await listen(app)
    const key = newKey()
    const first = await post(url, key, '{}', 'application/json', [['accept-encoding', 'gzip']])
    expect(first.header('content-encoding')).toBe('gzip')
    const plain = await post(url, key, '{}')
    expect(runs).toBe(1)
    expect(plain.header('idempotent-replayed')).toBe('true')
    expect(plain.header('content-encoding')).toBeUndefined()
    expect(Buffer.compare(plain.body, gunzipSync(first.body))).toBe(0)
  })

  it('keeps a response encoded before it by an app-wide onSend hook as unreplayable, never stored encoded', async () => {
    const app = Fastify()
    app.addHook('onSend', async (_request, reply, payload) => {
      if (typeof payload !== 'string') return payload
      reply.header('content-encoding', 'gzip')
      return gzipSync(payload)
    })
    await app.register(idempotency, { store: new MemoryStore() })
    let runs = 0
    app.post('/r', async () => ({ runs: ++runs }))
    const url = await listen(app)
    const key = newKey()
    const first = await post(url, key, '{}')
    expect(gunzipSync(first.body).toString()).toBe('{"runs":1}')
    const retry = await post(url, key, '{}')
    expect(retry.status).toBe(410)
    expect(runs).toBe(1)
  })

  it('replays the stored bytes once, whatever an app-wide onSend hook before it does to every payload', async () => {
    const app = Fastify()
    // An envelope hook: it would wrap the replayed bytes a second time.
    app.addHook('onSend', async (_request, _reply, payload) =>
      typeof payload === 'string' || Buffer.isBuffer(payload) ? `{"data":${payload.toString()}}` : payload,
    )
    await app.register(idempotency, { store: new MemoryStore() })
    let runs = 0
    app.post('/r', async () => ({ runs: ++runs }))
    const url = await listen(app)
    const key = newKey()
    const first = await post(url, key, '{}')
    const second = await post(url, key, '{}')
    expect(first.body.toString()).toBe('{"data":{"runs":1}}')
    expect(second.header('idempotent-replayed')).toBe('true')
    expect(second.body.toString()).toBe(first.body.toString())
    expect(runs).toBe(1)
    // The engine's own problems are sent as they are, too.
    const reused = await post(url, key, '{"other":true}')
    expect(problemOf(reused).error).toBe('IDEMPOTENCY_KEY_REUSED')
  })

  it('shares one engine between two Fastify apps passed as { engine }', async () => {
    const engine = createIdempotency({ store: new MemoryStore() })
    let runs = 0
    const urls: string[] = []
    for (let i = 0; i < 2; i++) {
      const app = Fastify()
      await app.register(idempotency, { engine })
      app.post('/r', async () => ({ runs: ++runs }))
      urls.push(await listen(app))
    }
    const key = newKey()
    const first = await post(urls[0] ?? '', key, '{}')
    const second = await post(urls[1] ?? '', key, '{}')
    expect(second.header('idempotent-replayed')).toBe('true')
    expect(Buffer.compare(second.body, first.body)).toBe(0)
    expect(runs).toBe(1)
  })
})
