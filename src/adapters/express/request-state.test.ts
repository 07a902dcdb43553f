// The adapter's per-request values on a real Express server: readable as before, none added to the request.

import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { MemoryStore } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterEach, expect, it } from 'vitest'
import { HANDLED, type Kept, RAW_BODY } from './request-state.js'

const servers: Server[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})

it('keeps the lease, the raw body and the handled mark beside the request, readable on it as before', async () => {
  const app = express()
  app.use(json())
  app.use(idempotency({ store: new MemoryStore(), required: true }))
  let seen: unknown
  app.post('/r', (req, res) => {
    const kept = req as unknown as Kept
    seen = {
      lease: typeof req.idempotency?.commit,
      raw: kept[RAW_BODY]?.toString(),
      handled: kept[HANDLED],
      own: [RAW_BODY, HANDLED, 'idempotency'].filter((key) => Object.hasOwn(req, key)),
    }
    res.json({ ok: true })
  })
  const server = app.listen(0, '127.0.0.1')
  servers.push(server)
  await new Promise((resolve) => server.once('listening', resolve))
  const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/r`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
    body: '{"amount": 12345678901234567890}',
  })
  expect(response.status).toBe(200)
  expect(seen).toEqual({ lease: 'function', raw: '{"amount": 12345678901234567890}', handled: true, own: [] })
})
