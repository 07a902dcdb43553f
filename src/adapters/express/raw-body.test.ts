// json() on a real Express server: the plain JSON body it reads itself answers as body-parser's path does.

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import express4 from 'express4'
import { json } from 'idempotency-kit/express'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Kept, RAW_BODY } from './request-state.js'

const servers: Server[] = []
let url = ''

beforeEach(async () => {
  const app = express()
  app.use(json({ limit: '1kb' }))
  app.post('/r', (req, res) => {
    res.json({ body: req.body, raw: (req as unknown as Kept)[RAW_BODY]?.toString('latin1') ?? null })
  })
  const server = app.listen(0, '127.0.0.1')
  servers.push(server)
  await new Promise((resolve) => server.once('listening', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/r`
})

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})

/** Posts `body` with a Content-Length (read by json() itself) or chunked (read by body-parser). */
async function post(body: string | Uint8Array, framing: 'length' | 'chunked', contentType = 'application/json') {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': contentType },
    ...(framing === 'length'
      ? { body: bytes }
      : {
          body: new ReadableStream({
            start(controller) {
              controller.enqueue(bytes)
              controller.close()
            },
          }),
          duplex: 'half',
        }),
  } as RequestInit)
  return { status: response.status, type: response.headers.get('content-type'), body: await response.json() }
}

describe('json()', () => {
  const cases: Array<[string, string | Uint8Array, string?]> = [
    ['an object, its big number kept in the raw bytes', '{"amount": 12345678901234567890}'],
    ['an array with charset=utf-8', '[1, "é"]', 'application/json; charset=utf-8'],
    ['leading whitespace', ' \n\t{"a":1}'],
    ['a byte order mark', new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"a":1}')])],
    ['malformed JSON', '{"a":'],
    ['a JSON value that is not an object or array (strict)', '123'],
    ['__proto__ as an own key', '{"__proto__": {"polluted": true}}'],
  ]
  for (const [name, body, contentType] of cases) {
    it(`answers ${name} as body-parser does`, async () => {
      const plain = await post(body, 'length', contentType)
      const parsed = await post(body, 'chunked', contentType)
      expect(plain).toEqual(parsed)
    })
  }

  it('refuses malformed JSON with problem+json, and the connection serves the next request', async () => {
    const refused = await post('{"a":', 'length')
    expect(refused.status).toBe(400)
    expect(refused.type).toContain('application/problem+json')
    const next = await post('{"a":1}', 'length')
    expect(next).toMatchObject({ status: 200, body: { body: { a: 1 }, raw: '{"a":1}' } })
  })

  it('leaves a body over the limit to body-parser: 413', async () => {
    const big = JSON.stringify({ pad: 'x'.repeat(2048) })
    expect((await post(big, 'length')).status).toBe(413)
  })

  it('marks the body parsed, so a JSON parser after it skips the request, on Express 5 and 4', async () => {
    for (const framework of [express, express4 as unknown as typeof express]) {
      const app = framework()
      app.use(json())
      app.use(framework.json())
      app.post('/twice', (req, res) => void res.json(req.body))
      const server = app.listen(0, '127.0.0.1')
      servers.push(server)
      await new Promise((resolve) => server.once('listening', resolve))
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/twice`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      })
      expect({ status: response.status, body: await response.json() }).toEqual({ status: 200, body: { a: 1 } })
    }
  })
})
