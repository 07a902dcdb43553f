// The adapter behaviour suite on Koa: the fixture translates neutral sends to Koa idioms.

import { createServer } from 'node:http'
import { Readable } from 'node:stream'
import { setImmediate as turn } from 'node:timers/promises'
import { bodyParser } from '@koa/bodyparser'
import { type IdempotencyState, idempotency } from 'idempotency-kit/koa'
import Koa, { type ParameterizedContext } from 'koa'
import { type AdapterFixture, describeAdapterContract, type Send } from '../contract/adapter-contract.js'
import { closeServer, listen } from '../support/http.js'

type Ctx = ParameterizedContext<IdempotencyState>

/** The chunks as a Node stream, with a turn of the event loop between them. */
function nodeStream(chunks: readonly Uint8Array[]): Readable {
  return Readable.from(
    (async function* () {
      for (const [i, chunk] of chunks.entries()) {
        if (i > 0) await turn()
        yield Buffer.from(chunk)
      }
    })(),
  )
}

/** The chunks as a Web stream, with a turn of the event loop between them. */
function webStream(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
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

/** Renders a neutral send the Koa way named by its idiom. */
function render(ctx: Ctx, send: Send): void {
  if (send.kind === 'throw') throw new Error(send.message)
  for (const [name, value] of send.headers ?? []) ctx.append(name, value)
  ctx.status = send.status
  switch (send.kind) {
    case 'json':
      ctx.body = send.value
      return
    case 'text':
      ctx.type = send.contentType
      ctx.body = send.text
      return
    case 'bytes':
      if (send.idiom === 'ctx.body = Blob') {
        ctx.body = new Blob([send.bytes as Uint8Array<ArrayBuffer>], { type: send.contentType })
        return
      }
      ctx.type = send.contentType
      ctx.body = Buffer.from(send.bytes)
      return
    case 'stream':
      ctx.type = send.contentType
      ctx.body = send.idiom === 'ctx.body = ReadableStream' ? webStream(send.chunks) : nodeStream(send.chunks)
      return
    case 'flush':
      ctx.type = send.contentType
      ctx.flushHeaders()
      ctx.body = nodeStream(send.chunks)
      return
    default: {
      const unknown: never = send
      throw new TypeError(`unknown send ${String(unknown)}`)
    }
  }
}

const fixture: AdapterFixture = {
  name: 'Koa 3',
  idioms: {
    json: [{ name: 'ctx.body = object' }],
    text: [{ name: 'ctx.body = string' }],
    bytes: [{ name: 'ctx.body = Buffer' }, { name: 'ctx.body = Blob' }],
    // Koa pipes a stream body after every middleware returned: the adapter passes it through unstored.
    stream: [
      { name: 'ctx.body = Readable', replay: 'unreplayable' },
      { name: 'ctx.body = ReadableStream', replay: 'unreplayable' },
    ],
    flush: [{ name: 'ctx.flushHeaders() + ctx.body = Readable' }],
    throw: [{ name: 'throw (ctx.onerror)' }],
  },
  async start(spec) {
    const app = new Koa<IdempotencyState>()
    app.silent = true
    app.use(async (ctx, next) => {
      ctx.set('x-before', crypto.randomUUID())
      await next()
    })
    app.use(bodyParser())
    app.use(
      idempotency({
        store: spec.store,
        ...spec.engineOptions,
        ...spec.routeOptions,
        scope: (ctx) => ctx.get('x-tenant'),
      }),
    )
    app.use(async (ctx) => {
      if (ctx.method !== 'POST' || ctx.path !== '/r') return
      render(ctx, await spec.handler({ body: ctx.request.body, lease: ctx.state.idempotency }))
    })
    const server = createServer(app.callback())
    const url = `${await listen(server)}/r`
    return { url, close: () => closeServer(server) }
  },
}

describeAdapterContract(fixture)
