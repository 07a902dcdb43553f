/** Writes an engine response through Node's raw API: byte for byte, no Express helper rewriting headers. */
import type { ServerResponse } from 'node:http'
import type { HttpResponse } from '../../core/http.js'

/**
 * Headers by lower-cased name, in order, a repeated name as one array of its values; `omit` (lower-cased) is left
 * out. A null-prototype object, so that no header name reaches the prototype. Shared with the Fastify plugin.
 */
export function groupHeaders(headers: HttpResponse['headers'], omit?: string): Record<string, string | string[]> {
  const grouped: Record<string, string | string[]> = Object.create(null)
  for (const [name, value] of headers) {
    const key = name.toLowerCase()
    if (key === omit) continue
    const seen = grouped[key]
    if (seen === undefined) grouped[key] = value
    else if (Array.isArray(seen)) seen.push(value)
    else grouped[key] = [seen, value]
  }
  return grouped
}

/**
 * Sends each header once (repeated names as one array, in order) in a single `writeHead`, and ends with the
 * exact bytes. One call, not a `setHeader` per header: on Express each method call on the response is slow.
 */
export function sendResponse(res: ServerResponse, response: HttpResponse): void {
  // Express's res.set() would append '; charset=utf-8' and res.send() an ETag (design-review H2).
  res.writeHead(response.status, groupHeaders(response.headers))
  res.end(Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength))
}
