// The Fastify subjects: the demo route on bare Fastify, and behind idempotency-kit/fastify once that adapter exists.
import type { Server } from 'node:http'
import type { Store } from 'idempotency-kit'
import { cpuMicros, SLOW_GATEWAY_MS, validateCharge } from './bench-app.js'
import { BenchGateway } from './bench-gateway.js'
import type { Counters } from './counting.js'

/** Starts a Fastify subject on a free loopback port and returns its server. */
export async function startFastifySubject(
  id: string,
  counters: Counters,
  openStore: (kind: string) => Promise<Store>,
  cleanups: Array<() => Promise<void> | void>,
): Promise<Server> {
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false })
  const fast = new BenchGateway(0)
  const slow = new BenchGateway(SLOW_GATEWAY_MS)
  let gateway = fast

  app.get('/__bench/stats', async () => ({
    ...counters,
    attempts: fast.attempts + slow.attempts,
    cpuMicros: cpuMicros(),
  }))
  app.post('/__bench/slow', async (req) => {
    gateway = (req.query as { on?: string }).on === '1' ? slow : fast
    return { slow: gateway === slow }
  })

  await app.register(async (payments) => {
    payments.addHook('onRequest', async () => {
      counters.requests++
    })
    if (id === 'fastify-kit-memory') {
      await registerKit(payments, await openStore('memory'), cleanups)
    } else if (id !== 'fastify-baseline') {
      throw new Error(`unknown Fastify subject ${id}`)
    }
    payments.post('/api/payments/charge', async (req, reply) => {
      const body = validateCharge(req.body)
      if (body === undefined) return reply.code(400).send({ error: 'INVALID_REQUEST' })
      const lease = (req as unknown as { idempotency?: { commit(): void; assertHeld(): void } }).idempotency
      lease?.commit()
      lease?.assertHeld()
      return gateway.createCharge(body)
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  cleanups.push(() => app.close())
  return app.server
}

/** The Fastify adapter is written by another engineer; loaded by name so this file compiles without it. */
async function registerKit(
  scope: { register(plugin: unknown, options: unknown): unknown },
  store: Store,
  cleanups: Array<() => Promise<void> | void>,
): Promise<void> {
  const specifier = 'idempotency-kit/fastify'
  const adapter = (await import(specifier)) as Record<string, unknown>
  const { createIdempotency } = await import('idempotency-kit')
  const engine = createIdempotency({ store, markers: { 'Idempotency-Cached': ['false', 'true'] } })
  cleanups.push(() => engine.close({ graceMs: 1000 }))
  const plugin = adapter.idempotency ?? adapter.fastifyIdempotency ?? adapter.idempotencyPlugin
  if (plugin === undefined) throw new Error(`idempotency-kit/fastify exports ${Object.keys(adapter).join(', ')}`)
  await scope.register(plugin, { engine, required: true })
}
