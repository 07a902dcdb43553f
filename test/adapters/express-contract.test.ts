// The adapter behaviour suite on Express 5 and Express 4: the fixture translates neutral sends to Express idioms.

import { Readable } from 'node:stream'
import { setImmediate as turn } from 'node:timers/promises'
import express5 from 'express'
import express4 from 'express4'
import { idempotency, json } from 'idempotency-kit/express'
import { type AdapterFixture, describeAdapterContract, type Send } from '../contract/adapter-contract.js'
import { closeServer, listen } from '../support/http.js'

type ExpressFactory = typeof express5

function appendAll(res: express5.Response, send: Send) {
  if (send.kind === 'throw') return
  for (const [name, value] of send.headers ?? []) res.append(name, value)
}

/** Renders a neutral send the Express way named by its idiom. */
async function render(res: express5.Response, send: Send): Promise<void> {
  appendAll(res, send)
  switch (send.kind) {
    case 'throw':
      throw new Error(send.message)
    case 'json':
      if (send.idiom === 'res.send(object)') return void res.status(send.status).send(send.value)
      return void res.status(send.status).json(send.value)
    case 'text':
      if (send.idiom === 'res.end(string)') {
        res.statusCode = send.status
        res.setHeader('content-type', send.contentType)
        return void res.end(send.text)
      }
      if (send.idiom === 'res.writeHead(status, headers) + res.end(string)') {
        res.writeHead(send.status, { 'content-type': send.contentType })
        return void res.end(send.text)
      }
      return void res.status(send.status).type(send.contentType).send(send.text)
    case 'bytes':
      if (send.idiom === 'res.end(Buffer)') {
        res.statusCode = send.status
        res.setHeader('content-type', send.contentType)
        return void res.end(Buffer.from(send.bytes))
      }
      return void res.status(send.status).type(send.contentType).send(Buffer.from(send.bytes))
    case 'stream':
      res.status(send.status).setHeader('content-type', send.contentType)
      if (send.idiom === 'Readable.pipe(res)') {
        Readable.from(send.chunks.map((chunk) => Buffer.from(chunk))).pipe(res)
        return
      }
      for (const chunk of send.chunks) {
        res.write(Buffer.from(chunk))
        await turn()
      }
      return void res.end()
    case 'flush':
      if (send.idiom === 'res.writeHead(event-stream) + res.write') {
        res.writeHead(send.status, { 'content-type': send.contentType })
      } else {
        res.status(send.status).setHeader('content-type', send.contentType)
        res.flushHeaders()
      }
      for (const chunk of send.chunks) {
        res.write(Buffer.from(chunk))
        await turn()
      }
      return void res.end()
    default: {
      const unknown: never = send
      throw new TypeError(`unknown send ${String(unknown)}`)
    }
  }
}

function expressFixture(name: string, express: ExpressFactory): AdapterFixture {
  return {
    name,
    idioms: {
      json: [{ name: 'res.json' }, { name: 'res.send(object)' }],
      text: [
        { name: 'res.send(string)' },
        { name: 'res.end(string)' },
        { name: 'res.writeHead(status, headers) + res.end(string)' },
      ],
      bytes: [{ name: 'res.send(Buffer)' }, { name: 'res.end(Buffer)' }],
      stream: [{ name: 'res.write + res.end' }, { name: 'Readable.pipe(res)' }],
      flush: [{ name: 'res.flushHeaders + res.write' }, { name: 'res.writeHead(event-stream) + res.write' }],
      throw: [{ name: 'throw (next(error), finalhandler)' }],
    },
    async start(spec) {
      const app = express()
      // finalhandler renders the stack outside production; such a 500 is sent but never stored (H13), which
      // the security suite checks. Here the throw idiom is the production one.
      app.set('env', 'production')
      app.use((_req, res, next) => {
        res.setHeader('x-before', crypto.randomUUID())
        next()
      })
      app.use(json())
      app.use(
        idempotency({
          store: spec.store,
          ...spec.engineOptions,
          ...spec.routeOptions,
          scope: (req) => req.get('x-tenant') ?? '',
        }),
      )
      app.post('/r', (req, res, next) => {
        // Express 4 does not catch a rejected handler: hand the fault to next() as its users do.
        Promise.resolve()
          .then(() => spec.handler({ body: req.body, lease: req.idempotency }))
          .then((send) => render(res, send))
          .catch(next)
      })
      const server = app.listen(0, '127.0.0.1')
      const url = `${await listen(server)}/r`
      return { url, close: () => closeServer(server) }
    },
  }
}

describeAdapterContract(expressFixture('Express 5', express5))
describeAdapterContract(expressFixture('Express 4', express4 as unknown as ExpressFactory))
