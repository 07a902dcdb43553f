/** NestJS's Express and Fastify responses reduced to the raw Node response the Express adapter's capture wraps. */
import { ServerResponse } from 'node:http'
import type { Execution } from '../../core/engine.js'
import { IdempotencyConfigError } from '../../core/errors.js'
import type { HttpResponse } from '../../core/http.js'
import { captureResponse } from '../node/capture-response.js'
import { sendResponse } from '../node/send-response.js'

/** What the interceptor does with the platform's response object. */
export interface PlatformResponse {
  /** The Node response every platform finally writes to, after any exception filter rendered. */
  readonly raw: ServerResponse
  /** Writes an engine response byte for byte now; whatever Nest renders later is dropped. */
  respond(response: HttpResponse): void
  /** Captures what the route, its interceptors and the exception filters write, storing it before it is sent. */
  capture(execution: Execution): void
}

/** The subset of a Fastify reply used here (no type import: Fastify is an optional peer). */
interface FastifyReplyLike {
  readonly raw: ServerResponse
  hijack(): unknown
  send(payload?: unknown): unknown
  getHeaders(): Record<string, number | string | string[] | undefined>
}

function isFastifyReply(response: unknown): response is FastifyReplyLike {
  const r = response as Partial<FastifyReplyLike> | null
  return typeof r?.hijack === 'function' && r.raw instanceof ServerResponse
}

/**
 * Makes later writes no-ops. Nest renders the interceptor's value after a replay was written (or nothing, for a
 * `@Res()` handler); without this, Express would throw `ERR_HTTP_HEADERS_SENT` into the exception filters.
 */
function seal(res: ServerResponse): void {
  const status = res.statusCode
  // Nest's `res.status(201)` after the fact would otherwise reach access logs that read it on 'finish'.
  Object.defineProperty(res, 'statusCode', { get: () => status, set: () => {}, configurable: true })
  const self = () => res
  res.setHeader = self as ServerResponse['setHeader']
  res.appendHeader = self as ServerResponse['appendHeader']
  res.removeHeader = () => undefined
  res.writeHead = self as ServerResponse['writeHead']
  res.flushHeaders = () => undefined
  res.write = (() => true) as ServerResponse['write']
  res.end = ((...args: unknown[]) => {
    const callback = args.find((a) => typeof a === 'function') as (() => void) | undefined
    if (callback !== undefined) queueMicrotask(callback)
    return res
  }) as ServerResponse['end']
}

/**
 * Fastify keeps reply headers to itself until `writeHead`; copying them onto the raw response makes them the
 * "already set before the route" snapshot the capture excludes from storage, and keeps them (CORS, request ids)
 * on a replay written past Fastify.
 */
function adoptReplyHeaders(reply: FastifyReplyLike): void {
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) reply.raw.setHeader(name, value)
  }
}

/**
 * A body encoded after the capture armed (an `onSend` compressor on Fastify, which writes below Fastify's hooks,
 * or a route sending pre-encoded bytes) is kept as unreplayable: `Content-Encoding` is never stored, so storing the
 * bytes would replay gzip to clients that did not ask for it (design-review H3).
 */
function refuseEncoded(raw: ServerResponse, execution: Execution): Execution {
  const encodedBefore = raw.hasHeader('content-encoding')
  return {
    lease: execution.lease,
    headers: execution.headers,
    maxResponseBytes: execution.maxResponseBytes,
    finish: (outcome) =>
      execution.finish(
        outcome.kind === 'response' && !encodedBefore && raw.hasHeader('content-encoding')
          ? { kind: 'unreplayable', status: outcome.status }
          : outcome,
      ),
  }
}

/** Wraps the response object Nest hands to interceptors (Express `Response` or Fastify `FastifyReply`). */
export function platformResponse(response: unknown): PlatformResponse {
  if (isFastifyReply(response)) {
    const raw = response.raw
    return {
      raw,
      respond(answer) {
        adoptReplyHeaders(response)
        // Hijacked: Fastify leaves the raw response to us. Nest still renders the interceptor's value through
        // `reply.send`, which would log "Reply was already sent" on every replay: it is a no-op for this reply.
        response.hijack()
        sendResponse(raw, answer)
        seal(raw)
        response.send = () => response
      },
      capture(execution) {
        adoptReplyHeaders(response)
        captureResponse(raw, refuseEncoded(raw, execution))
      },
    }
  }
  if (response instanceof ServerResponse) {
    return {
      raw: response,
      respond(answer) {
        sendResponse(response, answer)
        seal(response)
      },
      capture(execution) {
        captureResponse(response, refuseEncoded(response, execution))
      },
    }
  }
  throw new IdempotencyConfigError(
    '@Idempotent() needs an HTTP platform that writes to a Node response: @nestjs/platform-express or -fastify',
  )
}
