/** Captures what a Node `ServerResponse` is sent (the calls, not the events) and sends it only after the engine stored it. */
import type { OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Execution } from '../../core/engine.js'
import { sendResponse } from './send-response.js'

type Encoding = BufferEncoding
type Callback = (error?: Error | null) => void

function toBuffer(chunk: unknown, encoding: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  return Buffer.from(String(chunk), typeof encoding === 'string' ? (encoding as Encoding) : 'utf8')
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

/**
 * Wraps `writeHead`, `write`, `end` and `flushHeaders` on `res`. Hooking the calls rather than `finish` matters:
 * `finish` never fires on a destroyed socket, and the result must be stored whatever the client did (P12).
 */
export function captureResponse(res: ServerResponse, execution: Execution): void {
  const before = new Map(Object.entries(res.getHeaders()))
  for (const [name, value] of execution.headers) res.setHeader(name, value)

  const original = {
    writeHead: res.writeHead,
    write: res.write,
    end: res.end,
    flushHeaders: res.flushHeaders,
  }
  let state: 'buffering' | 'passthrough' | 'ended' = 'buffering'
  let status: number | undefined
  const chunks: Buffer[] = []
  let size = 0

  function restore(keepEnd: boolean) {
    res.writeHead = original.writeHead
    res.write = original.write
    res.flushHeaders = original.flushHeaders
    if (!keepEnd) res.end = original.end
  }

  /** Headers the route set or changed after the middleware ran, in order, one pair per value. */
  function routeHeaders(): Array<[string, string]> {
    const pairs: Array<[string, string]> = []
    for (const name of res.getHeaderNames()) {
      const value = res.getHeader(name)
      if (value === undefined || sameValue(value, before.get(name))) continue
      for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, String(v)])
    }
    return pairs
  }

  /** Too large or streamed: send what we have, let the rest flow, and keep only the status. */
  function passThrough() {
    state = 'passthrough'
    restore(true)
    if (status !== undefined) res.statusCode = status
    ;(original.writeHead as (code: number) => ServerResponse).call(res, res.statusCode)
    for (const chunk of chunks) (original.write as (chunk: Buffer) => boolean).call(res, chunk)
    chunks.length = 0
  }

  function isStream(): boolean {
    return String(res.getHeader('content-type') ?? '').startsWith('text/event-stream')
  }

  res.writeHead = function writeHead(this: ServerResponse, code: number, ...rest: unknown[]) {
    status = code
    const [reasonOrHeaders, maybeHeaders] = rest
    if (typeof reasonOrHeaders === 'string') {
      res.statusMessage = reasonOrHeaders
      applyHeaders(res, maybeHeaders)
    } else {
      applyHeaders(res, reasonOrHeaders)
    }
    if (state === 'buffering' && isStream()) passThrough()
    return res
  } as ServerResponse['writeHead']

  res.flushHeaders = function flushHeaders() {
    if (state === 'buffering') passThrough()
    original.flushHeaders.call(res)
  }

  res.write = function write(chunk: unknown, encoding?: unknown, callback?: unknown) {
    if (state !== 'buffering') return false
    if (isStream()) {
      passThrough()
      return (original.write as (...args: unknown[]) => boolean).call(res, chunk, encoding, callback)
    }
    const buffer = toBuffer(chunk, encoding)
    chunks.push(buffer)
    size += buffer.byteLength
    if (size > execution.maxResponseBytes) passThrough()
    const cb = typeof encoding === 'function' ? encoding : callback
    if (typeof cb === 'function') queueMicrotask(() => (cb as Callback)())
    return true
  } as ServerResponse['write']

  res.end = function end(chunk?: unknown, encoding?: unknown, callback?: unknown) {
    const cb = [chunk, encoding, callback].find((a) => typeof a === 'function') as Callback | undefined
    const data = typeof chunk === 'function' ? undefined : chunk
    const enc = typeof encoding === 'function' ? undefined : encoding
    if (state === 'ended') return res
    if (state === 'passthrough') {
      state = 'ended'
      res.end = original.end
      ;(original.end as (...args: unknown[]) => ServerResponse).call(res, data, enc, cb)
      void execution.finish({ kind: 'unreplayable', status: res.statusCode })
      return res
    }
    if (data !== undefined && data !== null) {
      const buffer = toBuffer(data, enc)
      chunks.push(buffer)
      size += buffer.byteLength
    }
    state = 'ended'
    restore(false)
    const finalStatus = status ?? res.statusCode
    if (size > execution.maxResponseBytes) {
      // Ended in one call larger than the limit: it is sent as it came, and kept as unreplayable.
      res.statusCode = finalStatus
      res.end(Buffer.concat(chunks), cb)
      void execution.finish({ kind: 'unreplayable', status: finalStatus })
      return res
    }
    const body = Buffer.concat(chunks, size)
    void execution
      .finish({ kind: 'response', status: finalStatus, headers: routeHeaders(), body })
      .then((replacement) => {
        if (replacement !== null) {
          // What the route set describes a response we will not send.
          for (const name of res.getHeaderNames()) if (!before.has(name)) res.removeHeader(name)
          sendResponse(res, replacement)
        } else {
          res.statusCode = finalStatus
          // The body goes out whole with its length: a framing the route chose for a stream would contradict it.
          res.removeHeader('transfer-encoding')
          res.removeHeader('trailer')
          res.setHeader('content-length', body.byteLength)
          res.end(body)
        }
        cb?.()
      })
    return res
  } as ServerResponse['end']
}
