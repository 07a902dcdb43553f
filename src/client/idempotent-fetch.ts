/** A `fetch` wrapper that sends one `Idempotency-Key` per logical request and retries only when that is safe. */
import { IdempotencyConfigError } from '../core/errors.js'

/** The `fetch` signature this wrapper takes and returns. */
export type FetchFunction = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>

/** Options of `createIdempotentFetch`, resolved and validated once. */
export interface IdempotentFetchOptions {
  /** The `fetch` that sends each attempt. Default: the global `fetch`, looked up at call time. */
  readonly fetch?: FetchFunction
  /** Header carrying the key. Default `Idempotency-Key`. */
  readonly headerName?: string
  /** Methods that get a key (and retries) without the caller giving one. Default POST, PUT, PATCH. */
  readonly methods?: readonly string[]
  /** Attempts per logical request, the first one included. Default 5. */
  readonly maxAttempts?: number
  /** Bound on the whole call, attempts and waits included, until a response's headers arrive. Default 30 s. */
  readonly timeoutMs?: number
  /** Backoff of the first retry before jitter; doubles with each retry. Default 200 ms. */
  readonly baseDelayMs?: number
  /** Cap of the exponential backoff (a server's longer `Retry-After` is still honoured). Default 10 s. */
  readonly maxDelayMs?: number
  /** Makes a key for a request that came without one. Default `crypto.randomUUID()`. */
  readonly generateKey?: () => string
  /** Called before each wait, so a caller can log retries; a throwing listener is ignored. */
  readonly onRetry?: (event: RetryEvent) => void
}

/** What ended an attempt that will be retried. */
export type RetryCause =
  | { readonly kind: 'network'; readonly error: unknown }
  | { readonly kind: 'status'; readonly status: number; readonly retryAfterMs: number | undefined }

type StatusCause = Extract<RetryCause, { readonly kind: 'status' }>

/** One scheduled retry. */
export interface RetryEvent {
  readonly key: string
  /** The attempt that just failed (1 for the first). */
  readonly attempt: number
  /** How long the client waits before the next attempt. */
  readonly delayMs: number
  readonly cause: RetryCause
}

/** `RequestInit` plus the per-request choices of the idempotent fetch. */
export interface IdempotentRequestInit extends RequestInit {
  /** This logical request's key; the same as setting the `Idempotency-Key` header yourself. */
  readonly idempotencyKey?: string
  /**
   * Makes a fresh body for every attempt, instead of `body`: how a stream body becomes retryable. It must
   * produce the same bytes each time, or the server answers 422 to the retry.
   */
  readonly bodyFactory?: () => BodyInit | PromiseLike<BodyInit>
}

/** The key a request was sent with and how many attempts it took. */
export interface IdempotencyInfo {
  readonly key: string
  readonly attempts: number
}

/** A `fetch` that takes the idempotent fetch's extra init fields. */
export type IdempotentFetch = (input: RequestInfo | URL, init?: IdempotentRequestInit) => Promise<Response>

// Fetch's Response headers are immutable and a wrapping Response would lose `url`, `redirected` and `type`,
// so the key and the attempt count ride beside the object instead of on it.
const infos = new WeakMap<object, IdempotencyInfo>()

/**
 * The key and attempt count behind a response (or an error) from an idempotent fetch; undefined for a
 * request that was passed straight through (a method without a key).
 */
export function idempotencyInfo(responseOrError: unknown): IdempotencyInfo | undefined {
  return typeof responseOrError === 'object' && responseOrError !== null ? infos.get(responseOrError) : undefined
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

interface Resolved {
  readonly fetch: FetchFunction | undefined
  readonly headerName: string
  readonly methods: ReadonlySet<string>
  readonly maxAttempts: number
  readonly timeoutMs: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  readonly generateKey: () => string
  readonly onRetry: ((event: RetryEvent) => void) | undefined
}

function resolve(options: IdempotentFetchOptions): Resolved {
  const number = (name: string, value: number | undefined, fallback: number, min: number): number => {
    const v = value ?? fallback
    if (typeof v !== 'number' || Number.isNaN(v) || v < min) {
      throw new IdempotencyConfigError(`${name} must be a number ≥ ${min}, got ${String(v)}`)
    }
    return v
  }
  const maxAttempts = number('maxAttempts', options.maxAttempts, 5, 1)
  if (!Number.isInteger(maxAttempts)) throw new IdempotencyConfigError('maxAttempts must be a whole number')
  const headerName = options.headerName ?? 'Idempotency-Key'
  if (!TOKEN.test(headerName)) throw new IdempotencyConfigError(`headerName is not a header name: ${headerName}`)
  return {
    fetch: options.fetch,
    headerName,
    methods: new Set((options.methods ?? ['POST', 'PUT', 'PATCH']).map((m) => m.toUpperCase())),
    maxAttempts,
    timeoutMs: number('timeoutMs', options.timeoutMs, 30_000, 1),
    baseDelayMs: number('baseDelayMs', options.baseDelayMs, 200, 0),
    maxDelayMs: number('maxDelayMs', options.maxDelayMs, 10_000, 0),
    generateKey: options.generateKey ?? (() => crypto.randomUUID()),
    onRetry: options.onRetry,
  }
}

/**
 * Milliseconds a `Retry-After` value asks for: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined
 * when absent or unreadable. A date in the past asks for no wait.
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  // Every HTTP-date names its month; without the letter test, engines read "-1" or "1.5" as dates.
  if (!/[A-Za-z]/.test(trimmed)) return undefined
  // Date.parse reads IMF-fixdate and the two obsolete forms RFC 9110 §5.6.7 obliges recipients to accept,
  // but takes asctime's zoneless form as local time, where HTTP means GMT.
  const at = Date.parse(/\d{4}$/.test(trimmed) ? `${trimmed} GMT` : trimmed)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** Exponential backoff with full jitter: uniform in [0, min(max, base · 2^(retry − 1))). */
export function backoffDelay(retry: number, baseDelayMs: number, maxDelayMs: number, random = Math.random): number {
  return random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (retry - 1))
}

/** How each attempt's body is made. */
type BodySource =
  | { readonly kind: 'none' }
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array<ArrayBuffer> }
  | { readonly kind: 'one-shot'; readonly body: BodyInit }
  | { readonly kind: 'factory'; readonly make: () => BodyInit | PromiseLike<BodyInit> }

function isOneShot(body: BodyInit): boolean {
  if (typeof body !== 'object' || body === null) return false
  // A ReadableStream, or an async iterable (which Node's fetch also takes): read once, gone.
  return typeof (body as { getReader?: unknown }).getReader === 'function' || Symbol.asyncIterator in body
}

/** The request as every attempt repeats it. */
interface Prepared {
  readonly template: Request
  readonly headers: Headers
  readonly body: BodySource
}

/**
 * Fixes URL, method, headers and body once. Retryable bodies are read into bytes now, so every attempt sends
 * the same bytes and the same Content-Type (a FormData serialised per attempt would get a new boundary, and
 * the server would see a different request under the same key).
 */
async function prepare(
  input: RequestInfo | URL,
  init: RequestInit,
  bodyFactory: IdempotentRequestInit['bodyFactory'],
): Promise<Prepared> {
  const { body: initBody, ...rest } = init
  const hasInitBody = initBody !== undefined && initBody !== null
  if (hasInitBody && bodyFactory !== undefined) throw new TypeError('Give either body or bodyFactory, not both')
  // Without the caller's body: a stream must reach the wire untouched, and it is not read here.
  const template = new Request(input, rest)
  const headers = new Headers(template.headers)
  let body: BodySource = { kind: 'none' }
  if (bodyFactory !== undefined) {
    body = { kind: 'factory', make: bodyFactory }
  } else if (hasInitBody && isOneShot(initBody)) {
    body = { kind: 'one-shot', body: initBody }
  } else if (hasInitBody || template.body !== null) {
    // A Request input's body is read here too: we own it from now on, as fetch would.
    const carrier = hasInitBody ? new Request('http://body.invalid/', { method: 'POST', body: initBody }) : template
    const type = carrier.headers.get('content-type')
    if (type !== null && !headers.has('content-type')) headers.set('content-type', type)
    body = { kind: 'bytes', bytes: new Uint8Array(await carrier.arrayBuffer()) }
  }
  return { template, headers, body }
}

async function bodyFor(source: BodySource): Promise<BodyInit | null> {
  switch (source.kind) {
    case 'none':
      return null
    case 'bytes':
      return source.bytes
    case 'one-shot':
      return source.body
    case 'factory':
      return await source.make()
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError')
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortReason(signal))
    const onAbort = () => {
      clearTimeout(timer)
      reject(abortReason(signal))
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** A signal that aborts when `caller` does or when `ms` pass; `clear()` stops the clock, not the caller. */
function attemptSignal(caller: AbortSignal, ms: number): { signal: AbortSignal; timedOut(): boolean; clear(): void } {
  const clock = new AbortController()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    clock.abort(new DOMException('The idempotent fetch ran out of time', 'TimeoutError'))
  }, ms)
  // AbortSignal.any holds its sources weakly, so a caller's long-lived signal does not collect listeners.
  const signal = AbortSignal.any([caller, clock.signal])
  return { signal, timedOut: () => timedOut, clear: () => clearTimeout(timer) }
}

/** How one attempt ended. */
type AttemptOutcome =
  | { readonly kind: 'response'; readonly response: Response }
  | { readonly kind: 'network'; readonly error: unknown }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'timeout' }

/** Whether a response may be asked again under the same key, and after how long the server wants it. */
async function retryableStatus(response: Response): Promise<StatusCause | undefined> {
  // A replay is the first execution's final answer, even a stored 5xx: asking again gets it again.
  if (response.headers.has('idempotent-replayed')) return undefined
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'))
  const cause: StatusCause = { kind: 'status', status: response.status, retryAfterMs }
  if (response.status >= 500) return cause
  if (response.status === 409 && (await isRequestInProgress(response))) return cause
  return undefined
}

/** 409 also means the route's own conflicts (optimistic locking), which no retry fixes: read the problem code. */
async function isRequestInProgress(response: Response): Promise<boolean> {
  try {
    const problem = (await response.clone().json()) as { error?: unknown; type?: unknown }
    return problem.error === 'REQUEST_IN_PROGRESS' || problem.type === 'urn:idempotency-kit:problem:request-in-progress'
  } catch {
    return false
  }
}

async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel()
  } catch {
    // The connection is going away anyway.
  }
}

function remember<T>(target: T, info: IdempotencyInfo): T {
  if (typeof target === 'object' && target !== null) infos.set(target, info)
  return target
}

/**
 * Makes a `fetch` that gives each logical request one `Idempotency-Key`, keeps it across retries, and
 * retries network errors, unreplayed 5xx, 409 `REQUEST_IN_PROGRESS` and 503 with backoff and `Retry-After`.
 *
 * @example
 * const fetch = createIdempotentFetch()
 * const res = await fetch('/api/payments/charge', { method: 'POST', body: JSON.stringify(payment) })
 * idempotencyInfo(res) // { key: '6f1c…', attempts: 1 }
 */
export function createIdempotentFetch(options: IdempotentFetchOptions = {}): IdempotentFetch {
  const o = resolve(options)

  return async function idempotentFetch(input, init = {}) {
    const { idempotencyKey, bodyFactory, ...fetchInit } = init
    const send: FetchFunction = o.fetch ?? ((i, n) => fetch(i, n))
    const method = (fetchInit.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase()
    const ownKey = new Headers(fetchInit.headers ?? (input instanceof Request ? input.headers : undefined)).get(
      o.headerName,
    )
    if (idempotencyKey !== undefined && ownKey !== null && idempotencyKey !== ownKey) {
      throw new TypeError(`idempotencyKey and the ${o.headerName} header disagree`)
    }
    const callerKey = idempotencyKey ?? ownKey ?? undefined
    // A method outside the list, without a key of the caller's, is not ours to key or to retry.
    if (callerKey === undefined && !o.methods.has(method)) {
      return send(input, bodyFactory === undefined ? fetchInit : { ...fetchInit, body: await bodyFactory() })
    }

    // Monotonic: a wall clock stepped by NTP must not stretch or cut the bound.
    const deadline = performance.now() + o.timeoutMs
    const prepared = await prepare(input, fetchInit, bodyFactory)
    const key = callerKey ?? o.generateKey()
    prepared.headers.set(o.headerName, key)
    const caller = prepared.template.signal
    const replayable = prepared.body.kind !== 'one-shot'

    for (let attempt = 1; ; attempt++) {
      const info: IdempotencyInfo = { key, attempts: attempt }
      if (caller.aborted) throw remember(abortReason(caller), info)
      const outcome = await sendOnce(await bodyFor(prepared.body))
      switch (outcome.kind) {
        case 'aborted':
          throw remember(abortReason(caller), info)
        case 'timeout':
          throw remember(new DOMException(`No response within timeoutMs (${o.timeoutMs} ms)`, 'TimeoutError'), info)
        case 'network': {
          const delayMs = replayable ? nextDelay(attempt, undefined) : undefined
          if (delayMs === undefined) throw remember(outcome.error, info)
          await wait(attempt, delayMs, { kind: 'network', error: outcome.error })
          break
        }
        case 'response': {
          const cause = await retryableStatus(outcome.response)
          const delayMs = cause !== undefined && replayable ? nextDelay(attempt, cause.retryAfterMs) : undefined
          if (cause === undefined || delayMs === undefined) return remember(outcome.response, info)
          await discard(outcome.response)
          await wait(attempt, delayMs, cause)
          break
        }
      }
    }

    /** One attempt, bounded by what is left of the deadline; the caller's signal also covers the body read. */
    async function sendOnce(body: BodyInit | null): Promise<AttemptOutcome> {
      const clock = attemptSignal(caller, deadline - performance.now())
      const init: RequestInit & { duplex?: 'half' } = { headers: prepared.headers, body, signal: clock.signal }
      // Node's fetch refuses a stream body without it (fetch spec: the "duplex" member).
      if (body !== null && isOneShot(body)) init.duplex = 'half'
      try {
        return { kind: 'response', response: await send(new Request(prepared.template, init)) }
      } catch (error) {
        if (caller.aborted) return { kind: 'aborted' }
        if (clock.timedOut()) return { kind: 'timeout' }
        return { kind: 'network', error }
      } finally {
        clock.clear()
      }
    }

    /** The wait before the next attempt, or undefined when none is left or it would end past the deadline. */
    function nextDelay(attempt: number, retryAfterMs: number | undefined): number | undefined {
      if (attempt >= o.maxAttempts) return undefined
      const backoff = backoffDelay(attempt, o.baseDelayMs, o.maxDelayMs)
      const delayMs = retryAfterMs === undefined ? backoff : Math.max(retryAfterMs, backoff)
      return performance.now() + delayMs < deadline ? delayMs : undefined
    }

    async function wait(attempt: number, delayMs: number, cause: RetryCause): Promise<void> {
      try {
        o.onRetry?.({ key, attempt, delayMs, cause })
      } catch {
        // A throwing listener must not change what the caller gets.
      }
      try {
        await sleep(delayMs, caller)
      } catch (reason) {
        throw remember(reason, { key, attempts: attempt })
      }
    }
  }
}
