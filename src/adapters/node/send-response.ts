/** Writes an engine response through Node's raw API: byte for byte, no Express helper rewriting headers. */
import type { ServerResponse } from 'node:http'
import type { HttpResponse } from '../../core/http.js'

/** Sets each header once (repeated names as one array, in order) and ends with the exact bytes. */
export function sendResponse(res: ServerResponse, response: HttpResponse): void {
  // Express's res.set() would append '; charset=utf-8' and res.send() an ETag (design-review H2).
  const grouped = new Map<string, string[]>()
  for (const [name, value] of response.headers) {
    const values = grouped.get(name.toLowerCase())
    if (values === undefined) grouped.set(name.toLowerCase(), [value])
    else values.push(value)
  }
  res.statusCode = response.status
  for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? (values[0] as string) : values)
  res.end(Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength))
}
