/** `idempotent(fn)`: any async function run once per key, through the same engine as the HTTP adapters. */
import { canonicalizeValue } from '../core/canonical-json.js'
import type { Decision, Execution, HandlerOutcome } from '../core/engine.js'
import { IdempotencyConfigError, IdempotencyStoreError } from '../core/errors.js'
import type { IdempotencyEvent } from '../core/events.js'
import { toHex } from '../core/fingerprint.js'
import type { HttpResponse } from '../core/http.js'
import { parseIdempotencyKey } from '../core/key.js'
import type { Lease } from '../core/lease.js'
import type { IdempotencyOptions, RouteOptions } from '../core/options.js'
import { defaultStoragePolicy } from '../core/policy.js'
import type { ProblemCode } from '../core/problem.js'
import { createIdempotency } from '../create-idempotency.js'
import {
  IdempotencyInProgressError,
  IdempotencyKeyReusedError,
  IdempotencyRecordLimitError,
  IdempotencyValueError,
  IdempotentError,
} from './errors.js'
import { decodeValue, encodeValue } from './value-codec.js'

/** Options of `idempotent(fn, options)`: the engine's (store, lease, retention, …) plus how a call is keyed. */
export interface IdempotentOptions<A extends unknown[]>
  extends Pick<
      IdempotencyOptions,
      | 'store'
      | 'crypto'
      | 'leaseMs'
      | 'heartbeatMs'
      | 'extendTimeoutMs'
      | 'beginTimeoutMs'
      | 'storeTimeoutMs'
      | 'retentionMs'
      | 'maxExecutionMs'
      | 'onEvent'
    >,
    Pick<RouteOptions, 'onConflict' | 'waitMs' | 'onStoreError'> {
  /**
   * Names the function's keys apart from other functions' in the same store. Default `fn.name`; set it
   * when the function is anonymous or the code is minified (a renamed function starts over on new keys).
   */
  readonly name?: string
  /**
   * The key of a call, e.g. `(message) => message.id`. Then a second call with that key and other
   * arguments throws `IdempotencyKeyReusedError`. Default: a hash of the arguments (equal arguments,
   * one execution).
   */
  readonly key?: (...args: A) => string
  /** What of the arguments must match when a key is reused (default all of them); also the default key. */
  readonly fingerprint?: (...args: A) => unknown
  /** Keeps tenants apart: the same key under two scopes is two keys. Default none. */
  readonly scope?: string | ((...args: A) => string)
  /** Pass the `Lease` as the function's first argument: `(lease, ...args)`. Default false. */
  readonly withLease?: boolean
  /** A larger encoded return value is refused like an unsupported one. Default 1 MiB. */
  readonly maxValueBytes?: number
  /** Nesting limit of arguments and return values. Default 128. */
  readonly maxDepth?: number
}

/** The idempotent version of a function: same arguments, a promise of the same result. */
export interface IdempotentFunction<A extends unknown[], R> {
  (...args: A): Promise<R>
  /** Calls with an explicit key instead of `options.key` or the arguments' hash. */
  withKey(key: string, ...args: A): Promise<R>
  /** Stops taking calls, lets running ones finish within `graceMs`, then releases uncommitted keys. */
  close(options?: { readonly graceMs?: number }): Promise<void>
}

const VALUE_TYPE = 'application/vnd.idempotency-kit.value'
const ERROR_TYPE = 'application/vnd.idempotency-kit.error'
// Not a JSON media type: the engine hashes these canonical bytes as they are.
const ARGUMENTS_TYPE = 'application/vnd.idempotency-kit.arguments'
const FORMAT = 1
const MAX_ERROR_TEXT = 8 * 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

type Invoke = (lease: Lease, args: unknown[]) => unknown

/**
 * Makes a function idempotent: a call whose key already completed returns the stored result (or rethrows
 * the stored failure as `IdempotentError`) without running it; a call while another runs throws
 * `IdempotencyInProgressError` (or waits, with `onConflict: 'wait'`). A key is a hash of the arguments,
 * or `options.key(...args)`; the return value is stored with a codec that keeps Date, BigInt, undefined,
 * Map, Set, Buffer and typed arrays. A throw before `lease.commit()` releases the key; after it, it is stored.
 *
 * @example
 * const handle = idempotent(async (lease: Lease, event: StripeEvent) => {
 *   lease.commit()
 *   return ledger.credit(event.data, { idempotencyKey: lease.key })
 * }, { store, name: 'credit', key: (event) => event.id, withLease: true })
 */
export function idempotent<A extends unknown[], R>(
  fn: (lease: Lease, ...args: A) => R | PromiseLike<R>,
  options: IdempotentOptions<A> & { readonly withLease: true },
): IdempotentFunction<A, Awaited<R>>
export function idempotent<A extends unknown[], R>(
  fn: (...args: A) => R | PromiseLike<R>,
  options: IdempotentOptions<A> & { readonly withLease?: false },
): IdempotentFunction<A, Awaited<R>>
export function idempotent(
  target: (...args: never[]) => unknown,
  given: IdempotentOptions<never[]>,
): IdempotentFunction<unknown[], unknown> {
  // The overloads have checked the types; inside, arguments are just a list.
  const fn = target as (...args: unknown[]) => unknown
  const options = given as unknown as IdempotentOptions<unknown[]>
  const {
    name: givenName,
    key: keyOf,
    fingerprint: fingerprintOf,
    scope: scopeOption,
    withLease,
    maxValueBytes,
    maxDepth: givenDepth,
    onEvent,
    ...engineOptions
  } = options
  if (typeof fn !== 'function') throw new IdempotencyConfigError('idempotent(fn): fn must be a function')
  const name = givenName ?? fn.name
  if (typeof name !== 'string' || name === '' || name.includes('\0')) {
    throw new IdempotencyConfigError(
      'idempotent(fn): the function has no name; pass options.name (it keeps its keys apart from other functions)',
    )
  }
  const maxDepth = givenDepth ?? 128
  if (!Number.isInteger(maxDepth) || maxDepth < 1) {
    throw new IdempotencyConfigError(`maxDepth must be a positive integer, got ${String(maxDepth)}`)
  }

  // The 503 the engine renders names no cause; its store_error event does. Calls in flight per storage
  // key collect it, and the entry goes when the last of them has read it.
  const failures = new Map<string, { pending: number; error: unknown }>()
  const engine = createIdempotency({
    ...engineOptions,
    ...(maxValueBytes === undefined ? {} : { maxResponseBytes: maxValueBytes }),
    onEvent(event: IdempotencyEvent) {
      if (event.type === 'store_error' && event.key !== undefined) {
        const watch = failures.get(event.key)
        if (watch !== undefined) watch.error = event.error
      }
      onEvent?.(event)
    },
  })
  // Whatever an engine-wide option said, a call is a POST that must have its key and the default policy:
  // a return is stored, a throw is released before commit() and stored after it.
  const route = engine.route({ methods: ['POST'], required: true, storagePolicy: defaultStoragePolicy })
  const { sha256 } = engine.options.crypto
  const headerName = engine.options.headerName
  const invoke: Invoke = withLease === true ? (lease, args) => fn(lease, ...args) : (_lease, args) => fn(...args)

  async function call(explicitKey: string | undefined, args: unknown[]): Promise<unknown> {
    const bytes = canonicalArguments(fingerprintOf === undefined ? args : fingerprintOf(...args), maxDepth)
    const rawKey = explicitKey ?? (keyOf === undefined ? `args:${toHex(sha256(bytes))}` : keyOf(...args))
    if (typeof rawKey !== 'string' || rawKey === '') {
      throw new IdempotencyConfigError(`idempotent(${name}): the key must be a non-empty string`)
    }
    const userScope = typeof scopeOption === 'function' ? scopeOption(...args) : (scopeOption ?? '')
    if (typeof userScope !== 'string') {
      throw new IdempotencyConfigError(`idempotent(${name}): the scope must be a string`)
    }
    // Keys outside the header syntax (spaces, non-ASCII, over 255 characters, quoted) go in hashed.
    const parsed = parseIdempotencyKey(rawKey)
    const key =
      parsed.kind === 'ok' && parsed.key === rawKey ? rawKey : `sha256:${toHex(sha256(encoder.encode(rawKey)))}`
    // The function's name is part of the scope: two functions keyed by the same order id are two keys.
    const scope = `fn\0${name}\0${userScope}`
    const storageKey = toHex(sha256(encoder.encode(`${scope}\0${key}`)))

    const watch = failures.get(storageKey) ?? { pending: 0, error: undefined }
    watch.pending++
    failures.set(storageKey, watch)
    let decision: Decision
    let storeFault: unknown
    try {
      decision = await engine.handle(
        {
          method: 'POST',
          url: `fn:${name}`,
          header: (wanted) => (wanted === headerName ? key : undefined),
          body: { kind: 'raw', bytes },
          contentType: ARGUMENTS_TYPE,
          scope,
        },
        route,
      )
      storeFault = watch.error
    } finally {
      if (--watch.pending === 0) failures.delete(storageKey)
    }

    switch (decision.kind) {
      case 'pass':
        // onStoreError: 'pass' and the store failed: run unprotected, as asked, storing nothing.
        return invoke(unprotectedLease(storageKey), args)
      case 'respond':
        return answer(decision.response, storeFault)
      case 'execute':
        return execute(decision.execution, args)
      default: {
        const unknown: never = decision
        throw new TypeError(`unknown decision ${String(unknown)}`)
      }
    }
  }

  async function execute(execution: Execution, args: unknown[]): Promise<unknown> {
    let result: { ok: true; value: unknown } | { ok: false; error: unknown }
    try {
      result = { ok: true, value: await invoke(execution.lease, args) }
    } catch (error) {
      result = { ok: false, error }
    }
    let outcome: HandlerOutcome
    if (result.ok) {
      const body = encodeReturnValue(result.value, maxDepth, execution.maxResponseBytes)
      if (body instanceof IdempotencyValueError) {
        // Refused like a throw: released before commit(), stored as this failure after it.
        result = { ok: false, error: body }
        outcome = failureOutcome(body)
      } else {
        outcome = { kind: 'response', status: 200, headers: [['content-type', VALUE_TYPE]], body }
      }
    } else {
      outcome = failureOutcome(result.error)
    }
    const instead = await execution.finish(outcome)
    // The lease was lost and the function aborted: its result is not the key's; a retry meets the new holder.
    if (instead !== null) return answer(instead, undefined)
    if (!result.ok) throw result.error
    return result.value
  }

  function answer(response: HttpResponse, storeFault: unknown): unknown {
    if (headerOf(response, 'idempotent-replayed') === 'true') return replay(response)
    const code = problemCode(response)
    switch (code) {
      case 'REQUEST_IN_PROGRESS':
        throw new IdempotencyInProgressError(Number(headerOf(response, 'retry-after') ?? '1') * 1000)
      case 'IDEMPOTENCY_KEY_REUSED':
        throw new IdempotencyKeyReusedError()
      case 'IDEMPOTENCY_RECORD_LIMIT_REACHED':
        throw new IdempotencyRecordLimitError(Number(headerOf(response, 'retry-after') ?? '1') * 1000)
      case 'IDEMPOTENCY_STORE_UNAVAILABLE': {
        const fault = storeFault instanceof IdempotencyStoreError ? storeFault : undefined
        throw new IdempotencyStoreError(
          fault?.reason ?? 'unavailable',
          `idempotent(${name}): the store failed, the function was not run: ${fault?.message ?? 'unavailable'}`,
          { cause: fault ?? storeFault },
        )
      }
      case 'IDEMPOTENT_RESPONSE_NOT_STORED':
        throw new IdempotencyStoreError('undecodable', `idempotent(${name}): the first call's result was not stored`)
      case 'IDEMPOTENCY_KEY_REQUIRED':
      case 'INVALID_IDEMPOTENCY_KEY':
      case 'INVALID_REQUEST_BODY':
        throw new TypeError(`idempotent(${name}): the engine refused a well-formed call (${code})`)
      default: {
        const unknown: never = code
        throw new TypeError(`unknown engine answer ${String(unknown)}`)
      }
    }
  }

  function replay(response: HttpResponse): unknown {
    const type = headerOf(response, 'content-type')
    let envelope: Record<string, unknown> | undefined
    try {
      const parsed: unknown = JSON.parse(decoder.decode(response.body))
      if (typeof parsed === 'object' && parsed !== null && (parsed as { v?: unknown }).v === FORMAT) {
        envelope = parsed as Record<string, unknown>
      }
    } catch {}
    if (response.status === 200 && type === VALUE_TYPE && envelope !== undefined && 'value' in envelope) {
      try {
        return decodeValue(envelope.value)
      } catch (error) {
        throw new IdempotencyStoreError('undecodable', `idempotent(${name}): the stored result cannot be decoded`, {
          cause: error,
        })
      }
    }
    const failure = envelope?.error as { name?: unknown; message?: unknown; code?: unknown } | undefined
    if (response.status === 500 && type === ERROR_TYPE && typeof failure === 'object' && failure !== null) {
      const code = typeof failure.code === 'string' || typeof failure.code === 'number' ? failure.code : undefined
      throw new IdempotentError(String(failure.name), String(failure.message), code)
    }
    throw new IdempotencyStoreError(
      'undecodable',
      `idempotent(${name}): the stored result was not written by idempotent()`,
    )
  }

  const wrapped = function idempotentCall(...args: unknown[]): Promise<unknown> {
    return call(undefined, args)
  } as IdempotentFunction<unknown[], unknown>
  wrapped.withKey = (key: string, ...args: unknown[]) => call(key, args)
  wrapped.close = (closeOptions) => engine.close(closeOptions)
  return wrapped
}

/** The canonical bytes of the arguments: what the fingerprint covers and the default key hashes. */
function canonicalArguments(value: unknown, maxDepth: number): Uint8Array {
  const encoded = encodeValue(value, { maxDepth, mode: 'arguments' })
  if (encoded.kind === 'refused') {
    throw new IdempotencyValueError(
      'arguments',
      encoded.reason,
      encoded.path,
      `${encoded.detail}; key the call with options.key and options.fingerprint instead`,
    )
  }
  // Tags nest at most three levels per level of the value (a map's tag, entry list, entry).
  const canonical = canonicalizeValue(encoded.tree, { maxDepth: maxDepth * 3 + 3 })
  if (canonical.kind !== 'ok') throw new TypeError(`encoded arguments did not canonicalize (${canonical.kind})`)
  return encoder.encode(canonical.text)
}

function encodeReturnValue(value: unknown, maxDepth: number, maxBytes: number): Uint8Array | IdempotencyValueError {
  const encoded = encodeValue(value, { maxDepth, mode: 'value' })
  if (encoded.kind === 'refused') {
    return new IdempotencyValueError('return value', encoded.reason, encoded.path, encoded.detail)
  }
  const body = encoder.encode(JSON.stringify({ v: FORMAT, value: encoded.tree }))
  if (body.byteLength > maxBytes) {
    return new IdempotencyValueError(
      'return value',
      'too_large',
      '$',
      `it encodes to ${body.byteLength} bytes, over maxValueBytes (${maxBytes})`,
    )
  }
  return body
}

/** A failure as stored: name, message and code only; a stack would leak paths and outlive a fix. */
function failureOutcome(error: unknown): HandlerOutcome {
  const isError = error instanceof Error
  const code = (error as { code?: unknown } | null)?.code
  const record = {
    name: clip(isError ? error.name : 'Error'),
    message: clip(isError ? error.message : safeString(error)),
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
  }
  return {
    kind: 'response',
    status: 500,
    headers: [['content-type', ERROR_TYPE]],
    body: encoder.encode(JSON.stringify({ v: FORMAT, error: record })),
  }
}

function clip(text: string): string {
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text
}

function safeString(value: unknown): string {
  try {
    return String(value)
  } catch {
    return typeof value
  }
}

function headerOf(response: HttpResponse, name: string): string | undefined {
  for (const [header, value] of response.headers) if (header.toLowerCase() === name) return value
  return undefined
}

function problemCode(response: HttpResponse): ProblemCode {
  try {
    const problem = JSON.parse(decoder.decode(response.body)) as { error?: unknown }
    if (typeof problem.error === 'string') return problem.error as ProblemCode
  } catch {}
  throw new TypeError(`unexpected engine answer with status ${response.status}`)
}

/** What a function run with `onStoreError: 'pass'` sees: fence 0, never aborted, protecting nothing. */
function unprotectedLease(key: string): Lease {
  let committed = false
  return {
    key,
    fence: 0,
    takeover: false,
    previousFence: 0,
    signal: new AbortController().signal,
    get committed() {
      return committed
    },
    assertHeld() {},
    commit() {
      committed = true
    },
    release() {},
  }
}
