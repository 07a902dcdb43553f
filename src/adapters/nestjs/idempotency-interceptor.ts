/** The global interceptor: after the guards, before the pipes and the handler, it asks the engine and arms capture. */
import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common'
import { Reflector } from '@nestjs/core'
import { finalize, Observable, of, type Subscription, tap } from 'rxjs'
import type { Decision, Execution, HandlerOutcome, Idempotency } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import type { FingerprintBody } from '../../core/fingerprint.js'
import { isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import type { HttpResponse } from '../../core/http.js'
import type { ResolvedRoute, RouteOptions } from '../../core/options.js'
import { hasBody } from '../node/engine-request.js'
import { IDEMPOTENT_OPTIONS } from './idempotent.js'
import { type PlatformResponse, platformResponse } from './platform-response.js'

/** The fields of an Express or Fastify request the interceptor reads. */
interface NestRequest {
  readonly method: string
  readonly url: string
  readonly originalUrl?: string
  readonly headers: Record<string, string | string[] | undefined>
  readonly body?: unknown
  /** Set by Nest with `NestFactory.create(AppModule, { rawBody: true })`, on both platforms. */
  readonly rawBody?: unknown
  readonly raw?: object
  idempotency?: Execution['lease']
}

/** Shared with the Express middleware: a request one of them handled is not handled twice. */
const HANDLED = Symbol.for('idempotency-kit.handled')
/** Set on the raw request by the Fastify plugin on the routes it covers: it decides those itself. */
const FASTIFY_CLAIMED = Symbol.for('idempotency-kit.fastify.claimed')
/** Where `keepRawBody` from idempotency-kit/express keeps the bytes (same global symbol, no Express import). */
const RAW_BODY = Symbol.for('idempotency-kit.raw-body')
const NEVER_COVERED = new Set(['GET', 'HEAD', 'OPTIONS'])

function bytesOf(value: unknown): Uint8Array | undefined {
  return value instanceof Uint8Array ? value : undefined
}

function bodyOf(req: NestRequest): FingerprintBody {
  const raw =
    bytesOf(req.rawBody) ??
    bytesOf((req as unknown as Record<symbol, unknown>)[RAW_BODY]) ??
    bytesOf((req.raw as Record<symbol, unknown> | undefined)?.[RAW_BODY])
  if (raw !== undefined) return { kind: 'raw', bytes: raw }
  if (!hasBody(req.headers)) return { kind: 'none' }
  const contentType = req.headers['content-type']
  // Fallback: the parsed JSON value (big numbers may already have collapsed: prefer `rawBody: true`).
  if (
    req.body !== undefined &&
    isJsonMediaType(mediaTypeOf(typeof contentType === 'string' ? contentType : undefined))
  ) {
    return { kind: 'parsed', value: req.body }
  }
  // Hashing `{}` or undefined here would make every body alike (design-review H10).
  throw new IdempotencyConfigError(
    '@Idempotent() cannot see this request body: create the app with NestFactory.create(AppModule, { rawBody: true })',
  )
}

/** Finishes once: the capture when the response ends, or the interceptor when Nest will never render one. */
function once(execution: Execution): Execution & { readonly settled: () => boolean } {
  let result: Promise<HttpResponse | null> | undefined
  return {
    lease: execution.lease,
    headers: execution.headers,
    maxResponseBytes: execution.maxResponseBytes,
    finish: (outcome: HandlerOutcome) => {
      if (result !== undefined) return Promise.resolve(null)
      result = execution.finish(outcome)
      return result
    },
    settled: () => result !== undefined,
  }
}

/**
 * Decides keyed requests to `@Idempotent()` routes. It runs after every guard (authentication has set the
 * principal the scope needs) and before the pipes and the handler, so `begin` precedes any work; it never reads
 * the handler's return value: the capture sits on the platform's Node response, where exception filters write too.
 */
export class IdempotencyInterceptor implements NestInterceptor {
  readonly #engine: Idempotency
  readonly #scope: (request: never) => string | undefined
  readonly #reflector = new Reflector()
  readonly #routes = new WeakMap<object, Map<string, ResolvedRoute>>()

  constructor(engine: Idempotency, scope: ((request: never) => string | undefined) | undefined) {
    this.#engine = engine
    this.#scope = scope ?? (() => '')
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle()
    const options = this.#reflector.getAllAndOverride<RouteOptions | undefined>(IDEMPOTENT_OPTIONS, [
      context.getHandler(),
      context.getClass(),
    ])
    if (options === undefined) return next.handle()
    const http = context.switchToHttp()
    const req = http.getRequest<NestRequest>()
    const marks = [req, req.raw].filter((r) => r !== undefined) as Array<Record<symbol, unknown>>
    if (marks.some((r) => r[HANDLED] || r[FASTIFY_CLAIMED] !== undefined)) return next.handle()
    for (const r of marks) r[HANDLED] = true

    const platform = platformResponse(http.getResponse())
    const route = this.#route(context.getHandler(), options, req.method.toUpperCase())
    const controller = new AbortController()
    platform.raw.once('close', () => controller.abort())
    const decision = this.#engine.handle(
      {
        method: req.method,
        url: req.originalUrl ?? req.url,
        header: (name) => {
          const value = req.headers[name]
          return Array.isArray(value) ? value.join(', ') : value
        },
        body: bodyOf(req),
        contentType: typeof req.headers['content-type'] === 'string' ? req.headers['content-type'] : undefined,
        scope: (this.#scope as (request: NestRequest) => string | undefined)(req) ?? '',
        signal: controller.signal,
      },
      route,
    )
    return new Observable<unknown>((subscriber) => {
      let inner: Subscription | undefined
      let closed = false
      decision.then(
        (d) => {
          if (closed) {
            // An outer interceptor (a timeout) gave up first and a filter answered: run nothing, free the key.
            if (d.kind === 'execute') void d.execution.finish({ kind: 'unreplayable', status: 503 })
            return
          }
          inner = this.#follow(d, platform, req, next).subscribe(subscriber)
        },
        (error: unknown) => subscriber.error(error),
      )
      return () => {
        closed = true
        inner?.unsubscribe()
      }
    })
  }

  #follow(d: Decision, platform: PlatformResponse, req: NestRequest, next: CallHandler): Observable<unknown> {
    switch (d.kind) {
      case 'pass':
        return next.handle()
      case 'respond':
        platform.respond(d.response)
        return of(undefined)
      case 'execute':
        return this.#execute(d.execution, platform, req, next)
      default: {
        const unknown: never = d
        throw new TypeError(`unknown decision ${String(unknown)}`)
      }
    }
  }

  #execute(execution: Execution, platform: PlatformResponse, req: NestRequest, next: CallHandler): Observable<unknown> {
    const guarded = once(execution)
    platform.capture(guarded)
    req.idempotency = execution.lease
    let ended = false
    return next.handle().pipe(
      tap({ complete: () => (ended = true), error: () => (ended = true) }),
      finalize(() => {
        // Nest drops a handler's Observable when the client goes away and renders nothing: without this the
        // key would stay held until the lease lapsed. Unknown result: released before commit, 410 after.
        if (!ended && platform.raw.destroyed && !guarded.settled()) {
          void guarded.finish({ kind: 'unreplayable', status: 500 })
        }
      }),
    )
  }

  /** Resolved once per handler and method; without `methods`, the route's own method is covered too. */
  #route(handler: object, options: RouteOptions, method: string): ResolvedRoute {
    let byMethod = this.#routes.get(handler)
    if (byMethod === undefined) {
      byMethod = new Map()
      this.#routes.set(handler, byMethod)
    }
    let route = byMethod.get(method)
    if (route === undefined) {
      const methods =
        options.methods ?? (NEVER_COVERED.has(method) ? undefined : [...this.#engine.options.route.methods, method])
      route = this.#engine.route(methods === undefined ? options : { ...options, methods })
      byMethod.set(method, route)
    }
    return route
  }
}
