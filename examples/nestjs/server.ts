/**
 * The payments route on NestJS (Express, or Fastify with PLATFORM=fastify), made idempotent with `@Idempotent()`.
 *
 *   node --conditions=idempotency-kit-source --import tsx examples/nestjs/server.ts
 *
 * A Nest app writes `@Controller('payments') class … { @Post('charge') @Idempotent({ required: true }) charge(
 * @Body() body, @IdempotencyLease() lease) {…} }` with `experimentalDecorators` on. This repository compiles with
 * standard decorators, so the same decorators are applied below as the calls that syntax compiles to.
 */
import 'reflect-metadata'
import { Body, Controller, Get, HttpException, Module, Post } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter } from '@nestjs/platform-fastify'
import type { Lease } from 'idempotency-kit'
import { IdempotencyLease, IdempotencyModule, Idempotent } from 'idempotency-kit/nestjs'
import { CardDeclinedError, FakeGateway, GatewayUnavailableError } from '../payments/gateway.js'
import { openStore } from '../payments/store-from-url.js'

interface ChargeBody {
  readonly amount: number
  readonly customerId: string
  readonly currency?: string
}

type DemoRequest = { readonly headers: Record<string, string | string[] | undefined> }

const gateway = new FakeGateway()

class PaymentsController {
  async charge(body: ChargeBody, lease: Lease) {
    if (!Number.isInteger(body.amount) || body.amount <= 0) throw new HttpException({ error: 'INVALID_REQUEST' }, 400)
    // From here the charge may happen: whatever the route answers is stored, 5xx included.
    lease.commit()
    const { amount, customerId, currency = 'usd' } = body
    try {
      return await gateway.createCharge({ amount, customerId, currency, idempotencyKey: lease.key, fence: lease.fence })
    } catch (error) {
      if (error instanceof CardDeclinedError) throw new HttpException({ error: 'card_declined' }, 402)
      // Refused before anything happened: nothing to remember, a retry runs again.
      if (error instanceof GatewayUnavailableError) lease.release()
      throw new HttpException({ error: 'gateway_unavailable' }, 502)
    }
  }

  list() {
    return { charges: gateway.charges }
  }
}
Controller('api/payments')(PaymentsController)
const method = (name: string) =>
  Object.getOwnPropertyDescriptor(PaymentsController.prototype, name) as PropertyDescriptor
Idempotent({ required: true })(PaymentsController.prototype, 'charge', method('charge'))
Post('charge')(PaymentsController.prototype, 'charge', method('charge'))
Body()(PaymentsController.prototype, 'charge', 0)
IdempotencyLease()(PaymentsController.prototype, 'charge', 1)
Get('charges')(PaymentsController.prototype, 'list', method('list'))

const opened = await openStore(process.env.STORE_URL ?? 'memory:')

class AppModule {}
Module({
  imports: [
    IdempotencyModule.forRoot({
      store: opened.store,
      markers: { 'Idempotency-Cached': ['false', 'true'] },
      // A real app scopes by the account id its auth guard sets (`req.user.id`); the demo, by bearer token.
      scope: (req: DemoRequest) => {
        const auth = req.headers.authorization
        return typeof auth === 'string' ? auth.replace(/^bearer /i, '') : undefined
      },
    }),
  ],
  controllers: [PaymentsController],
})(AppModule)

// rawBody: the fingerprint is taken from the bytes the client sent (big numbers, key order intact).
const app =
  process.env.PLATFORM === 'fastify'
    ? await NestFactory.create(AppModule, new FastifyAdapter(), { rawBody: true })
    : await NestFactory.create(AppModule, { rawBody: true })
app.enableCors({
  allowedHeaders: ['Content-Type', 'Idempotency-Key'],
  exposedHeaders: ['Idempotent-Replayed', 'Retry-After'],
})
// Closes the engine on SIGINT/SIGTERM: running charges finish and are stored, unstarted keys are released.
app.enableShutdownHooks()
await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1')
console.log(`NestJS payments example on ${await app.getUrl()} (${process.env.PLATFORM ?? 'express'})`)
