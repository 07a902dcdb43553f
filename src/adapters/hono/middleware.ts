/** `idempotency()` for Hono 4 on Web-standard Request/Response: runtime-neutral, no `node:` module anywhere below. */
import type { Context, MiddlewareHandler } from 'hono'
import { createEngine, type Idempotency } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import type { FingerprintBody } from '../../core/fingerprint.js'
import type { Lease } from '../../core/lease.js'
import type { IdempotencyOptions, RouteOptions } from '../../core/options.js'
import { webCrypto } from '../../core/web-crypto.js'
import { type Captured, captureResponse, toResponse } from './web-response.js'

/** The variables the middleware sets: `c.get('idempotency')` is the lease while it holds the key. */
export type IdempotencyVariables = {
  idempotency: Lease | undefined
}

/** Options of the Hono middleware: an engine (shared, or built with `node:crypto`) or the options to make one. */
export type HonoIdempotencyOptions = (IdempotencyOptions | { readonly engine: Idempotency }) &
  RouteOptions & {
    /** The authenticated principal's id (never the credential, which rotates). Default: unscoped. */
    readonly scope?: (c: Context) => string | undefined
  }

const HANDLED = Symbol.for('idempotency-kit.handled')

async function bodyOf(c: Context): Promise<FingerprintBody> {
  if (c.req.raw.body === null) return { kind: 'none' }
  if (c.req.raw.bodyUsed && Object.keys(c.req.bodyCache).length === 0) {
    // Hashing nothing here would make every body alike (design-review H10).
    throw new IdempotencyConfigError(
      'the idempotency middleware cannot read this request body: something consumed c.req.raw before it ' +
        '(read bodies through c.req.json(), c.req.text() or c.req.arrayBuffer(), which Hono caches)',
    )
  }
  // Hono caches the body: the route can still call c.req.json() afterwards.
  const bytes = new Uint8Array(await c.req.arrayBuffer())
  return bytes.byteLength === 0 ? { kind: 'none' } : { kind: 'raw', bytes }
}

function pathAndQuery(url: string): string {
  const { pathname, search } = new URL(url)
  return pathname + search
}

/**
 * The idempotency middleware. Mount it after CORS, the body limit and authentication, and before the routes;
 * app-wide plus per-route use handles a request once. Without `engine`, it hashes with a pure-TypeScript SHA-256
 * so it runs on any runtime; on Node, pass `engine: createIdempotency(…)` for `node:crypto`.
 *
 * @example
 * app.use('/api/*', idempotency({ store, required: true, scope: (c) => c.get('userId') }))
 */
export function idempotency(options: HonoIdempotencyOptions): MiddlewareHandler<{ Variables: IdempotencyVariables }> {
  const engine = 'engine' in options ? options.engine : createEngine(options, options.crypto ?? webCrypto)
  const route = engine.route(options)
  const scope = options.scope ?? (() => '')
  const headerName = engine.options.headerName

  return async function idempotencyMiddleware(c, next) {
    const marked = c as unknown as Record<symbol, boolean>
    if (marked[HANDLED]) return next()
    marked[HANDLED] = true

    const method = c.req.method.toUpperCase()
    // Buffering is only worth it for a request the engine may take (an upload without a key passes untouched).
    const keyed = route.methods.has(method) && (route.required || c.req.header(headerName) !== undefined)
    const decision = await engine.handle(
      {
        method,
        url: pathAndQuery(c.req.url),
        header: (name) => c.req.header(name),
        body: keyed ? await bodyOf(c) : { kind: 'none' },
        contentType: c.req.header('content-type'),
        scope: scope(c) ?? '',
        // The connection's signal only ends a wait; the lease has its own, which never follows the client (P12).
        signal: c.req.raw.signal,
      },
      route,
    )
    switch (decision.kind) {
      case 'pass':
        return next()
      case 'respond':
        return send(c, toResponse(decision.response, c.res.headers))
      case 'execute':
        break
      default: {
        const unknown: never = decision
        throw new TypeError(`unknown decision ${String(unknown)}`)
      }
    }

    const { execution } = decision
    // Headers set so far belong to this request only (CORS, request ids): never stored, never replayed.
    const before = new Headers(c.res.headers)
    for (const [name, value] of execution.headers) c.res.headers.set(name, value)
    c.set('idempotency', execution.lease)
    let captured: Captured
    try {
      // Hono renders a thrown Error through onError into c.res; only a non-Error throw reaches here.
      await next()
      captured = await captureResponse(c.res, before, execution.maxResponseBytes)
    } catch (error) {
      // A thrown error counts as a 500: released before commit, kept (unreplayable) after it.
      await execution.finish({ kind: 'unreplayable', status: 500 })
      throw error
    }
    // Store, then send: `complete` has answered before the Response leaves this middleware (workers included).
    const replacement = await execution.finish(captured.outcome)
    send(c, replacement === null ? captured.response : toResponse(replacement, before))
  }
}

/** Replaces c.res outright: assigning over an existing response would merge the old one's headers into it. */
function send(c: Context, response: Response): Response {
  c.res = undefined
  c.res = response
  return response
}
