/** `idempotency()` for Koa 2 and 3: translate the context, ask the engine, render, settle the body, store, send. */
import type { Context, Middleware } from 'koa'
import type { Execution, Idempotency } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import { type FingerprintBody, isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import type { Lease } from '../../core/lease.js'
import type { IdempotencyOptions, RouteOptions } from '../../core/options.js'
import { createIdempotency } from '../../create-idempotency.js'
import { captureResponse } from '../node/capture-response.js'
import { hasBody } from '../node/engine-request.js'
import { clearRouteHeaders, renderResponse, type Settled, settleResponse, snapshotHeaders } from './koa-response.js'

/** What the middleware adds to `ctx.state`: the lease while it holds the key. */
export interface IdempotencyState {
  idempotency?: Lease
}

/** Options of the Koa middleware: an engine (shared) or the options to make one, plus route options. */
export type KoaIdempotencyOptions = (IdempotencyOptions | { readonly engine: Idempotency }) &
  RouteOptions & {
    /** The authenticated principal's id (never the credential, which rotates). Default: unscoped. */
    readonly scope?: (ctx: Context) => string | undefined
  }

const HANDLED = Symbol.for('idempotency-kit.handled')
const encoder = new TextEncoder()

function rawOf(value: unknown): FingerprintBody | undefined {
  if (typeof value === 'string') return value === '' ? { kind: 'none' } : { kind: 'raw', bytes: encoder.encode(value) }
  if (value instanceof Uint8Array) return value.byteLength === 0 ? { kind: 'none' } : { kind: 'raw', bytes: value }
  return undefined
}

function bodyOf(ctx: Context): FingerprintBody {
  // @koa/bodyparser (and koa-bodyparser) keep the text they parsed as rawBody; `patchNode` puts it on ctx.req.
  const raw = rawOf((ctx.request as { rawBody?: unknown }).rawBody) ?? rawOf((ctx.req as { rawBody?: unknown }).rawBody)
  if (raw !== undefined) return raw
  if (!hasBody(ctx.req.headers)) return { kind: 'none' }
  // Fallback: a parsed JSON value (big numbers may already have collapsed).
  const parsed = (ctx.request as { body?: unknown }).body
  if (parsed !== undefined && isJsonMediaType(mediaTypeOf(ctx.get('content-type') || undefined))) {
    return { kind: 'parsed', value: parsed }
  }
  // Hashing `{}` or undefined here would make every body alike (design-review H10).
  throw new IdempotencyConfigError(
    'the idempotency middleware cannot see this request body: mount bodyParser() from @koa/bodyparser before it, ' +
      'with this media type in enableTypes, so that ctx.request.rawBody holds the bytes',
  )
}

/**
 * The idempotency middleware. Mount it after compression, CORS, the body parser and authentication, and before
 * the routes; the lease is `ctx.state.idempotency`. App-wide plus per-route use handles a request once.
 *
 * @example
 * app.use(bodyParser())
 * app.use(idempotency({ store, required: true, scope: (ctx) => ctx.state.user?.id }))
 */
export function idempotency(options: KoaIdempotencyOptions): Middleware<IdempotencyState> {
  const engine = 'engine' in options ? options.engine : createIdempotency(options)
  const route = engine.route(options)
  const scope = options.scope ?? (() => '')

  return async function idempotencyMiddleware(ctx, next) {
    const marked = ctx as unknown as Record<symbol, boolean>
    if (marked[HANDLED]) return next()
    marked[HANDLED] = true

    const controller = new AbortController()
    ctx.res.once('close', () => controller.abort())
    const decision = await engine.handle(
      {
        method: ctx.method,
        url: ctx.originalUrl,
        header: (name) => {
          const value = ctx.req.headers[name]
          return Array.isArray(value) ? value.join(', ') : value
        },
        body: bodyOf(ctx),
        contentType: ctx.req.headers['content-type'],
        scope: scope(ctx) ?? '',
        signal: controller.signal,
      },
      route,
    )
    switch (decision.kind) {
      case 'pass':
        return next()
      case 'respond':
        return renderResponse(ctx, decision.response)
      case 'execute':
        break
      default: {
        const unknown: never = decision
        throw new TypeError(`unknown decision ${String(unknown)}`)
      }
    }

    const { execution } = decision
    // Headers set so far belong to this request only (CORS, request ids): never stored, never replayed.
    const before = snapshotHeaders(ctx)
    for (const [name, value] of execution.headers) ctx.set(name, value)
    ctx.state.idempotency = execution.lease
    let settled: Settled
    try {
      await next()
      settled = await settleResponse(ctx, before, execution.maxResponseBytes)
    } catch (error) {
      captureThrown(ctx, execution, error)
      throw error
    }
    // Store, then send: Koa writes ctx.body only after every middleware returned.
    const replacement = await execution.finish(settled.outcome)
    if (replacement !== null) {
      clearRouteHeaders(ctx, before)
      renderResponse(ctx, replacement)
    }
  }
}

/**
 * Koa renders a throw after this middleware has returned (its `ctx.onerror`, or the app's error middleware
 * mounted outside this one), so the bytes are captured where they are written, stored, then sent, as the Express
 * adapter does; the policy then applies to the status the client gets. Koa writes nothing once the client is gone
 * or the headers are out: the record is then finished as unreplayable, or the key would stay held.
 */
function captureThrown(ctx: Context, execution: Execution, error: unknown): void {
  let finished = false
  const finish: Execution['finish'] = (outcome) => {
    if (finished) return Promise.resolve(null)
    finished = true
    return execution.finish(outcome)
  }
  const unwritten = () => void finish({ kind: 'unreplayable', status: statusOf(error) })
  if (ctx.headerSent || !ctx.writable) {
    unwritten()
    return
  }
  ctx.res.once('close', unwritten)
  captureResponse(ctx.res, {
    lease: execution.lease,
    headers: execution.headers,
    maxResponseBytes: execution.maxResponseBytes,
    finish,
  })
}

/** The status Koa's `ctx.onerror` renders for a thrown value. */
function statusOf(error: unknown): number {
  const { status, statusCode } = (error ?? {}) as { status?: unknown; statusCode?: unknown }
  const code = status ?? statusCode
  return typeof code === 'number' && Number.isInteger(code) && code >= 400 && code <= 599 ? code : 500
}
