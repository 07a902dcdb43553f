/** `idempotency` for Fastify 5: hooks on each covered route translate to the engine and back; no policy here. */
import type { IncomingMessage, ServerResponse } from 'node:http'
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
import { sendResponse } from '../node/send-response.js'
import { type TappedBody, tapRawBody } from './raw-body-tap.js'

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
  readonly before: ReadonlyMap<string, unknown>
  /** Set once `finish` was called, from `onSend` or from a raw write: never twice. */
  finished: boolean
  /** Puts back the raw `ServerResponse` methods watched for writes that bypass `reply.send`. */
  restore(): void
}

interface RequestState {
  tapped?: TappedBody
  decided: boolean
  executing?: Executing
  /**
   * What `onSend` must send whatever the hooks before it did to the payload: a body-parser refusal as
   * problem+json, or the engine's answer (a replay must not be wrapped or encoded twice by an earlier hook).
   */
  pending?: HttpResponse | undefined
}

/** Which request an instance of the plugin handles: the first one registered wins (app-wide plus nested). */
const CLAIMED = Symbol.for('idempotency-kit.fastify.claimed')

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

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
}

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i])
  return a === b
}

/** Headers grouped by lower-cased name, in order, for `reply.headers`; Fastify computes Content-Length itself. */
function groupHeaders(headers: HttpResponse['headers']): Record<string, string | string[]> {
  const grouped: Record<string, string | string[]> = {}
  for (const [raw, value] of headers) {
    const name = raw.toLowerCase()
    if (name === 'content-length') continue
    const seen = grouped[name]
    grouped[name] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value]
  }
  return grouped
}

function toBuffer(body: Uint8Array): Buffer {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength)
}

/** Writes an engine response (a replay or a rejection) through the reply, so onSend hooks such as compression run. */
function respond(reply: FastifyReply, response: HttpResponse): FastifyReply {
  const headers = groupHeaders(response.headers)
  if (headers['content-type'] === undefined && response.body.byteLength > 0) {
    // reply.send(Buffer) would add application/octet-stream: a header the first response did not have.
    reply.hijack()
    sendResponse(reply.raw, response)
    return reply
  }
  reply.code(response.status).headers(headers)
  return response.body.byteLength === 0 ? reply.send() : reply.send(toBuffer(response.body))
}

/** Puts `response` in place of the payload, inside `onSend`; answers the new payload. */
function replacePayload(reply: FastifyReply, response: HttpResponse): Buffer {
  const headers = groupHeaders(response.headers)
  if (headers['content-encoding'] === undefined && reply.hasHeader('content-encoding')) {
    // An earlier onSend hook encoded what it was given; these bytes are not encoded.
    reply.removeHeader('content-encoding')
    reply.raw.removeHeader('content-encoding')
  }
  reply.code(response.status).headers(headers)
  return toBuffer(response.body)
}

/** Headers the route set or changed after `preHandler`, in order, one pair per value. */
function routeHeaders(reply: FastifyReply, before: ReadonlyMap<string, unknown>): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value === undefined || sameValue(value, before.get(name))) continue
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, String(v)])
  }
  return pairs
}

function isFetchResponse(payload: unknown): payload is Response {
  return (
    typeof payload === 'object' && payload !== null && Object.prototype.toString.call(payload) === '[object Response]'
  )
}

/**
 * Watches the raw `ServerResponse` for a route that writes past `reply.send` (`reply.hijack()`, `reply.raw`):
 * that response passes through as it is written and is finished as unreplayable at its first write, so a
 * retry gets 410 and never a half-stored body. `onSend` restores the methods before Fastify writes.
 */
function watchRawWrites(raw: ServerResponse, executing: Executing): () => void {
  const original = { writeHead: raw.writeHead, write: raw.write, end: raw.end, flushHeaders: raw.flushHeaders }
  const restore = () => {
    raw.writeHead = original.writeHead
    raw.write = original.write
    raw.end = original.end
    raw.flushHeaders = original.flushHeaders
  }
  const bypass = (status: number) => {
    restore()
    if (executing.finished) return
    executing.finished = true
    void executing.execution.finish({ kind: 'unreplayable', status })
  }
  raw.writeHead = function writeHead(this: ServerResponse, code: number, ...rest: unknown[]) {
    bypass(code)
    return (original.writeHead as (...args: unknown[]) => ServerResponse).call(raw, code, ...rest)
  } as ServerResponse['writeHead']
  raw.write = function write(...args: unknown[]) {
    bypass(raw.statusCode)
    return (original.write as (...a: unknown[]) => boolean).apply(raw, args)
  } as ServerResponse['write']
  raw.end = function end(...args: unknown[]) {
    bypass(raw.statusCode)
    return (original.end as (...a: unknown[]) => ServerResponse).apply(raw, args)
  } as ServerResponse['end']
  raw.flushHeaders = function flushHeaders() {
    bypass(raw.statusCode)
    original.flushHeaders.call(raw)
  }
  return restore
}

async function plugin(fastify: FastifyInstance, options: FastifyIdempotencyOptions): Promise<void> {
  const owned = !('engine' in options)
  const engine = 'engine' in options ? options.engine : createIdempotency(options)
  const pluginRoute = engine.route(options)
  const scope = options.scope ?? (() => '')
  const problemBodyErrors = options.problemBodyErrors ?? true
  const headerName = engine.options.headerName
  const states = new WeakMap<FastifyRequest, RequestState>()
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
    // Appended: ours run after the app's and the route's own hooks (parsing, auth), and before any
    // onSend hook a later plugin appends in its own onRoute (compression: see the README's order).
    routeOptions.preParsing = [...asArray(routeOptions.preParsing), preParsing] as NonNullable<
      typeof routeOptions.preParsing
    >
    routeOptions.preHandler = [...asArray(routeOptions.preHandler), preHandlerFor(route)] as NonNullable<
      typeof routeOptions.preHandler
    >
    routeOptions.onError = [...asArray(routeOptions.onError), onError] as NonNullable<typeof routeOptions.onError>
    routeOptions.onSend = [...asArray(routeOptions.onSend), onSend] as NonNullable<typeof routeOptions.onSend>
  })

  // A route declared before this plugin loaded never reached onRoute: fail loudly rather than run it unprotected.
  fastify.addHook('onRequest', async (request) => {
    const { url, config } = request.routeOptions
    if (url === undefined || config?.idempotency === false || !pluginRoute.methods.has(request.method)) return
    if (seen.has(`${request.method} ${url}`)) return
    throw new IdempotencyConfigError(
      `${request.method} ${url} was declared before idempotency-kit was registered: ` +
        'await app.register(idempotency, options) before declaring the routes it covers',
    )
  })

  async function preParsing(request: FastifyRequest, _reply: FastifyReply, payload: NodeJS.ReadableStream) {
    const raw = request.raw as unknown as Record<symbol, symbol | undefined>
    if (raw[CLAIMED] !== undefined && raw[CLAIMED] !== instance) return payload
    raw[CLAIMED] = instance
    const state: RequestState = { decided: false }
    states.set(request, state)
    // Keyless requests pass through the engine untouched: no bytes to keep.
    if (request.headers[headerName] === undefined) return payload
    state.tapped = { chunks: [], complete: false }
    return tapRawBody(payload, state.tapped)
  }

  function bodyOf(request: FastifyRequest, state: RequestState): FingerprintBody {
    if (!hasBody(request.raw)) return { kind: 'none' }
    if (state.tapped?.complete) return { kind: 'raw', bytes: Buffer.concat(state.tapped.chunks) }
    // A content-type parser that did not read the stream to its end: the parsed value is the fallback.
    if (request.body !== undefined && isJsonMediaType(mediaTypeOf(request.headers['content-type']))) {
      return { kind: 'parsed', value: request.body }
    }
    throw new IdempotencyConfigError(
      'idempotency-kit cannot see this request body: its content-type parser did not read the payload stream',
    )
  }

  function preHandlerFor(route: ResolvedRoute) {
    return async function idempotencyPreHandler(request: FastifyRequest, reply: FastifyReply) {
      const state = states.get(request)
      if (state === undefined || state.decided) return
      state.decided = true
      const controller = new AbortController()
      reply.raw.once('close', () => controller.abort())
      const decision = await engine.handle(
        {
          method: request.method,
          url: request.originalUrl,
          header: (name) => {
            const value = request.headers[name]
            return Array.isArray(value) ? value.join(', ') : value
          },
          body: bodyOf(request, state),
          contentType: request.headers['content-type'],
          scope: scope(request) ?? '',
          signal: controller.signal,
        },
        route,
      )
      switch (decision.kind) {
        case 'pass':
          return
        case 'respond':
          state.pending = decision.response
          return respond(reply, decision.response)
        case 'execute': {
          const { execution } = decision
          const before = new Map(Object.entries(reply.getHeaders()))
          for (const [name, value] of execution.headers) reply.header(name, value)
          const executing: Executing = { execution, before, finished: false, restore: () => {} }
          executing.restore = watchRawWrites(reply.raw, executing)
          state.executing = executing
          request.idempotency = execution.lease
          return
        }
        default: {
          const unknown: never = decision
          throw new TypeError(`unknown decision ${String(unknown)}`)
        }
      }
    }
  }

  async function onError(request: FastifyRequest, _reply: FastifyReply, error: FastifyError) {
    const state = states.get(request)
    // Only refusals from before the decision: a route's own errors are its response.
    if (!problemBodyErrors || state === undefined || state.decided) return
    const known = BODY_ERRORS[error.code]
    if (known !== undefined) state.pending = bodyParserProblem(known[0], known[1])
  }

  /** Store, then send: the payload leaves only after `finish` settled (DESIGN §4.8). */
  async function onSend(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const state = states.get(request)
    if (state === undefined) return payload
    if (state.pending !== undefined) {
      const response = state.pending
      state.pending = undefined
      return replacePayload(reply, response)
    }
    const executing = state.executing
    if (executing === undefined || executing.finished) return payload
    executing.finished = true
    executing.restore()
    const { execution } = executing
    if (payload === null || payload === undefined || typeof payload === 'string' || Buffer.isBuffer(payload)) {
      const body = payload === null || payload === undefined ? Buffer.alloc(0) : Buffer.from(payload)
      const status = reply.statusCode
      // Encoded by an onSend hook that ran before ours: storing those bytes would replay them to clients that
      // did not ask for the encoding (design-review H3), so the response is kept as unreplayable instead.
      const encoded = reply.hasHeader('content-encoding') && !executing.before.has('content-encoding')
      if (encoded || body.byteLength > execution.maxResponseBytes) {
        await execution.finish({ kind: 'unreplayable', status })
        return payload
      }
      const replacement = await execution.finish({
        kind: 'response',
        status,
        headers: routeHeaders(reply, executing.before),
        body,
      })
      if (replacement === null) return payload
      // What the route set describes a response we will not send.
      for (const name of Object.keys(reply.getHeaders())) {
        if (executing.before.has(name)) continue
        reply.removeHeader(name)
        reply.raw.removeHeader(name)
      }
      return replacePayload(reply, replacement)
    }
    // A Node or Web stream, or a fetch Response: passed through as it flows; only its status is kept.
    const status = isFetchResponse(payload) ? payload.status : reply.statusCode
    await execution.finish({ kind: 'unreplayable', status })
    return payload
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
