/** `idempotency()` for Express 4 and 5: translate the request, ask the engine, render, capture. */
import type { IncomingMessage } from 'node:http'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import type { Idempotency } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import type { FingerprintBody } from '../../core/fingerprint.js'
import { isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import type { Lease } from '../../core/lease.js'
import type { IdempotencyOptions, RouteOptions } from '../../core/options.js'
import { createIdempotency } from '../../create-idempotency.js'
import { captureResponse } from '../node/capture-response.js'
import { sendResponse } from '../node/send-response.js'
import { RAW_BODY } from './raw-body.js'

declare global {
  namespace Express {
    interface Request {
      /** The lease of this execution, when the idempotency middleware holds the key for it. */
      idempotency?: Lease
    }
  }
}

/** Options of the Express middleware: an engine (shared) or the options to make one, plus route options. */
export type ExpressIdempotencyOptions = (IdempotencyOptions | { readonly engine: Idempotency }) &
  RouteOptions & {
    /** The authenticated principal's id (never the credential, which rotates). Default: unscoped. */
    readonly scope?: (req: Request) => string | undefined
  }

const HANDLED = Symbol.for('idempotency-kit.handled')

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
}

function bodyOf(req: Request): FingerprintBody {
  const raw = (req as unknown as Record<symbol, Buffer | undefined>)[RAW_BODY]
  if (raw !== undefined) return { kind: 'raw', bytes: raw }
  if (!hasBody(req)) return { kind: 'none' }
  // Fallback: a parsed JSON value (big numbers may already have collapsed; prefer json() from this module).
  if (req.body !== undefined && isJsonMediaType(mediaTypeOf(req.headers['content-type']))) {
    return { kind: 'parsed', value: req.body }
  }
  // Hashing `{}` or undefined here would make every body alike (design-review H10).
  throw new IdempotencyConfigError(
    'the idempotency middleware cannot see this request body: mount json() from idempotency-kit/express ' +
      '(or pass keepRawBody as the verify option of your body parser) before it',
  )
}

/** Aborts when the response closes, before or without being answered: the client went away. */
function clientGone(res: Response): AbortSignal {
  const controller = new AbortController()
  res.once('close', () => controller.abort())
  return controller.signal
}

/**
 * The idempotency middleware. Mount it after compression, CORS, the body parser and authentication,
 * and before the routes. App-wide plus per-route use handles a request once.
 *
 * @example
 * app.use(json())
 * app.use('/api/payments', idempotency({ store, required: true, scope: (req) => req.user?.id }))
 */
export function idempotency(options: ExpressIdempotencyOptions): RequestHandler {
  const engine = 'engine' in options ? options.engine : createIdempotency(options)
  const route = engine.route(options)
  const scope = options.scope ?? (() => '')

  return function idempotencyMiddleware(req: Request, res: Response, next: NextFunction): void {
    const marked = req as unknown as Record<symbol, boolean>
    if (marked[HANDLED]) {
      next()
      return
    }
    marked[HANDLED] = true
    // Express 4 does not catch a rejected middleware promise: hand every fault to next().
    run().catch(next)

    async function run(): Promise<void> {
      const decision = await engine.handle(
        {
          method: req.method,
          url: req.originalUrl,
          header: (name) => {
            const value = req.headers[name]
            return Array.isArray(value) ? value.join(', ') : value
          },
          body: bodyOf(req),
          contentType: req.headers['content-type'],
          scope: scope(req) ?? '',
          // Only a wait needs to know the client left; an AbortController per request costs a DOMException.
          ...(route.onConflict === 'wait' ? { signal: clientGone(res) } : {}),
        },
        route,
      )
      switch (decision.kind) {
        case 'pass':
          return next()
        case 'respond':
          return sendResponse(res, decision.response)
        case 'execute':
          captureResponse(res, decision.execution)
          req.idempotency = decision.execution.lease
          return next()
        default: {
          const unknown: never = decision
          throw new TypeError(`unknown decision ${String(unknown)}`)
        }
      }
    }
  }
}
