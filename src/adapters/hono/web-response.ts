/** Between Web `Response`s and the engine: capture a route's response within the limit, build one from pairs. */
import type { HandlerOutcome } from '../../core/engine.js'
import type { HttpResponse } from '../../core/http.js'

/** Statuses whose `Response` must have a null body (the constructor throws otherwise). */
const NULL_BODY = new Set([101, 103, 204, 205, 304])

/** What to send and what to tell the engine about it. */
export interface Captured {
  readonly outcome: HandlerOutcome
  readonly response: Response
}

/** `base` (headers set before the middleware ran) with `pairs` replacing any header of the same name. */
export function headersFrom(base: Headers, pairs: ReadonlyArray<readonly [string, string]>): Headers {
  const headers = new Headers(base)
  for (const name of new Set(pairs.map(([n]) => n.toLowerCase()))) headers.delete(name)
  for (const [name, value] of pairs) headers.append(name, value)
  return headers
}

/** A `Response` of exactly these bytes, with an explicit Content-Length. */
export function toResponse(response: HttpResponse, base: Headers, statusText?: string): Response {
  const headers = headersFrom(base, response.headers)
  const empty = NULL_BODY.has(response.status)
  if (empty) headers.delete('content-length')
  else headers.set('content-length', String(response.body.byteLength))
  return new Response(empty ? null : (response.body as Uint8Array<ArrayBuffer>), {
    status: response.status,
    headers,
    ...(statusText === undefined ? {} : { statusText }),
  })
}

/** Headers the route set or changed after the middleware ran; Set-Cookie is dropped by the engine anyway. */
function routeHeaders(headers: Headers, before: Headers): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  for (const [name, value] of headers) if (before.get(name) !== value) pairs.push([name, value])
  return pairs
}

/** Sends the chunks already read, then the rest of the stream as it comes. */
function continued(chunks: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = chunks.shift()
      if (next !== undefined) return controller.enqueue(next)
      const { done, value } = await reader.read()
      if (done) controller.close()
      else controller.enqueue(value)
    },
    cancel: (reason) => reader.cancel(reason),
  })
}

/**
 * Reads the route's response body up to `maxBytes`. Whole: the outcome is the bytes, sent with an exact
 * Content-Length. Larger, announced larger, or an event stream: it passes through as it comes and the outcome is
 * `unreplayable`, never a truncated body.
 */
export async function captureResponse(res: Response, before: Headers, maxBytes: number): Promise<Captured> {
  const { status, statusText } = res
  const passThrough = (body: ReadableStream<Uint8Array> | null): Captured => ({
    outcome: { kind: 'unreplayable', status },
    response: new Response(body, { status, statusText, headers: res.headers }),
  })
  const announced = Number(res.headers.get('content-length') ?? Number.NaN)
  const streamed = (res.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream')
  if (res.body !== null && (streamed || announced > maxBytes)) return passThrough(res.body)

  const chunks: Uint8Array[] = []
  let size = 0
  if (res.body !== null) {
    const reader = res.body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.byteLength
      if (size > maxBytes) return passThrough(continued(chunks, reader))
    }
  }
  const body = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    body.set(chunk, offset)
    offset += chunk.byteLength
  }
  const headers = routeHeaders(res.headers, before)
  return {
    outcome: { kind: 'response', status, headers, body },
    response: toResponse({ status, headers: [...res.headers], body }, new Headers(), statusText),
  }
}
