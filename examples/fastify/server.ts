// The seed's charge route on Fastify 5: `node --conditions=idempotency-kit-source --import tsx examples/fastify/server.ts`
import Fastify from 'fastify'
import { MemoryStore } from 'idempotency-kit'
import { idempotency } from 'idempotency-kit/fastify'
import { FakeGateway } from '../payments/gateway.js'

const gateway = new FakeGateway()
const app = Fastify()
// Awaited, and before the routes: the plugin hooks each route as it is declared.
await app.register(idempotency, { store: new MemoryStore(), required: true })

const body = {
  type: 'object',
  required: ['amount', 'customerId'],
  properties: { amount: { type: 'integer', minimum: 1 }, customerId: { type: 'string' }, currency: { type: 'string' } },
}
app.post<{ Body: { amount: number; customerId: string; currency?: string } }>(
  '/api/payments/charge',
  { schema: { body } },
  async (request) => {
    const lease = request.idempotency
    lease?.commit() // before the call that may charge: from here the outcome is kept and replayed
    return gateway.createCharge({ currency: 'usd', ...request.body, idempotencyKey: lease?.key })
  },
)

const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
console.log(`listening on ${address}`)
