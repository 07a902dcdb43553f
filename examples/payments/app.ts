/** The seed's payments API on idempotency-kit: POST /api/payments/charge, GET /api/payments/charges. */
import express, { type NextFunction, type Request, type Response } from 'express'
import { createIdempotency, type IdempotencyEvent, type Store } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { CardDeclinedError, FakeGateway, GatewayUnavailableError, StaleFenceError } from './gateway.js'

export interface PaymentsAppOptions {
  readonly store: Store
  readonly gateway?: FakeGateway
  readonly leaseMs?: number
  /** Called for every idempotency outcome (the server logs takeovers and lost leases). */
  readonly onEvent?: (event: IdempotencyEvent) => void
  /** Largest JSON body accepted. Default 16 KiB. */
  readonly bodyLimit?: number | string
}

function problem(res: Response, status: number, error: string, message: string, extra: object = {}): void {
  res
    .status(status)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        type: `urn:payments-demo:${error}`,
        title: error,
        status,
        detail: message,
        error,
        message,
        ...extra,
      }),
    )
}

interface ChargeBody {
  amount: number
  customerId: string
  currency: string
}

function validate(body: unknown): ChargeBody | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'The body must be a JSON object.'
  const { amount, customerId, currency = 'usd' } = body as Record<string, unknown>
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) {
    return 'amount must be a positive integer in minor units (5000 is 50.00).'
  }
  if (typeof customerId !== 'string' || customerId.length === 0 || customerId.length > 255) {
    return 'customerId must be a non-empty string.'
  }
  if (typeof currency !== 'string' || !/^[a-z]{3}$/.test(currency)) {
    return 'currency must be a three-letter lower-case ISO 4217 code such as "usd".'
  }
  return { amount, customerId, currency }
}

/** The tenant is the bearer token here; a real app scopes by the account id its authentication resolves. */
function tenantOf(req: Request): string | undefined {
  const header = req.headers.authorization
  if (header === undefined) return ''
  const match = /^Bearer ([!-~]{1,512})$/i.exec(header)
  return match?.[1]
}

/** Builds the demo app over a store; the caller listens. */
export function createPaymentsApp(options: PaymentsAppOptions) {
  const gateway = options.gateway ?? new FakeGateway()
  const app = express()
  app.disable('x-powered-by')

  const payments = express.Router()
  // Authentication, then the body parser, then idempotency, then the routes: the documented mount order.
  payments.use((req, res, next) => {
    if (tenantOf(req) === undefined) {
      return problem(res, 401, 'INVALID_AUTHORIZATION', 'Authorization must be "Bearer <token>".')
    }
    next()
  })
  payments.use(json({ limit: options.bodyLimit ?? '16kb', requireJson: true }))
  const engine = createIdempotency({
    store: options.store,
    ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
    markers: { 'Idempotency-Cached': ['false', 'true'] },
    ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
  })
  payments.use(idempotency({ engine, required: true, scope: tenantOf }))

  payments.post('/charge', async (req, res, next) => {
    const body = validate(req.body)
    if (typeof body === 'string') return problem(res, 400, 'INVALID_REQUEST', body)
    const lease = req.idempotency
    try {
      // The commit point comes BEFORE the call that may charge: if its reply is lost, the outcome
      // is kept and a retry replays it rather than charging twice.
      lease?.commit()
      lease?.assertHeld()
      // The key makes the gateway return the same charge to a retry; the fence lets it refuse a holder
      // that lost its lease while a newer one runs.
      const charge = await gateway.createCharge({ ...body, idempotencyKey: lease?.key, fence: lease?.fence })
      res.json(charge)
    } catch (error) {
      if (error instanceof GatewayUnavailableError) {
        // Nothing happened downstream: do not keep this outcome, a retry runs again.
        lease?.release()
        return problem(res, 502, 'GATEWAY_UNAVAILABLE', 'The payment gateway is unreachable; retry later.')
      }
      if (error instanceof CardDeclinedError) return problem(res, 402, 'card_declined', error.message)
      if (error instanceof StaleFenceError) {
        // A newer holder owns this key: its result, not ours, is what a retry gets.
        return problem(res, 409, 'REQUEST_IN_PROGRESS', 'This request was taken over by a newer attempt; retry.')
      }
      next(error)
    }
  })

  payments.get('/charges', (_req, res) => {
    res.json({ charges: gateway.charges, attempts: gateway.attempts })
  })

  app.use('/api/payments', payments)
  app.use((_req: Request, res: Response) => problem(res, 404, 'NOT_FOUND', 'No such route.'))
  // No stack traces in responses: after commit a 500 is stored and replayed.
  app.use((_error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    problem(res, 500, 'INTERNAL_ERROR', 'The server failed to process the request.')
  })
  return { app, gateway, engine }
}
