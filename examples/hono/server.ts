// The seed's charge route on Hono 4: `node --conditions=idempotency-kit-source --import tsx examples/hono/server.ts`
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { cors } from 'hono/cors'
import { MemoryStore } from 'idempotency-kit'
import { type IdempotencyVariables, idempotency } from 'idempotency-kit/hono'
import { FakeGateway } from '../payments/gateway.js'

const gateway = new FakeGateway()
const app = new Hono<{ Variables: IdempotencyVariables }>()
// CORS first: its headers belong to each response and are never stored; browsers may send and read ours.
app.use(
  cors({ allowHeaders: ['Content-Type', 'Idempotency-Key'], exposeHeaders: ['Idempotent-Replayed', 'Retry-After'] }),
)
app.use('/api/*', idempotency({ store: new MemoryStore(), required: true }))

app.post('/api/payments/charge', async (c) => {
  const body = await c.req.json<{ amount: number; customerId: string; currency?: string }>()
  const lease = c.get('idempotency')
  lease?.commit() // before the call that may charge: from here the outcome is kept and replayed
  return c.json(await gateway.createCharge({ currency: 'usd', ...body, idempotencyKey: lease?.key }), 201)
})

serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 3000), hostname: '127.0.0.1' }, ({ port }) =>
  console.log(`listening on http://127.0.0.1:${port}`),
)
