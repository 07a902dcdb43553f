// The adapter behaviour suite on Hono over @hono/node-server: the fixture translates neutral sends to Hono idioms.

import type { Server } from 'node:http'
import { setImmediate as turn } from 'node:timers/promises'
import { createAdaptorServer } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { stream as honoStream } from 'hono/streaming'
import { type IdempotencyVariables, idempotency } from 'idempotency-kit/hono'
import { type AdapterFixture, describeAdapterContract, type Send } from '../contract/adapter-contract.js'
import { closeServer, listen } from '../support/http.js'

type Env = { Variables: IdempotencyVariables }

/** A stream of the chunks with a turn of the event loop between them. */
function chunked(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = chunks[next++]
      if (chunk === undefined) return controller.close()
      if (next > 1) await turn()
      controller.enqueue(chunk)
    },
  })
}

/** Renders a neutral send the Hono way named by its idiom. */
function render(c: Context<Env>, send: Send): Response | Promise<Response> {
  if (send.kind === 'throw') throw new Error(send.message)
  for (const [name, value] of send.headers ?? []) c.header(name, value, { append: true })
  switch (send.kind) {
    case 'json':
      return c.json(send.value as object, send.status as 201)
    case 'text':
      if (send.idiom === 'new Response(string)') {
        return new Response(send.text, { status: send.status, headers: { 'content-type': send.contentType } })
      }
      return c.text(send.text, send.status as 201, { 'content-type': send.contentType })
    case 'bytes':
      if (send.idiom === 'new Response(Uint8Array)') {
        return new Response(send.bytes as Uint8Array<ArrayBuffer>, {
          status: send.status,
          headers: { 'content-type': send.contentType },
        })
      }
      return c.body(send.bytes as Uint8Array<ArrayBuffer>, send.status as 201, { 'content-type': send.contentType })
    case 'stream':
      if (send.idiom === 'stream() helper') {
        c.status(send.status as 201)
        c.header('content-type', send.contentType)
        return honoStream(c, async (s) => {
          for (const chunk of send.chunks) {
            await s.write(chunk)
            await turn()
          }
        })
      }
      return c.body(chunked(send.chunks), send.status as 201, { 'content-type': send.contentType })
    case 'flush':
      return c.body(chunked(send.chunks), send.status as 201, { 'content-type': send.contentType })
    default: {
      const unknown: never = send
      throw new TypeError(`unknown send ${String(unknown)}`)
    }
  }
}

const fixture: AdapterFixture = {
  name: 'Hono 4 (@hono/node-server)',
  idioms: {
    json: [{ name: 'c.json' }],
    text: [{ name: 'c.text' }, { name: 'new Response(string)' }],
    bytes: [{ name: 'c.body(Uint8Array)' }, { name: 'new Response(Uint8Array)' }],
    // A stream of unknown length within maxResponseBytes is buffered and replayed.
    stream: [{ name: 'c.body(ReadableStream)' }, { name: 'stream() helper' }],
    flush: [{ name: 'c.body(ReadableStream) as text/event-stream' }],
    throw: [{ name: 'throw (onError)' }],
  },
  async start(spec) {
    const app = new Hono<Env>()
    // Hono's default error response, without its console.error.
    app.onError((_error, c) => c.text('Internal Server Error', 500))
    app.use(async (c, next) => {
      c.header('x-before', crypto.randomUUID())
      await next()
    })
    app.use(
      idempotency({
        store: spec.store,
        ...spec.engineOptions,
        ...spec.routeOptions,
        scope: (c) => c.req.header('x-tenant') ?? '',
      }),
    )
    app.post('/r', async (c) => {
      const send = await spec.handler({ body: await c.req.json(), lease: c.get('idempotency') })
      return render(c, send)
    })
    const server = createAdaptorServer({ fetch: app.fetch }) as Server
    const url = `${await listen(server)}/r`
    return { url, close: () => closeServer(server) }
  },
}

describeAdapterContract(fixture)
