/** `idempotency` for Fastify 5: hooks on each covered route translate to the engine and back; no policy here. */
import type { ServerResponse } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { fastifyPlugin } from 'fastify-plugin'
import type { Execution, Idempotency } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import type { FingerprintBody } from '../../core/fingerprint.js'
import { isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import type { HttpResponse } from '../../core/http.js'
import type { Lease } from '../../core/lease.js'
import type { IdempotencyOptions, ResolvedRoute, RouteOptions } from '../../core/options.js'
import { bodyParserProblem } from '../../core/problem.js'
import { createIdempotency } from '../../create-idempotency.js'
import { routeHeaders } from '../node/capture-response.js'
import { hasBody, NodeEngineRequest } from '../node/engine-request.js'
import { groupHeaders, sendResponse } from '../node/send-response.js'
import { type TappedBody, tappedBytes, tapRawBody } from './raw-body-tap.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The lease of this execution, when idempotency-kit holds the key for it. */
    idempotency?: Lease
  }
  interface FastifyContextConfig {
    /** This route's idempotency options over the plugin's, or `false` to leave the route alone. */
    idempotency?: RouteOptions | false
  }
}

/** Options of the Fastify plugin: an engine (shared) or the options to make one, plus route options. */
export type FastifyIdempotencyOptions = (IdempotencyOptions | { readonly engine: Idempotency }) &
  RouteOptions & {
    /** The authenticated principal's id (never the credential, which rotates). Default: unscoped. */
    readonly scope?: (request: FastifyRequest) => string | undefined
    /** Answer Fastify's own body-parser refusals (413, 415, 400) on covered routes as problem+json. Default true. */
    readonly problemBodyErrors?: boolean
  }

/** The route is being run by us: what the hooks after `preHandler` need. */
interface Executing {
  readonly execution: Execution
  /** Response headers as they were before the route ran: those belong to this request only (DESIGN §4.9). */
  readonly before: ReturnType<FastifyReply['getHeaders']>
  /** Set once `finish` was called, from `onSend` or from a raw write: never twice. */
  finished: boolean
  /** The raw `ServerResponse` methods replaced to watch for writes that bypass `reply.send`. */
  readonly original: RawMethods
}

/** One request, from `preParsing` on; kept on the raw request, whose other plugin instances leave it alone. */
interface RequestState extends TappedBody {
  /** The plugin instance that handles the request: the first registered wins (app-wide plus nested). */
  readonly owner: symbol
  decided: boolean
  executing: Executing | undefined
  /**
   * What `onSend` must send whatever the hooks before it did to the payload: a body-parser refusal as
   * problem+json, or the engine's answer (a replay must not be wrapped or encoded twice by an earlier hook).
   */
  pending: HttpResponse | undefined
}

/**
 * Where the request's state is kept on the raw request. The NestJS interceptor reads this same key to leave a
 * request the plugin covers alone.
 */
const CLAIMED = Symbol.for('idempotency-kit.fastify.claimed')
/** Where a watched `ServerResponse` finds its execution. */
const EXECUTING = Symbol('idempotency-kit.fastify.executing')

type Claimed = { [CLAIMED]?: RequestState }
type Watched = ServerResponse & { [EXECUTING]?: Executing | undefined }
type RawMethods = Pick<ServerResponse, 'writeHead' | 'write' | 'end' | 'flushHeaders'>
type Done = (error?: Error | null) => void

const BODY_ERRORS: Readonly<Record<string, readonly [number, string]>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'The request body is larger than this endpoint accepts.'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'The request body media type is not supported.'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'The request body is not valid JSON.'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'The request body is empty but its Content-Type says JSON.'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'The request body does not match its Content-Length.'],
}

function asArray<T>(hooks: T | T[] | undefined): T[] {
  if (hooks === undefined) return []
  return Array.isArray(hooks) ? hooks : [hooks]
}

/** The state of `request` if `owner` handles it. */
function stateOf(request: FastifyRequest, owner: symbol): RequestState | undefined {
  const state = (request.raw as Claimed)[CLAIMED]
  return state?.owner === owner ? state : undefined
}

/** An engine response's headers for `reply.headers`: Fastify computes Content-Length itself. */
function replyHeaders(response: HttpResponse): Record<string, string | string[]> {
  return groupHeaders(response.headers, 'content-length')
}

function toBuffer(body: Uint8Array): Buffer {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength)
}

/** Writes an engine response (a replay or a rejection) through the reply, so onSend hooks such as compression run. */
function respond(reply: FastifyReply, response: HttpResponse): void {
  const headers = replyHeaders(response)
  if (headers['content-type'] === undefined && response.body.byteLength > 0) {
    // reply.send(Buffer) would add application/octet-stream: a header the first response did not have.
    reply.hijack()
    sendResponse(reply.raw, response)
    return
  }
  reply.code(response.status).headers(headers)
  if (response.body.byteLength === 0) reply.send()
  else reply.send(toBuffer(response.body))
}

/** Puts `response` in place of the payload, inside `onSend`; answers the new payload. */
function replacePayload(reply: FastifyReply, response: HttpResponse): Buffer {
  const headers = replyHeaders(response)
  if (headers['content-encoding'] === undefined && reply.hasHeader('content-encoding')) {
    // An earlier onSend hook encoded what it was given; these bytes are not encoded.
    reply.removeHeader('content-encoding')
    reply.raw.removeHeader('content-encoding')
  }
  reply.code(response.status).headers(headers)
  return toBuffer(response.body)
}

function isFetchResponse(payload: unknown): payload is Response {
  return (
    typeof payload === 'object' && payload !== null && Object.prototype.toString.call(payload) === '[object Response]'
  )
}

/*
 * A route that writes past `reply.send` (`reply.hijack()`, `reply.raw`): that response passes through as it is
 * written and is finished as unreplayable at its first write, so a retry gets 410 and never a half-stored body.
 * The replacements are shared functions that find their execution on the response: no closure per request.
 */

function restoreRaw(raw: Watched, executing: Executing): void {
  const { original } = executing
  raw.writeHead = original.writeHead
  raw.write = original.write
  raw.end = original.end
  raw.flushHeaders = original.flushHeaders
  raw[EXECUTING] = undefined
}

/** Restores the methods and finishes as unreplayable (once); answers the original methods. */
function bypass(raw: Watched, status: number | undefined): RawMethods {
  const executing = raw[EXECUTING] as Executing
  restoreRaw(raw, executing)
  if (!executing.finished) {
    executing.finished = true
    void executing.execution.finish({ kind: 'unreplayable', status: status ?? raw.statusCode })
  }
  return executing.original
}

function watchedWriteHead(this: Watched, ...args: unknown[]): ServerResponse {
  const original = bypass(this, args[0] as number)
  return (original.writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
}

function watchedWrite(this: Watched, ...args: unknown[]): boolean {
  const original = bypass(this, undefined)
  return (original.write as (...a: unknown[]) => boolean).apply(this, args)
}

function watchedEnd(this: Watched, ...args: unknown[]): ServerResponse {
  const original = bypass(this, undefined)
  return (original.end as (...a: unknown[]) => ServerResponse).apply(this, args)
}

function watchedFlushHeaders(this: Watched): void {
  bypass(this, undefined).flushHeaders.call(this)
}

function watchRawWrites(raw: Watched, executing: Executing): void {
  raw[EXECUTING] = executing
  raw.writeHead = watchedWriteHead as ServerResponse['writeHead']
  raw.write = watchedWrite as ServerResponse['write']
  raw.end = watchedEnd as ServerResponse['end']
  raw.flushHeaders = watchedFlushHeaders
}

async function plugin(fastify: FastifyInstance, options: FastifyIdempotencyOptions): Promise<void> {
  const owned = !('engine' in options)
  const engine = 'engine' in options ? options.engine : createIdempotency(options)
  const pluginRoute = engine.route(options)
  const scope = options.scope
  const problemBodyErrors = options.problemBodyErrors ?? true
  const headerName = engine.options.headerName
  /** Every route this instance saw, covered or not: a route it never saw was declared before it loaded. */
  const seen = new Set<string>()
  const instance = Symbol('idempotency-kit instance')

  if (!fastify.hasRequestDecorator('idempotency')) fastify.decorateRequest('idempotency', undefined)
  if (owned) fastify.addHook('onClose', async () => engine.close())

  fastify.addHook('onRoute', (routeOptions) => {
    const methods = asArray(routeOptions.method).map((m) => m.toUpperCase())
    for (const method of methods) seen.add(`${method} ${routeOptions.url}`)
    const config = routeOptions.config?.idempotency
    if (config === false) return
    // Validated once per route, at mount time: a bad option fails the boot, not a request.
    const route = config === undefined ? pluginRoute : engine.route({ ...options, ...config })
    if (!methods.some((m) => route.methods.has(m))) return
    const limit = routeOptions.bodyLimit ?? fastify.initialConfig.bodyLimit ?? 1024 * 1024
    // Appended: ours run after the app's and the route's own hooks (parsing, auth), and before any
    // onSend hook a later plugin appends in its own onRoute (compression: see the README's order).
    routeOptions.preParsing = [...asArray(routeOptions.preParsing), preParsingFor(limit)] as NonNullable<
      typeof routeOptions.preParsing
    >
    routeOptions.preHandler = [...asArray(routeOptions.preHandler), preHandlerFor(route)] as NonNullable<
      typeof routeOptions.preHandler
    >
    routeOptions.onError = [...asArray(routeOptions.onError), onError] as NonNullable<typeof routeOptions.onError>
    routeOptions.onSend = [...asArray(routeOptions.onSend), onSend] as NonNullable<typeof routeOptions.onSend>
  })

  // A route declared before this plugin loaded never reached onRoute: fail loudly rather than run it unprotected.
  // Checked once the route's own preParsing ran, so a covered route only costs a property read.
  fastify.addHook('preValidation', (request, _reply, done) => {
    if ((request.raw as Claimed)[CLAIMED] !== undefined || !pluginRoute.methods.has(request.method)) return done()
    if (request.is404) return done()
    const { url, config } = request.routeOptions
    if (url === undefined || config?.idempotency === false || seen.has(`${request.method} ${url}`)) return done()
    done(
      new IdempotencyConfigError(
        `${request.method} ${url} was declared before idempotency-kit was registered: ` +
          'await app.register(idempotency, options) before declaring the routes it covers',
      ),
    )
  })

  function preParsingFor(limit: number) {
    return function idempotencyPreParsing(
      request: FastifyRequest,
      _reply: FastifyReply,
      payload: NodeJS.ReadableStream,
      done: (error: Error | null, payload: NodeJS.ReadableStream) => void,
    ): void {
      const raw = request.raw as Claimed
      const claimed = raw[CLAIMED]
      if (claimed === undefined || claimed.owner === instance) {
        const state: RequestState = {
          owner: instance,
          decided: false,
          executing: undefined,
          pending: undefined,
          chunks: undefined,
          size: 0,
          complete: false,
          limit,
        }
        raw[CLAIMED] = state
        // Keyless requests pass through the engine untouched: no bytes to keep.
        if (request.headers[headerName] !== undefined) {
          state.chunks = []
          tapRawBody(payload, state)
        }
      }
      done(null, payload)
    }
  }

  function bodyOf(request: FastifyRequest, state: RequestState): FingerprintBody {
    if (!hasBody(request.raw.headers)) return { kind: 'none' }
    const bytes = tappedBytes(state)
    // Hashed within `handle`, synchronously: nothing needs the chunks after it.
    state.chunks = undefined
    if (bytes !== undefined) return { kind: 'raw', bytes }
    // A content-type parser that did not read the stream to its end: the parsed value is the fallback.
    if (request.body !== undefined && isJsonMediaType(mediaTypeOf(request.headers['content-type']))) {
      return { kind: 'parsed', value: request.body }
    }
    throw new IdempotencyConfigError(
      'idempotency-kit cannot see this request body: its content-type parser did not read the payload stream',
    )
  }

  /** Only a wait needs to know the client left; an AbortController per request costs a DOMException. */
  function clientGone(reply: FastifyReply): AbortSignal {
    const controller = new AbortController()
    reply.raw.once('close', () => controller.abort())
    return controller.signal
  }

  function preHandlerFor(route: ResolvedRoute) {
    const wait = route.onConflict === 'wait'
    return function idempotencyPreHandler(request: FastifyRequest, reply: FastifyReply, done: Done): void {
      const state = stateOf(request, instance)
      if (state === undefined || state.decided) {
        done()
        return
      }
      state.decided = true
      let engineRequest: NodeEngineRequest
      try {
        const body = bodyOf(request, state)
        engineRequest = new NodeEngineRequest(
          request.method,
          request.originalUrl,
          request.headers,
          body,
          scope === undefined ? '' : (scope(request) ?? ''),
          wait ? clientGone(reply) : undefined,
        )
      } catch (error) {
        done(error as Error)
        return
      }
      engine.handle(engineRequest, route).then((decision) => {
        switch (decision.kind) {
          case 'pass':
            done()
            return
          case 'respond':
            // Answered here: the route does not run, and done() is not called.
            state.pending = decision.response
            respond(reply, decision.response)
            return
          case 'execute': {
            const { execution } = decision
            const raw = reply.raw as Watched
            const executing: Executing = {
              execution,
              before: reply.getHeaders(),
              finished: false,
              original: { writeHead: raw.writeHead, write: raw.write, end: raw.end, flushHeaders: raw.flushHeaders },
            }
            for (const [name, value] of execution.headers) reply.header(name, value)
            watchRawWrites(raw, executing)
            state.executing = executing
            request.idempotency = execution.lease
            done()
            return
          }
          default: {
            const unknown: never = decision
            done(new TypeError(`unknown decision ${String(unknown)}`))
          }
        }
      }, done)
    }
  }

  function onError(request: FastifyRequest, _reply: FastifyReply, error: FastifyError, done: () => void): void {
    const state = stateOf(request, instance)
    // Only refusals from before the decision: a route's own errors are its response.
    if (problemBodyErrors && state !== undefined && !state.decided) {
      const known = BODY_ERRORS[error.code]
      if (known !== undefined) state.pending = bodyParserProblem(known[0], known[1])
    }
    done()
  }

  /** Store, then send: the payload leaves only after `finish` settled (DESIGN §4.8). */
  function onSend(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    done: (error: Error | null, payload?: unknown) => void,
  ): void {
    const state = stateOf(request, instance)
    if (state?.pending !== undefined) {
      const response = state.pending
      state.pending = undefined
      done(null, replacePayload(reply, response))
      return
    }
    const executing = state?.executing
    if (executing === undefined || executing.finished) {
      done(null, payload)
      return
    }
    executing.finished = true
    restoreRaw(reply.raw as Watched, executing)
    const { execution } = executing
    if (payload === null || payload === undefined || typeof payload === 'string' || Buffer.isBuffer(payload)) {
      const body = payload === null || payload === undefined ? Buffer.alloc(0) : Buffer.from(payload)
      const status = reply.statusCode
      // Encoded by an onSend hook that ran before ours: storing those bytes would replay them to clients that
      // did not ask for the encoding (design-review H3), so the response is kept as unreplayable instead.
      const encoded = reply.hasHeader('content-encoding') && !('content-encoding' in executing.before)
      if (encoded || body.byteLength > execution.maxResponseBytes) {
        execution.finish({ kind: 'unreplayable', status }).then(() => done(null, payload))
        return
      }
      execution
        .finish({ kind: 'response', status, headers: routeHeaders(reply.getHeaders(), executing.before), body })
        .then((replacement) => {
          if (replacement === null) {
            done(null, payload)
            return
          }
          // What the route set describes a response we will not send.
          for (const name of Object.keys(reply.getHeaders())) {
            if (name in executing.before) continue
            reply.removeHeader(name)
            reply.raw.removeHeader(name)
          }
          done(null, replacePayload(reply, replacement))
        })
      return
    }
    // A Node or Web stream, or a fetch Response: passed through as it flows; only its status is kept.
    const status = isFetchResponse(payload) ? payload.status : reply.statusCode
    execution.finish({ kind: 'unreplayable', status }).then(() => done(null, payload))
  }
}

/**
 * The idempotency plugin for Fastify 5. Register it (awaited) after the body parser setup and the
 * authentication hooks, before the routes it covers; per route, `config: { idempotency: {...} | false }`.
 *
 * @example
 * await app.register(idempotency, { store, required: true, scope: (request) => request.user?.id })
 * app.post('/charges', { config: { idempotency: { onConflict: 'wait' } } }, async (request) => charge(request.body))
 */
export const idempotency = fastifyPlugin(plugin, { name: 'idempotency-kit', fastify: '5.x' })
