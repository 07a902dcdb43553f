// The idempotent fetch against a scripted node:http server on a real socket: keys, bodies, what is retried.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { IdempotencyConfigError } from '../core/errors.js'
import {
  backoffDelay,
  createIdempotentFetch,
  type FetchFunction,
  idempotencyInfo,
  parseRetryAfter,
  type RetryEvent,
} from './idempotent-fetch.js'

interface Seen {
  readonly method: string
  readonly headers: IncomingMessage['headers']
  readonly body: Buffer
}

interface Answer {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string
}

/** A server that records every request and answers from `script` in order (the last answer repeats). */
async function scripted(...script: Answer[]): Promise<{ url: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      seen.push({ method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks) })
      const answer = script[Math.min(seen.length, script.length) - 1] ?? { status: 200 }
      res.writeHead(answer.status, answer.headers ?? {})
      res.end(answer.body ?? '')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => close())
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, seen, close }
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

const fast = { baseDelayMs: 1, maxDelayMs: 5 } as const
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const inProgress = {
  status: 409,
  headers: { 'content-type': 'application/problem+json' },
  body: JSON.stringify({ error: 'REQUEST_IN_PROGRESS', message: 'running' }),
}

describe('parseRetryAfter', () => {
  const now = Date.parse('Sun, 06 Nov 1994 08:49:37 GMT')

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('2', now)).toBe(2000)
    expect(parseRetryAfter(' 0 ', now)).toBe(0)
  })

  it('reads the three HTTP-date forms; a past date asks for no wait', () => {
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:40 GMT', now)).toBe(3000)
    expect(parseRetryAfter('Sunday, 06-Nov-94 08:49:39 GMT', now)).toBe(2000)
    expect(parseRetryAfter('Sun Nov  6 08:49:41 1994', now)).toBe(4000)
    expect(parseRetryAfter('Sat, 05 Nov 1994 08:49:37 GMT', now)).toBe(0)
  })

  it('ignores what is neither (engines read "-1" and "1.5" as dates)', () => {
    for (const value of [null, '', 'soon', '-1', '1.5', '0x10']) expect(parseRetryAfter(value, now)).toBeUndefined()
  })
})

describe('backoffDelay', () => {
  it('doubles from the base, is capped, and is jittered over the whole range', () => {
    expect(backoffDelay(1, 100, 10_000, () => 0.5)).toBe(50)
    expect(backoffDelay(4, 100, 10_000, () => 0.5)).toBe(400)
    expect(backoffDelay(20, 100, 1_000, () => 0.5)).toBe(500)
    expect(backoffDelay(3, 100, 10_000, () => 0)).toBe(0)
  })
})

describe('options', () => {
  it('refuses options that cannot work', () => {
    expect(() => createIdempotentFetch({ maxAttempts: 0 })).toThrow(IdempotencyConfigError)
    expect(() => createIdempotentFetch({ maxAttempts: 1.5 })).toThrow(IdempotencyConfigError)
    expect(() => createIdempotentFetch({ timeoutMs: 0 })).toThrow(IdempotencyConfigError)
    expect(() => createIdempotentFetch({ baseDelayMs: -1 })).toThrow(IdempotencyConfigError)
    expect(() => createIdempotentFetch({ headerName: 'Idempotency Key' })).toThrow(IdempotencyConfigError)
  })
})

describe('keys', () => {
  it('sends one fresh UUID per logical request and keeps it across its retries', async () => {
    const server = await scripted({ status: 500 }, { status: 200 }, { status: 200 })
    const fetch = createIdempotentFetch(fast)
    const first = await fetch(server.url, { method: 'POST', body: 'a' })
    const second = await fetch(server.url, { method: 'POST', body: 'a' })
    const keys = server.seen.map((s) => s.headers['idempotency-key'])
    expect(keys[0]).toMatch(UUID)
    expect(keys[1]).toBe(keys[0])
    expect(keys[2]).toMatch(UUID)
    expect(keys[2]).not.toBe(keys[0])
    expect(idempotencyInfo(first)).toEqual({ key: keys[0], attempts: 2 })
    expect(idempotencyInfo(second)).toEqual({ key: keys[2], attempts: 1 })
  })

  it("uses the caller's key, from the header or the option, and refuses two different ones", async () => {
    const server = await scripted({ status: 200 })
    const fetch = createIdempotentFetch(fast)
    const viaHeader = await fetch(server.url, { method: 'POST', headers: { 'Idempotency-Key': 'mine-1' } })
    const viaOption = await fetch(server.url, { method: 'POST', idempotencyKey: 'mine-2' })
    const viaRequest = await fetch(new Request(server.url, { method: 'PUT', headers: { 'idempotency-key': 'mine-3' } }))
    expect(server.seen.map((s) => s.headers['idempotency-key'])).toEqual(['mine-1', 'mine-2', 'mine-3'])
    expect(idempotencyInfo(viaHeader)?.key).toBe('mine-1')
    expect(idempotencyInfo(viaOption)?.key).toBe('mine-2')
    expect(idempotencyInfo(viaRequest)?.key).toBe('mine-3')
    await expect(
      fetch(server.url, { method: 'POST', headers: { 'Idempotency-Key': 'a' }, idempotencyKey: 'b' }),
    ).rejects.toThrow(TypeError)
    expect(server.seen).toHaveLength(3)
  })

  it('keys POST, PUT and PATCH only; other methods pass through once, unless the caller keys them', async () => {
    const server = await scripted({ status: 500 })
    const fetch = createIdempotentFetch({ ...fast, maxAttempts: 2 })
    for (const method of ['post', 'PUT', 'PATCH']) await fetch(server.url, { method, body: 'x' })
    expect(server.seen.map((s) => [s.method, typeof s.headers['idempotency-key']])).toEqual([
      ['POST', 'string'],
      ['POST', 'string'],
      ['PUT', 'string'],
      ['PUT', 'string'],
      ['PATCH', 'string'],
      ['PATCH', 'string'],
    ])
    server.seen.length = 0
    const get = await fetch(server.url)
    const del = await fetch(server.url, { method: 'DELETE' })
    expect(server.seen.map((s) => [s.method, s.headers['idempotency-key']])).toEqual([
      ['GET', undefined],
      ['DELETE', undefined],
    ])
    expect(idempotencyInfo(get)).toBeUndefined()
    expect(idempotencyInfo(del)).toBeUndefined()
    server.seen.length = 0
    await fetch(server.url, { method: 'DELETE', idempotencyKey: 'k' })
    expect(server.seen.map((s) => s.headers['idempotency-key'])).toEqual(['k', 'k'])
  })

  it('keys the methods it is told to, under the header name it is told to', async () => {
    const server = await scripted({ status: 200 })
    const fetch = createIdempotentFetch({ methods: ['delete'], headerName: 'X-Request-Key' })
    await fetch(server.url, { method: 'DELETE' })
    await fetch(server.url, { method: 'POST' })
    expect(server.seen[0]?.headers['x-request-key']).toMatch(UUID)
    expect(server.seen[1]?.headers['x-request-key']).toBeUndefined()
  })
})

describe('bodies', () => {
  const kinds: Array<[string, () => BodyInit]> = [
    ['string', () => '{"amount":5000}'],
    ['Uint8Array', () => new TextEncoder().encode('bytes')],
    ['ArrayBuffer', () => new TextEncoder().encode('buffer').buffer as ArrayBuffer],
    ['URLSearchParams', () => new URLSearchParams({ a: '1', b: 'two words' })],
    ['Blob', () => new Blob(['blob'], { type: 'application/x-blob' })],
    [
      'FormData',
      () => {
        const form = new FormData()
        form.set('amount', '5000')
        form.set('file', new Blob(['content']), 'f.txt')
        return form
      },
    ],
  ]

  it.each(kinds)('a %s body is sent with the same bytes and Content-Type on every attempt', async (_kind, make) => {
    const server = await scripted({ status: 503 }, { status: 200 })
    const res = await createIdempotentFetch(fast)(server.url, { method: 'POST', body: make() })
    expect(res.status).toBe(200)
    const [first, second] = server.seen
    expect(first?.body.length).toBeGreaterThan(0)
    expect(second?.body.equals(first?.body ?? Buffer.alloc(0))).toBe(true)
    expect(second?.headers['content-type']).toBe(first?.headers['content-type'])
    // The bytes are what a plain fetch sends, boundary aside.
    const plain = new Request('http://x/', { method: 'POST', body: make() })
    expect(first?.headers['content-type']?.split(';')[0]).toBe(plain.headers.get('content-type')?.split(';')[0])
  })

  it("keeps the caller's Content-Type", async () => {
    const server = await scripted({ status: 200 })
    await createIdempotentFetch(fast)(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new TextEncoder().encode('{}'),
    })
    expect(server.seen[0]?.headers['content-type']).toBe('application/json')
  })

  it("a Request's body is read once and replayed", async () => {
    const server = await scripted({ status: 500 }, { status: 201 })
    const request = new Request(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-trace': 't' },
      body: '{"a":1}',
    })
    const res = await createIdempotentFetch(fast)(request)
    expect(res.status).toBe(201)
    expect(server.seen.map((s) => [s.body.toString(), s.headers['x-trace'], s.headers['content-type']])).toEqual([
      ['{"a":1}', 't', 'application/json'],
      ['{"a":1}', 't', 'application/json'],
    ])
  })

  const stream = (text: string) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text))
        controller.close()
      },
    })

  it('a stream body is sent once and never retried', async () => {
    const server = await scripted({ status: 503 }, { status: 200 })
    const retries: RetryEvent[] = []
    const res = await createIdempotentFetch({ ...fast, onRetry: (e) => retries.push(e) })(server.url, {
      method: 'POST',
      body: stream('streamed'),
      duplex: 'half',
    } as RequestInit)
    expect(res.status).toBe(503)
    expect(server.seen.map((s) => s.body.toString())).toEqual(['streamed'])
    expect(retries).toEqual([])
    expect(idempotencyInfo(res)?.attempts).toBe(1)
  })

  it('a body factory makes a stream retryable: a fresh stream per attempt', async () => {
    const server = await scripted({ status: 503 }, { status: 200 })
    let made = 0
    const res = await createIdempotentFetch(fast)(server.url, {
      method: 'POST',
      bodyFactory: () => {
        made++
        return stream('streamed')
      },
    })
    expect(res.status).toBe(200)
    expect(made).toBe(2)
    expect(server.seen.map((s) => s.body.toString())).toEqual(['streamed', 'streamed'])
    await expect(
      createIdempotentFetch(fast)(server.url, { method: 'POST', body: 'x', bodyFactory: () => 'y' }),
    ).rejects.toThrow(TypeError)
  })
})

describe('what is retried', () => {
  it('an unreplayed 5xx up to maxAttempts, then the last response is returned whole', async () => {
    const server = await scripted({ status: 502, body: 'bad gateway' })
    const retries: RetryEvent[] = []
    const res = await createIdempotentFetch({ ...fast, maxAttempts: 3, onRetry: (e) => retries.push(e) })(server.url, {
      method: 'POST',
    })
    expect(res.status).toBe(502)
    expect(await res.text()).toBe('bad gateway')
    expect(server.seen).toHaveLength(3)
    expect(idempotencyInfo(res)?.attempts).toBe(3)
    expect(retries.map((e) => [e.attempt, e.cause.kind])).toEqual([
      [1, 'status'],
      [2, 'status'],
    ])
  })

  it('never a replayed response, even a stored 500', async () => {
    const server = await scripted({ status: 500, headers: { 'idempotent-replayed': 'true' } })
    const res = await createIdempotentFetch(fast)(server.url, { method: 'POST' })
    expect(res.status).toBe(500)
    expect(server.seen).toHaveLength(1)
  })

  it('409 REQUEST_IN_PROGRESS, but not a route’s own 409', async () => {
    const running = await scripted(inProgress, { status: 200, body: 'done' })
    const res = await createIdempotentFetch(fast)(running.url, { method: 'POST' })
    expect(await res.text()).toBe('done')
    expect(running.seen).toHaveLength(2)

    const conflict = await scripted({
      status: 409,
      headers: { 'content-type': 'application/problem+json' },
      body: JSON.stringify({ error: 'VERSION_CONFLICT' }),
    })
    const own = await createIdempotentFetch(fast)(conflict.url, { method: 'POST' })
    expect(own.status).toBe(409)
    expect(await own.json()).toEqual({ error: 'VERSION_CONFLICT' })
    expect(conflict.seen).toHaveLength(1)
  })

  it.each([400, 401, 404, 410, 422, 429])('never a %i', async (status) => {
    const server = await scripted({ status, headers: { 'retry-after': '1' } }, { status: 200 })
    const res = await createIdempotentFetch(fast)(server.url, { method: 'POST' })
    expect(res.status).toBe(status)
    expect(server.seen).toHaveLength(1)
  })

  it('network errors, with the same key, until maxAttempts; the last error is thrown with the key', async () => {
    const server = await scripted({ status: 200 })
    await server.close()
    const sent: string[] = []
    const counting: FetchFunction = (input, init) => {
      sent.push(new Request(input, init).headers.get('idempotency-key') ?? '')
      return fetch(input, init)
    }
    const error = await createIdempotentFetch({ ...fast, maxAttempts: 4, fetch: counting })(server.url, {
      method: 'POST',
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(sent).toHaveLength(4)
    expect(new Set(sent).size).toBe(1)
    expect(idempotencyInfo(error)).toEqual({ key: sent[0], attempts: 4 })
  })

  it('waits at least what Retry-After asks, and gives up at once when that ends past timeoutMs', async () => {
    const server = await scripted({ status: 503, headers: { 'retry-after': '1' } }, { status: 200 })
    const retries: RetryEvent[] = []
    const res = await createIdempotentFetch({ ...fast, onRetry: (e) => retries.push(e) })(server.url, {
      method: 'POST',
    })
    expect(res.status).toBe(200)
    expect(retries[0]?.delayMs).toBeGreaterThanOrEqual(1000)
    expect(retries[0]?.cause).toEqual({ kind: 'status', status: 503, retryAfterMs: 1000 })

    const later = await scripted({ status: 503, headers: { 'retry-after': '60' } }, { status: 200 })
    const startedAt = performance.now()
    const gaveUp = await createIdempotentFetch({ ...fast, timeoutMs: 5_000 })(later.url, { method: 'POST' })
    expect(gaveUp.status).toBe(503)
    expect(later.seen).toHaveLength(1)
    expect(performance.now() - startedAt).toBeLessThan(4_000)
  })

  it('an onRetry that throws changes nothing', async () => {
    const server = await scripted({ status: 500 }, { status: 200 })
    const res = await createIdempotentFetch({
      ...fast,
      onRetry: () => {
        throw new Error('listener bug')
      },
    })(server.url, { method: 'POST' })
    expect(res.status).toBe(200)
  })
})
