/** Captures what a Node `ServerResponse` is sent (the calls, not the events) and sends it only after the engine stored it. */
import type { OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Execution, HandlerOutcome } from '../../core/engine.js'
import type { HttpResponse } from '../../core/http.js'
import { sendResponse } from './send-response.js'

type Callback = (error?: Error | null) => void
/** The methods a capture intercepts. */
export type ResponseMethods = Pick<ServerResponse, 'writeHead' | 'write' | 'end' | 'flushHeaders'>

const BUFFERING = 0
const PASSTHROUGH = 1
const ENDED = 2

/** One response being captured. */
interface Capture {
  readonly execution: Execution
  /** The methods the interceptors hand over to: what the response had before (its own, or its prototype's). */
  readonly original: ResponseMethods
  /** Whether the interceptors were set on the response itself, to be put back when it ends. */
  readonly onInstance: boolean
  /** Response headers before the route ran (a fresh null-prototype copy): they belong to this request only. */
  readonly before: OutgoingHttpHeaders
  state: typeof BUFFERING | typeof PASSTHROUGH | typeof ENDED
  /** The status `writeHead` was given, if it was called. */
  status: number | undefined
  /** The body so far: most responses are one `end(chunk)`, so an array only from the second chunk. */
  first: Buffer | undefined
  more: Buffer[] | undefined
  size: number
}

/*
 * Captures are kept beside the responses, not on them: a property added to a response whose prototype was
 * swapped (Express does that on every request) copies the response's hidden class, ~10 µs a property on the
 * bench machine, and leaves every later property access on it slower.
 */
const captures = new WeakMap<ServerResponse, Capture>()
/** Interceptors installed on a prototype, by their `end`, with the methods they hand over to. */
const onPrototypes = new WeakMap<
  ResponseMethods['end'],
  { readonly methods: ResponseMethods; readonly original: ResponseMethods }
>()

function toBuffer(chunk: unknown, encoding: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  return Buffer.from(String(chunk), typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
}

function sameValue(a: OutgoingHttpHeader | undefined, b: OutgoingHttpHeader | undefined): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i])
  return a === b
}

/** Applies the headers argument of `writeHead` (object, flat raw array, or array of pairs) with setHeader. */
function applyHeaders(res: ServerResponse, headers: unknown): void {
  if (headers === undefined || headers === null) return
  if (Array.isArray(headers)) {
    const pairs: Array<[string, string]> = Array.isArray(headers[0])
      ? (headers as Array<[string, string]>)
      : Array.from({ length: headers.length / 2 }, (_, i) => [String(headers[2 * i]), String(headers[2 * i + 1])])
    const grouped = new Map<string, string[]>()
    for (const [name, value] of pairs) grouped.set(name, [...(grouped.get(name) ?? []), value])
    for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? (values[0] as string) : values)
    return
  }
  for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
    if (value !== undefined) res.setHeader(name, value)
  }
}

function keep(capture: Capture, buffer: Buffer): void {
  if (capture.first === undefined) capture.first = buffer
  else if (capture.more === undefined) capture.more = [buffer]
  else capture.more.push(buffer)
  capture.size += buffer.byteLength
}

function kept(capture: Capture): Buffer {
  const { first, more } = capture
  if (first === undefined) return Buffer.alloc(0)
  if (more === undefined) return first
  return Buffer.concat([first, ...more], capture.size)
}

/** Ends the capture: the methods the response had are its own again. */
function release(res: ServerResponse, capture: Capture): void {
  capture.state = ENDED
  if (!capture.onInstance) {
    // Later calls reach the prototype's interceptors, which hand them over when no capture is left.
    captures.delete(res)
    return
  }
  // Kept as ended: a stale reference to an interceptor still finds it, and is ignored.
  const { original } = capture
  res.writeHead = original.writeHead
  res.write = original.write
  res.end = original.end
  res.flushHeaders = original.flushHeaders
}

/** Header values by name, as Node's `getHeaders()` and Fastify's `reply.getHeaders()` give them. */
type HeaderValues = Readonly<Record<string, OutgoingHttpHeader | undefined>>

/**
 * Headers the route set or changed after the middleware ran, in order, one pair per value. Shared with the Fastify
 * plugin, which reads the same Node headers through its reply.
 */
export function routeHeaders(headers: HeaderValues, before: HeaderValues): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || sameValue(value, before[name])) continue
    if (Array.isArray(value)) for (const v of value) pairs.push([name, String(v)])
    else pairs.push([name, String(value)])
  }
  return pairs
}

/**
 * Whether the whole body can go out as the headers stand: a Content-Length of its size already (Express's
 * send sets it), and no framing a stream would have chosen. Known here, it saves three calls on the response.
 */
function framedAsWhole(headers: OutgoingHttpHeaders, size: number): boolean {
  const length = headers['content-length']
  return (
    length !== undefined &&
    String(length) === String(size) &&
    headers['transfer-encoding'] === undefined &&
    headers.trailer === undefined
  )
}

/** Too large or streamed: send what we have, let the rest flow, and keep only the status. */
function passThrough(res: ServerResponse, capture: Capture): void {
  capture.state = PASSTHROUGH
  if (capture.status !== undefined) res.statusCode = capture.status
  ;(capture.original.writeHead as (code: number) => ServerResponse).call(res, res.statusCode)
  const write = capture.original.write as (chunk: Buffer) => boolean
  if (capture.first !== undefined) write.call(res, capture.first)
  if (capture.more !== undefined) for (const chunk of capture.more) write.call(res, chunk)
  capture.first = undefined
  capture.more = undefined
}

function isStream(res: ServerResponse): boolean {
  const type = res.getHeader('content-type')
  return typeof type === 'string' && type.startsWith('text/event-stream')
}

function writeHead(res: ServerResponse, capture: Capture, code: number, reasonOrHeaders: unknown, headers: unknown) {
  capture.status = code
  if (typeof reasonOrHeaders === 'string') {
    res.statusMessage = reasonOrHeaders
    applyHeaders(res, headers)
  } else {
    applyHeaders(res, reasonOrHeaders)
  }
  if (isStream(res)) passThrough(res, capture)
  return res
}

function write(res: ServerResponse, capture: Capture, chunk: unknown, encoding: unknown, callback: unknown): boolean {
  if (isStream(res)) {
    passThrough(res, capture)
    return (capture.original.write as (...args: unknown[]) => boolean).call(res, chunk, encoding, callback)
  }
  keep(capture, toBuffer(chunk, encoding))
  if (capture.size > capture.execution.maxResponseBytes) passThrough(res, capture)
  const cb = typeof encoding === 'function' ? encoding : callback
  if (typeof cb === 'function') queueMicrotask(() => (cb as Callback)())
  return true
}

function end(res: ServerResponse, capture: Capture, chunk: unknown, encoding: unknown, callback: unknown) {
  let cb: Callback | undefined
  let data = chunk
  let enc = encoding
  if (typeof chunk === 'function') {
    cb = chunk as Callback
    data = undefined
    enc = undefined
  } else if (typeof encoding === 'function') {
    cb = encoding as Callback
    enc = undefined
  } else if (typeof callback === 'function') {
    cb = callback as Callback
  }
  const { execution } = capture
  if (capture.state === PASSTHROUGH) {
    release(res, capture)
    ;(capture.original.end as (...args: unknown[]) => ServerResponse).call(res, data, enc, cb)
    void execution.finish({ kind: 'unreplayable', status: res.statusCode })
    return res
  }
  if (data !== undefined && data !== null) keep(capture, toBuffer(data, enc))
  release(res, capture)
  const status = capture.status ?? res.statusCode
  const body = kept(capture)
  capture.first = undefined
  capture.more = undefined
  if (capture.size > execution.maxResponseBytes) {
    // Ended in one call larger than the limit: it is sent as it came, and kept as unreplayable.
    res.statusCode = status
    res.end(body, cb)
    void execution.finish({ kind: 'unreplayable', status })
    return res
  }
  const headers = res.getHeaders()
  const outcome = { kind: 'response', status, headers: routeHeaders(headers, capture.before), body } as const
  const whole = framedAsWhole(headers, body.byteLength)
  void execution
    .finish(outcome)
    .then((replacement) => sendCaptured(res, capture.before, outcome, whole, replacement, cb))
  return res
}

/** Once the engine stored (or refused) the captured response: send it, or what the engine answers instead. */
function sendCaptured(
  res: ServerResponse,
  before: OutgoingHttpHeaders,
  outcome: HandlerOutcome & { kind: 'response' },
  whole: boolean,
  replacement: HttpResponse | null,
  cb: Callback | undefined,
): void {
  if (replacement !== null) {
    // What the route set describes a response we will not send.
    for (const name of res.getHeaderNames()) if (!(name in before)) res.removeHeader(name)
    sendResponse(res, replacement)
  } else {
    res.statusCode = outcome.status
    if (!whole) {
      // The body goes out whole with its length: a framing the route chose for a stream would contradict it.
      res.removeHeader('transfer-encoding')
      res.removeHeader('trailer')
      res.setHeader('content-length', outcome.body.byteLength)
    }
    res.end(outcome.body)
  }
  cb?.()
}

/**
 * The four interceptors. On a prototype (`fallback`: the methods it had), they act only for captures that were
 * not set on the response itself; on a response, its capture's original methods are the fallback.
 */
function interceptors(fallback: ResponseMethods | undefined): ResponseMethods {
  const mine = (capture: Capture | undefined): capture is Capture =>
    capture !== undefined && capture.onInstance === (fallback === undefined)
  /** The methods to hand a call over to; undefined for an instance interceptor that lost its capture. */
  const originalOf = (capture: Capture | undefined) => fallback ?? capture?.original
  return {
    writeHead: function writeHead_(this: ServerResponse, code: number, reasonOrHeaders?: unknown, headers?: unknown) {
      const capture = captures.get(this)
      if (mine(capture) && capture.state === BUFFERING) return writeHead(this, capture, code, reasonOrHeaders, headers)
      const original = originalOf(capture)?.writeHead as ((...args: unknown[]) => ServerResponse) | undefined
      return original === undefined ? this : original.call(this, code, reasonOrHeaders, headers)
    } as ServerResponse['writeHead'],
    write: function write_(this: ServerResponse, chunk: unknown, encoding?: unknown, callback?: unknown) {
      const capture = captures.get(this)
      if (mine(capture) && capture.state === BUFFERING) return write(this, capture, chunk, encoding, callback)
      if (mine(capture) && capture.state === ENDED) return false
      const original = originalOf(capture)?.write as ((...args: unknown[]) => boolean) | undefined
      return original === undefined ? false : original.call(this, chunk, encoding, callback)
    } as ServerResponse['write'],
    end: function end_(this: ServerResponse, chunk?: unknown, encoding?: unknown, callback?: unknown) {
      const capture = captures.get(this)
      if (mine(capture)) return capture.state === ENDED ? this : end(this, capture, chunk, encoding, callback)
      const original = originalOf(capture)?.end as ((...args: unknown[]) => ServerResponse) | undefined
      return original === undefined ? this : original.call(this, chunk, encoding, callback)
    } as ServerResponse['end'],
    flushHeaders: function flushHeaders_(this: ServerResponse) {
      const capture = captures.get(this)
      if (mine(capture) && capture.state === BUFFERING) passThrough(this, capture)
      originalOf(capture)?.flushHeaders.call(this)
    },
  }
}

/** Set on the response itself when its methods are not a prototype's interceptors. */
const onInstance = interceptors(undefined)

/**
 * Installs the interceptors once on a prototype of responses (Express's `express.response`), so that capturing
 * one of its responses adds nothing to the response object. A response whose methods do not come from there
 * (a middleware replaced one on the response, or a prototype between overrides one) is captured on itself.
 */
export function interceptOnPrototype(prototype: ResponseMethods): void {
  if (onPrototypes.has(prototype.end)) return
  const original: ResponseMethods = {
    writeHead: prototype.writeHead,
    write: prototype.write,
    end: prototype.end,
    flushHeaders: prototype.flushHeaders,
  }
  const methods = interceptors(original)
  onPrototypes.set(methods.end, { methods, original })
  prototype.writeHead = methods.writeHead
  prototype.write = methods.write
  prototype.end = methods.end
  prototype.flushHeaders = methods.flushHeaders
}

/**
 * Intercepts `writeHead`, `write`, `end` and `flushHeaders` of `res`. Hooking the calls rather than `finish`
 * matters: `finish` never fires on a destroyed socket, and the result must be stored whatever the client did (P12).
 */
export function captureResponse(res: ServerResponse, execution: Execution): void {
  const before = res.getHeaders()
  for (const [name, value] of execution.headers) res.setHeader(name, value)
  const current: ResponseMethods = {
    writeHead: res.writeHead,
    write: res.write,
    end: res.end,
    flushHeaders: res.flushHeaders,
  }
  const installed = onPrototypes.get(current.end)
  const inherited =
    installed !== undefined &&
    current.writeHead === installed.methods.writeHead &&
    current.write === installed.methods.write &&
    current.flushHeaders === installed.methods.flushHeaders
  captures.set(res, {
    execution,
    original: inherited ? installed.original : current,
    onInstance: !inherited,
    before,
    state: BUFFERING,
    status: undefined,
    first: undefined,
    more: undefined,
    size: 0,
  })
  if (inherited) return
  res.writeHead = onInstance.writeHead
  res.write = onInstance.write
  res.end = onInstance.end
  res.flushHeaders = onInstance.flushHeaders
}
