// express-idempotency as its README wires it, on its default in-memory adapter (its Redis adapter is not installed).

import type { RequestHandler } from 'express'
import { getSharedIdempotencyService, idempotency } from 'express-idempotency'
import type { ChargeGuard } from '../bench-app.js'

/**
 * The guard: `idempotency()` before the route, and the route returns early on `isHit(req)` (the middleware sends
 * the replay and still calls `next()`). The in-memory adapter scans an array on every lookup and never expires.
 */
export function expressIdempotencyGuard(): ChargeGuard {
  const middleware = idempotency() as unknown as RequestHandler
  return {
    middleware: [middleware],
    charge: async (req, res, run) => {
      if (getSharedIdempotencyService().isHit(req as never)) return
      res.json(await run())
    },
    close: async () => {},
  }
}
