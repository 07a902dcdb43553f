/** The framework-neutral request and response an adapter translates to and from. */
import type { FingerprintBody } from './fingerprint.js'

/** A response to write as is: status, ordered header pairs (latin1 values), body bytes. */
export interface HttpResponse {
  readonly status: number
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
  readonly body: Uint8Array
}

/** What the engine needs to know of a request. Adapters build it; they decide nothing. */
export interface IdempotencyRequest {
  readonly method: string
  /** The full path with query, as the client sent it (Express `originalUrl`, never the mounted `url`). */
  readonly url: string
  /** A request header by lower-case name; repeated lines joined with ', ' (as Node does). */
  header(name: string): string | undefined
  /** The body as the adapter could obtain it: raw bytes preferred, a parsed value as a fallback. */
  readonly body: FingerprintBody
  /** The request's Content-Type, if any. */
  readonly contentType: string | undefined
  /** The authenticated principal's id; '' when unscoped. */
  readonly scope: string
  /** Aborts when the client goes away; only ends a wait, never a running handler. */
  readonly signal?: AbortSignal
}
