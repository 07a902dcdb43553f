// The demo's charge route for every Express subject: the same parser, validation and gateway; only the guard differs.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import { type BenchCharge, BenchGateway } from './bench-gateway.js'
import type { Counters } from './counting.js'

/** How one subject makes the charge route idempotent (or not, for the baseline). */
export interface ChargeGuard {
  /** Mounted on the payments router in order, before the route (the body parser comes first). */
  readonly middleware: readonly RequestHandler[]
  /** Runs the charge for this request and writes the response; `run` calls the gateway. */
  charge(req: Request, res: Response, run: () => Promise<BenchCharge>): Promise<void>
  /** Closes the subject's clients. */
  close(): Promise<void>
}

/** This process's CPU time so far (user + system), in µs: per-request cost that a busy machine disturbs less. */
export function cpuMicros(): number {
  const { user, system } = process.cpuUsage()
  return user + system
}

/** The gateway latency of the slow scenario: long enough that 100 duplicates overlap the first. */
export const SLOW_GATEWAY_MS = 250

/** A valid charge request body. */
export interface ChargeBody {
  amount: number
  customerId: string
  currency: string
}

/** The demo's body validation; `undefined` means 400. */
export function validateCharge(body: unknown): ChargeBody | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  const { amount, customerId, currency = 'usd' } = body as Record<string, unknown>
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) return undefined
  if (typeof customerId !== 'string' || customerId.length === 0 || customerId.length > 255) return undefined
  if (typeof currency !== 'string' || !/^[a-z]{3}$/.test(currency)) return undefined
  return { amount, customerId, currency }
}

/**
 * The bench app: `POST /api/payments/charge` behind the guard, plus `/__bench/stats` (counters and gateway
 * attempts, absolute) and `/__bench/slow?on=1|0` (switch to the slow gateway) outside the guarded router.
 */
export function createBenchApp(guard: ChargeGuard, counters: Counters) {
  const fast = new BenchGateway(0)
  const slow = new BenchGateway(SLOW_GATEWAY_MS)
  let gateway = fast
  const app = express()
  app.disable('x-powered-by')
  app.disable('etag')

  app.get('/__bench/stats', (_req, res) => {
    res.json({ ...counters, attempts: fast.attempts + slow.attempts, cpuMicros: cpuMicros() })
  })
  app.post('/__bench/slow', (req, res) => {
    gateway = req.query.on === '1' ? slow : fast
    res.json({ slow: gateway === slow })
  })

  const payments = express.Router()
  payments.use('/charge', (_req, _res, next) => {
    counters.requests++
    next()
  })
  for (const middleware of guard.middleware) payments.use(middleware)
  payments.post('/charge', async (req, res) => {
    const body = validateCharge(req.body)
    if (body === undefined) {
      res.status(400).json({ error: 'INVALID_REQUEST' })
      return
    }
    const current = gateway
    try {
      await guard.charge(req, res, () => current.createCharge(body))
    } catch {
      if (!res.headersSent) res.status(500).json({ error: 'INTERNAL_ERROR' })
    }
  })
  app.use('/api/payments', payments)
  // Express's default handler logs every error to stderr (express-idempotency's 409s go there): answer quietly.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = res.statusCode >= 400 ? res.statusCode : 500
    if (!res.headersSent) res.status(status).json({ error: error instanceof Error ? error.message : 'error' })
  })
  return app
}
