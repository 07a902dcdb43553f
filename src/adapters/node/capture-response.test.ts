// The response capture on real Express servers: on express.response, and on the response itself when a middleware
// before it replaced the response's methods (as compression does).

import type { Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setImmediate as turn } from 'node:timers/promises'
import express, { type RequestHandler } from 'express'
import { MemoryStore } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterEach, describe, expect, it } from 'vitest'

const servers: Server[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})

/** An app: `before` (if any), json(), idempotency(), then `POST /r` rendered by `route`. */
async function serve(route: RequestHandler, before?: RequestHandler) {
  const runs = { count: 0 }
  const app = express()
  if (before !== undefined) app.use(before)
  app.use(json())
  app.use(idempotency({ store: new MemoryStore(), required: true }))
  app.post('/r', (req, res, next) => {
    runs.count++
    route(req, res, next)
  })
  app.get('/plain', (_req, res) => {
    res.type('text/plain').send('not covered')
  })
  const server = app.listen(0, '127.0.0.1')
  servers.push(server)
  await new Promise((resolve) => server.once('listening', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const post = async (key: string) => {
    const response = await fetch(`${url}/r`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: '{"a":1}',
    })
    return {
      status: response.status,
      replayed: response.headers.get('idempotent-replayed'),
      body: await response.text(),
    }
  }
  return { url, runs, post }
}

/** Own properties of a response that name one of the methods a capture intercepts. */
function ownMethods(res: ServerResponse): string[] {
  return ['writeHead', 'write', 'end', 'flushHeaders'].filter((name) => Object.hasOwn(res, name))
}

describe('captureResponse on Express', () => {
  it('captures through express.response, adding no method to the response, and replays the bytes', async () => {
    const seen: string[][] = []
    const { runs, post } = await serve((_req, res) => {
      res.once('finish', () => seen.push(ownMethods(res)))
      res.type('text/plain').send('hello')
    })
    const key = crypto.randomUUID()
    const first = await post(key)
    const again = await post(key)
    expect(first).toEqual({ status: 200, replayed: null, body: 'hello' })
    expect(again).toEqual({ status: 200, replayed: 'true', body: 'hello' })
    expect(runs.count).toBe(1)
    expect(seen).toEqual([[]])
  })

  it('leaves responses it does not capture alone', async () => {
    const { url } = await serve((_req, res) => void res.send('covered'))
    const response = await fetch(`${url}/plain`)
    expect(await response.text()).toBe('not covered')
  })

  it("stores the route's bytes beneath a middleware that replaced res.write and res.end before it", async () => {
    // A compression-like wrapper: it rewrites whatever reaches its end, and hands over to the methods it found.
    const shout: RequestHandler = (_req, res, next) => {
      const end = res.end
      const write = res.write
      res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
        return (write as (...a: unknown[]) => boolean).call(this, String(chunk).toUpperCase(), ...rest)
      } as typeof res.write
      res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
        const data = typeof chunk === 'function' || chunk === undefined ? chunk : String(chunk).toUpperCase()
        return (end as (...a: unknown[]) => ServerResponse).call(this, data, ...rest)
      } as typeof res.end
      next()
    }
    let inside: string[] = []
    const { runs, post } = await serve((_req, res) => {
      inside = ownMethods(res)
      res.type('text/plain').send('hello')
    }, shout)
    const key = crypto.randomUUID()
    const first = await post(key)
    const again = await post(key)
    // The capture sat on the response itself, over the wrapper, and the replay went through the wrapper again.
    expect(inside).toEqual(['writeHead', 'write', 'end', 'flushHeaders'])
    expect(first).toEqual({ status: 200, replayed: null, body: 'HELLO' })
    expect(again).toEqual({ status: 200, replayed: 'true', body: 'HELLO' })
    expect(runs.count).toBe(1)
  })

  it('captures a streamed body when only res.end was replaced before it, its writes still inherited', async () => {
    const endOnly: RequestHandler = (_req, res, next) => {
      const end = res.end
      res.end = function (this: ServerResponse, ...args: unknown[]) {
        return (end as (...a: unknown[]) => ServerResponse).apply(this, args)
      } as typeof res.end
      next()
    }
    const { runs, post } = await serve(async (_req, res) => {
      res.type('text/plain')
      res.write('one ')
      await turn()
      res.write('two ')
      await turn()
      res.end('three')
    }, endOnly)
    const key = crypto.randomUUID()
    const first = await post(key)
    const again = await post(key)
    expect(first).toEqual({ status: 200, replayed: null, body: 'one two three' })
    expect(again).toEqual({ status: 200, replayed: 'true', body: 'one two three' })
    expect(runs.count).toBe(1)
  })
})
