/** Client-facing rejections as RFC 9457 problem+json, with the seed's `error` and `message` fields. */
import type { HttpResponse } from './http.js'

export type ProblemCode =
  | 'IDEMPOTENCY_KEY_REQUIRED'
  | 'INVALID_IDEMPOTENCY_KEY'
  | 'INVALID_REQUEST_BODY'
  | 'REQUEST_IN_PROGRESS'
  | 'IDEMPOTENT_RESPONSE_NOT_STORED'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'IDEMPOTENCY_RECORD_LIMIT_REACHED'
  | 'IDEMPOTENCY_STORE_UNAVAILABLE'

const STATUS: Record<ProblemCode, number> = {
  IDEMPOTENCY_KEY_REQUIRED: 400,
  INVALID_IDEMPOTENCY_KEY: 400,
  INVALID_REQUEST_BODY: 400,
  REQUEST_IN_PROGRESS: 409,
  IDEMPOTENT_RESPONSE_NOT_STORED: 410,
  // IETF draft §2.7: a key reused with another payload is 422, checked before "in progress".
  IDEMPOTENCY_KEY_REUSED: 422,
  // A tenant past its store's maxRecordsPerScope: its own excess, not the server's fault.
  IDEMPOTENCY_RECORD_LIMIT_REACHED: 429,
  IDEMPOTENCY_STORE_UNAVAILABLE: 503,
}

const TITLE: Record<ProblemCode, string> = {
  IDEMPOTENCY_KEY_REQUIRED: 'Idempotency key required',
  INVALID_IDEMPOTENCY_KEY: 'Invalid idempotency key',
  INVALID_REQUEST_BODY: 'Invalid request body',
  REQUEST_IN_PROGRESS: 'Request in progress',
  IDEMPOTENT_RESPONSE_NOT_STORED: 'Idempotent response not stored',
  IDEMPOTENCY_KEY_REUSED: 'Idempotency key reused',
  IDEMPOTENCY_RECORD_LIMIT_REACHED: 'Idempotency record limit reached',
  IDEMPOTENCY_STORE_UNAVAILABLE: 'Idempotency store unavailable',
}

/** The stable `type` URI of a problem code; `docs/errors.md` has a heading per code. */
export function problemType(code: string): string {
  return `urn:idempotency-kit:problem:${code.toLowerCase().replaceAll('_', '-')}`
}

const encoder = new TextEncoder()

/**
 * Renders any problem (the engine's, or an adapter's body-parser errors) as problem+json bytes.
 * `extra` members are added after the standard ones.
 */
export function problemResponse(
  status: number,
  code: string,
  title: string,
  detail: string,
  extra: Readonly<Record<string, unknown>> = {},
  headers: ReadonlyArray<readonly [string, string]> = [],
): HttpResponse {
  const body = encoder.encode(
    JSON.stringify({ type: problemType(code), title, status, detail, error: code, message: detail, ...extra }),
  )
  return {
    status,
    headers: [['content-type', 'application/problem+json'], ['content-length', String(body.byteLength)], ...headers],
    body,
  }
}

/** One of the engine's own rejections. */
export function rejection(
  code: ProblemCode,
  detail: string,
  extra?: Readonly<Record<string, unknown>>,
  headers?: ReadonlyArray<readonly [string, string]>,
): HttpResponse {
  return problemResponse(STATUS[code], code, TITLE[code], detail, extra, headers)
}

/** A body parser's refusal (before the idempotency middleware; never stored) as problem+json. */
export function bodyParserProblem(status: number, detail: string): HttpResponse {
  if (status === 413) return problemResponse(413, 'REQUEST_BODY_TOO_LARGE', 'Request body too large', detail)
  if (status === 415) return problemResponse(415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type', detail)
  return problemResponse(400, 'MALFORMED_REQUEST_BODY', 'Malformed request body', detail)
}
