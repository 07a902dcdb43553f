/** Writes an engine response through Node's raw API: byte for byte, no Express helper rewriting headers. */
import type { ServerResponse } from 'node:http'
import type { HttpResponse } from '../../core/http.js'

/**
 * Sends each header once (repeated names as one array, in order) in a single `writeHead`, and ends with the
 * exact bytes. One call, not a `setHeader` per header: on Express each method call on the response is slow.
 */
export function sendResponse(res: ServerResponse, response: HttpResponse): void {
  // Express's res.set() would append '; charset=utf-8' and res.send() an ETag (design-review H2).
  const headers: Record<string, string | string[]> = Object.create(null)
  for (const [name, value] of response.headers) {
    const key = name.toLowerCase()
    const seen = headers[key]
    if (seen === undefined) headers[key] = value
    else if (Array.isArray(seen)) seen.push(value)
    else headers[key] = [seen, value]
  }
  res.writeHead(response.status, headers)
  res.end(Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength))
}
