/** Between Koa's `ctx.status`/`ctx.body` and the engine: settle a route's body into bytes, render a response. */
import type { OutgoingHttpHeader } from 'node:http'
import type { Context } from 'koa'
import type { HandlerOutcome } from '../../core/engine.js'
import type { HttpResponse } from '../../core/http.js'

/** Statuses Koa sends without a body. */
const EMPTY = new Set([204, 205, 304])

type Snapshot = ReadonlyMap<string, OutgoingHttpHeader | undefined>

/** The response headers as they are now, to tell later which ones the route set. */
export function snapshotHeaders(ctx: Context): Snapshot {
  return new Map(Object.entries(ctx.res.getHeaders()))
}

function sameValue(a: OutgoingHttpHeader | undefined, b: OutgoingHttpHeader | undefined): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i])
  return a === b
}

/** Headers the route set or changed after the middleware ran, in order, one pair per value. */
function routeHeaders(ctx: Context, before: Snapshot): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  for (const [name, value] of Object.entries(ctx.res.getHeaders())) {
    if (value === undefined || sameValue(value, before.get(name))) continue
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, String(v)])
  }
  return pairs
}

function isStream(body: unknown): boolean {
  return (
    body instanceof ReadableStream ||
    body instanceof Response ||
    (typeof body === 'object' && body !== null && typeof (body as { pipe?: unknown }).pipe === 'function')
  )
}

/**
 * The bytes Koa's `respond()` would write for `ctx.body`, or null for a body only a stream can carry. A null body
 * Koa renders as its status message: that is set here as a string body, so its Content-Type is captured too.
 */
async function bodyBytes(ctx: Context): Promise<Buffer | null> {
  const body: unknown = ctx.body
  if (EMPTY.has(ctx.status)) return Buffer.alloc(0)
  if (body === null || body === undefined) {
    if ((ctx.response as { _explicitNullBody?: boolean })._explicitNullBody) return Buffer.alloc(0)
    const status = ctx.status
    ctx.body = ctx.req.httpVersionMajor >= 2 ? String(status) : ctx.message || String(status)
    ctx.type = 'text'
    ctx.status = status
    return Buffer.from(ctx.body as string)
  }
  if (Buffer.isBuffer(body)) return body
  if (typeof body === 'string') return Buffer.from(body)
  if (isStream(body)) return null
  if (body instanceof Blob) return Buffer.from(await body.arrayBuffer())
  // Koa sends anything else as JSON; a value JSON.stringify refuses throws here as it would in respond().
  return Buffer.from(JSON.stringify(body))
}

/** What the route produced: the outcome for the engine, and the bytes to send when they were buffered. */
export interface Settled {
  readonly outcome: HandlerOutcome
  readonly body: Buffer | null
}

/**
 * Settles the route's response after `await next()`. A stream body, a route that wrote to `ctx.res` itself
 * (`ctx.respond = false`, headers already sent) or a body over the limit is sent as is and kept as unreplayable.
 */
export async function settleResponse(ctx: Context, before: Snapshot, maxBytes: number): Promise<Settled> {
  if (ctx.respond === false || ctx.headerSent) {
    return { outcome: { kind: 'unreplayable', status: ctx.res.statusCode }, body: null }
  }
  const status = ctx.status
  const bytes = await bodyBytes(ctx)
  if (bytes === null || bytes.byteLength > maxBytes) return { outcome: { kind: 'unreplayable', status }, body: null }
  if (!EMPTY.has(status)) {
    // Exactly these bytes are sent (an object is not serialized a second time) with their Content-Length.
    ctx.body = bytes
    ctx.status = status
  }
  return { outcome: { kind: 'response', status, headers: routeHeaders(ctx, before), body: bytes }, body: bytes }
}

/** Renders an engine response through Koa: its status, its headers (repeated names as one array), its bytes. */
export function renderResponse(ctx: Context, response: HttpResponse): void {
  const grouped = new Map<string, string[]>()
  for (const [name, value] of response.headers) {
    const values = grouped.get(name.toLowerCase())
    if (values === undefined) grouped.set(name.toLowerCase(), [value])
    else values.push(value)
  }
  ctx.status = response.status
  for (const [name, values] of grouped) ctx.set(name, values.length === 1 ? (values[0] as string) : values)
  ctx.body = Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength)
}

/** Removes what the route set, so a replacement response does not carry headers describing another one. */
export function clearRouteHeaders(ctx: Context, before: Snapshot): void {
  for (const name of ctx.res.getHeaderNames()) if (!before.has(name)) ctx.remove(name)
}
