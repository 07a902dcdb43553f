/** The engine's view of a request on Node's HTTP server: one object per request, its header lookup shared. */
import type { IncomingHttpHeaders } from 'node:http'
import type { FingerprintBody } from '../../core/fingerprint.js'
import type { IdempotencyRequest } from '../../core/http.js'

/** An `IdempotencyRequest` over Node's parsed headers, with no closure per request. */
export class NodeEngineRequest implements IdempotencyRequest {
  readonly method: string
  readonly url: string
  readonly body: FingerprintBody
  readonly contentType: string | undefined
  readonly scope: string
  readonly signal?: AbortSignal
  readonly #headers: IncomingHttpHeaders

  constructor(
    method: string,
    url: string,
    headers: IncomingHttpHeaders,
    body: FingerprintBody,
    scope: string,
    signal: AbortSignal | undefined,
  ) {
    this.method = method
    this.url = url
    this.#headers = headers
    this.body = body
    this.contentType = headers['content-type']
    this.scope = scope
    if (signal !== undefined) this.signal = signal
  }

  header(name: string): string | undefined {
    const value = this.#headers[name]
    return Array.isArray(value) ? value.join(', ') : value
  }
}

/** Whether a request carries a body by its headers: chunked, or a Content-Length above 0. */
export function hasBody(headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  return headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0
}
