/** `idempotency()` for Express 4 and 5: translate the request, ask the engine, render, capture. */
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import type { Decision, Idempotency } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import type { FingerprintBody } from '../../core/fingerprint.js'
import { isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import type { Lease } from '../../core/lease.js'
import type { IdempotencyOptions, RouteOptions } from '../../core/options.js'
import { createIdempotency } from '../../create-idempotency.js'
import { captureResponse, interceptOnPrototype, type ResponseMethods } from '../node/capture-response.js'
import { hasBody, NodeEngineRequest } from '../node/engine-request.js'
import { sendResponse } from '../node/send-response.js'
import { HANDLED, type Kept, keepBesideRequests, RAW_BODY } from './request-state.js'

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

function bodyOf(req: Request): FingerprintBody {
  const raw = (req as Kept)[RAW_BODY]
  if (raw !== undefined) return { kind: 'raw', bytes: raw }
  if (!hasBody(req.headers)) return { kind: 'none' }
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
  const scope = options.scope
  // Every app's responses inherit from express.response: intercepting there captures a response without adding
  // properties to it (see capture-response.ts for why that matters on Express).
  interceptOnPrototype(express.response as unknown as ResponseMethods)
  keepBesideRequests(express.request)
  // Only a wait needs to know the client left; an AbortController per request costs a DOMException.
  const wait = route.onConflict === 'wait'

  return function idempotencyMiddleware(req: Request, res: Response, next: NextFunction): void {
    const marked = req as Kept
    if (marked[HANDLED]) {
      next()
      return
    }
    marked[HANDLED] = true
    let request: NodeEngineRequest
    try {
      request = new NodeEngineRequest(
        req.method,
        req.originalUrl,
        req.headers,
        bodyOf(req),
        scope === undefined ? '' : (scope(req) ?? ''),
        wait ? clientGone(res) : undefined,
      )
    } catch (error) {
      next(error)
      return
    }
    // Express 4 does not catch a rejected middleware promise: every fault goes to next().
    engine.handle(request, route).then((decision) => {
      try {
        decide(decision, req, res, next)
      } catch (error) {
        next(error)
      }
    }, next)
  }
}

/** Renders the engine's decision, or arms the capture and runs the route. */
function decide(decision: Decision, req: Request, res: Response, next: NextFunction): void {
  switch (decision.kind) {
    case 'pass':
      next()
      return
    case 'respond':
      sendResponse(res, decision.response)
      return
    case 'execute':
      captureResponse(res, decision.execution)
      req.idempotency = decision.execution.lease
      next()
      return
    default: {
      const unknown: never = decision
      next(new TypeError(`unknown decision ${String(unknown)}`))
    }
  }
}
