// The seed's charge route on Koa 3: `node --conditions=idempotency-kit-source --import tsx examples/koa/server.ts`
import { bodyParser } from '@koa/bodyparser'
import { MemoryStore } from 'idempotency-kit'
import { type IdempotencyState, idempotency } from 'idempotency-kit/koa'
import Koa from 'koa'
import { FakeGateway } from '../payments/gateway.js'

const gateway = new FakeGateway()
const app = new Koa<IdempotencyState>()
app.use(bodyParser()) // before: the fingerprint is taken from ctx.request.rawBody
app.use(idempotency({ store: new MemoryStore(), required: true }))

app.use(async (ctx) => {
  if (ctx.method !== 'POST' || ctx.path !== '/api/payments/charge') return
  const body = ctx.request.body as { amount: number; customerId: string; currency?: string }
  const lease = ctx.state.idempotency
  lease?.commit() // before the call that may charge: from here the outcome is kept and replayed
  ctx.status = 201
  ctx.body = await gateway.createCharge({ currency: 'usd', ...body, idempotencyKey: lease?.key })
})

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}`)
})
