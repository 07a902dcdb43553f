/** `npm start`: the payments demo on PORT (default 3000), its store picked by STORE_URL. */
import type { AddressInfo } from 'node:net'
import { createPaymentsApp } from './app.js'
import { FakeGateway } from './gateway.js'
import { openStore } from './store-from-url.js'

function numberFromEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got ${raw}`)
  return value
}

const opened = await openStore(process.env.STORE_URL ?? process.env.REDIS_URL)
const { app, engine } = createPaymentsApp({
  store: opened.store,
  gateway: new FakeGateway(numberFromEnv('GATEWAY_LATENCY_MS', 0)),
  onEvent: (event) => {
    // What an operator wants to see: a key recovered from a crashed holder, or a holder that lost its key.
    if (event.type === 'takeover') {
      console.log(`idempotency takeover ${event.key} fence ${event.previousFence} -> ${event.fence}`)
    } else if (event.type === 'lease_lost' || event.type === 'complete_failed') {
      console.log(`idempotency ${event.type} ${event.key} fence ${event.fence} (${event.reason ?? 'store'})`)
    }
  },
  ...(process.env.IDEMPOTENCY_LEASE_MS ? { leaseMs: numberFromEnv('IDEMPOTENCY_LEASE_MS', 30_000) } : {}),
})
const server = app.listen(numberFromEnv('PORT', 3000), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo
  console.log(`payments demo listening on http://127.0.0.1:${port} (store: ${opened.description})`)
})

/** Stop accepting, let running charges finish and store their result, then release what never started. */
async function shutdown() {
  await Promise.all([new Promise((resolve) => server.close(resolve)), engine.close({ graceMs: 10_000 })])
  await opened.close()
  process.exit(0)
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
