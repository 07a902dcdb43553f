/** Engine and route options: defaults, validation once at construction, and the resolved shapes. */
import { IdempotencyConfigError } from './errors.js'
import type { IdempotencyEvent } from './events.js'
import type { StoragePolicy } from './policy.js'
import type { Store } from './store.js'

/** SHA-256 and randomness, injected so the core imports no `node:` module. */
export interface CryptoProvider {
  sha256(data: Uint8Array): Uint8Array
  randomBytes(length: number): Uint8Array
  /** Optional: the same digest as `sha256`, as lower-case hex, where the runtime makes hex without a byte array. */
  sha256Hex?(data: Uint8Array): string
  /** Optional: `length` random bytes as lower-case hex, the same as hex of `randomBytes(length)`. */
  randomHex?(length: number): string
}

/** Per-route behaviour; every field may also be set engine-wide. */
export interface RouteOptions {
  /** Methods whose keyed requests are handled; OPTIONS, GET and HEAD always pass. Default POST, PUT, PATCH. */
  readonly methods?: readonly string[]
  /** Answer 400 `IDEMPOTENCY_KEY_REQUIRED` when the key is missing. Default false. */
  readonly required?: boolean
  /** What a duplicate of a running request gets: 409 at once, or a bounded wait for the result. Default 'reject'. */
  readonly onConflict?: 'reject' | 'wait'
  /** Bound of `onConflict: 'wait'`. Default 5 s. */
  readonly waitMs?: number
  /** Store down, slow, full or unreadable: 503 (default, fail closed), or run the handler storing nothing. */
  readonly onStoreError?: 'reject' | 'pass'
  /** Which rendered outcomes are stored, released or never stored. Default: DESIGN §4.7. */
  readonly storagePolicy?: StoragePolicy
}

export interface IdempotencyOptions extends RouteOptions {
  readonly store: Store
  /** Defaults to `node:crypto` through the root export. */
  readonly crypto?: CryptoProvider
  /** Request header carrying the key. Default `Idempotency-Key`. */
  readonly headerName?: string
  /** How long a holder owns a key without a heartbeat. Default 30 s. */
  readonly leaseMs?: number
  /** Heartbeat period. Default lease / 3. */
  readonly heartbeatMs?: number
  /** Deadline of one `extend`. Default min(lease / 3, 2 s). */
  readonly extendTimeoutMs?: number
  /** Deadline of one `begin`. Default 2 s. */
  readonly beginTimeoutMs?: number
  /** Deadline of one `complete` or `release`. Default 2 s. */
  readonly storeTimeoutMs?: number
  /** How long a completed key replays. Default 24 h. */
  readonly retentionMs?: number
  /** A handler running longer loses its lease (the signal fires and the heartbeat stops). Default 5 min. */
  readonly maxExecutionMs?: number
  /** Larger responses pass through and are kept as unreplayable (410 on retry). Default 1 MiB. */
  readonly maxResponseBytes?: number
  /** JSON nesting deeper than this is answered 400. Default 128. */
  readonly maxBodyDepth?: number
  /** Request headers that take part in the fingerprint. Default none. */
  readonly fingerprintHeaders?: readonly string[]
  /** Base of the 409 `Retry-After` hint, seconds (plus up to 1 s of jitter, capped by the lease left). Default 1. */
  readonly retryAfterSeconds?: number
  /** `Retry-After` on 503, seconds. Default 2. */
  readonly storeRetryAfterSeconds?: number
  /** Headers set fresh on every keyed response: name → [value on a first execution, value on a replay]. */
  readonly markers?: Readonly<Record<string, readonly [fresh: string, replayed: string]>>
  /** Called for every outcome; never receives a raw key, a body or a credential. */
  readonly onEvent?: (event: IdempotencyEvent) => void
}

export interface ResolvedRoute {
  readonly methods: ReadonlySet<string>
  readonly required: boolean
  readonly onConflict: 'reject' | 'wait'
  readonly waitMs: number
  readonly onStoreError: 'reject' | 'pass'
  readonly storagePolicy: StoragePolicy | undefined
}

export interface ResolvedOptions {
  readonly store: Store
  readonly crypto: CryptoProvider
  readonly headerName: string
  readonly leaseMs: number
  readonly heartbeatMs: number
  readonly extendTimeoutMs: number
  readonly beginTimeoutMs: number
  readonly storeTimeoutMs: number
  readonly retentionMs: number
  readonly maxExecutionMs: number
  readonly maxResponseBytes: number
  readonly maxBodyDepth: number
  readonly fingerprintHeaders: readonly string[]
  readonly retryAfterSeconds: number
  readonly storeRetryAfterSeconds: number
  readonly markers: ReadonlyArray<readonly [name: string, fresh: string, replayed: string]>
  readonly onEvent: ((event: IdempotencyEvent) => void) | undefined
  /** Safety margin under the lease for the local deadline: 2% + 50 ms. */
  readonly leaseMarginMs: number
  readonly route: ResolvedRoute
}

const NEVER_COVERED = new Set(['GET', 'HEAD', 'OPTIONS'])
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isFinite(v) || v <= 0) {
    throw new IdempotencyConfigError(`${name} must be a positive number of milliseconds, got ${v}`)
  }
  return v
}

/** Validates route options once; throws `IdempotencyConfigError` on anything that cannot work. */
export function resolveRoute(options: RouteOptions, base?: ResolvedRoute): ResolvedRoute {
  let methods = base?.methods ?? new Set(['POST', 'PUT', 'PATCH'])
  if (options.methods !== undefined) {
    methods = new Set(options.methods.map((m) => m.toUpperCase()))
    for (const m of methods) {
      if (NEVER_COVERED.has(m)) {
        throw new IdempotencyConfigError(`${m} cannot be covered: OPTIONS, GET and HEAD always pass`)
      }
    }
  }
  const onConflict = options.onConflict ?? base?.onConflict ?? 'reject'
  if (onConflict !== 'reject' && onConflict !== 'wait') {
    throw new IdempotencyConfigError(`onConflict must be 'reject' or 'wait', got ${String(onConflict)}`)
  }
  const onStoreError = options.onStoreError ?? base?.onStoreError ?? 'reject'
  if (onStoreError !== 'reject' && onStoreError !== 'pass') {
    throw new IdempotencyConfigError(`onStoreError must be 'reject' or 'pass', got ${String(onStoreError)}`)
  }
  return {
    methods,
    required: options.required ?? base?.required ?? false,
    onConflict,
    waitMs: positive('waitMs', options.waitMs, base?.waitMs ?? 5_000),
    onStoreError,
    storagePolicy: options.storagePolicy ?? base?.storagePolicy,
  }
}

/** Resolves engine options once; the lease arithmetic is checked here so it cannot fail in production. */
export function resolveOptions(options: IdempotencyOptions, crypto: CryptoProvider): ResolvedOptions {
  if (options.store === undefined || typeof options.store.begin !== 'function') {
    throw new IdempotencyConfigError('options.store must be a Store (MemoryStore, SqliteStore, …)')
  }
  const leaseMs = positive('leaseMs', options.leaseMs, 30_000)
  const heartbeatMs = positive('heartbeatMs', options.heartbeatMs, leaseMs / 3)
  const extendTimeoutMs = positive('extendTimeoutMs', options.extendTimeoutMs, Math.min(leaseMs / 3, 2_000))
  const leaseMarginMs = leaseMs * 0.02 + 50
  // A heartbeat that is late by one slow extend must still land before the lease lapses
  // (design-review P4): otherwise a live holder loses its key to a takeover.
  if (heartbeatMs + extendTimeoutMs + leaseMarginMs >= leaseMs) {
    throw new IdempotencyConfigError(
      `heartbeatMs (${heartbeatMs}) + extendTimeoutMs (${extendTimeoutMs}) + margin (${leaseMarginMs}) must be less than leaseMs (${leaseMs})`,
    )
  }
  const headerName = options.headerName ?? 'Idempotency-Key'
  if (!TOKEN.test(headerName)) throw new IdempotencyConfigError(`headerName is not a header name: ${headerName}`)
  const markers: Array<readonly [string, string, string]> = []
  for (const [name, values] of Object.entries(options.markers ?? {})) {
    if (!TOKEN.test(name)) throw new IdempotencyConfigError(`marker is not a header name: ${name}`)
    markers.push([name.toLowerCase(), values[0], values[1]])
  }
  const retryAfterSeconds = options.retryAfterSeconds ?? 1
  if (!Number.isInteger(retryAfterSeconds) || retryAfterSeconds < 1) {
    throw new IdempotencyConfigError('retryAfterSeconds must be a whole number ≥ 1 (RFC 9110 §10.2.3)')
  }
  const storeRetryAfterSeconds = options.storeRetryAfterSeconds ?? 2
  if (!Number.isInteger(storeRetryAfterSeconds) || storeRetryAfterSeconds < 1) {
    throw new IdempotencyConfigError('storeRetryAfterSeconds must be a whole number ≥ 1')
  }
  return {
    store: options.store,
    crypto,
    headerName: headerName.toLowerCase(),
    leaseMs,
    heartbeatMs,
    extendTimeoutMs,
    beginTimeoutMs: positive('beginTimeoutMs', options.beginTimeoutMs, 2_000),
    storeTimeoutMs: positive('storeTimeoutMs', options.storeTimeoutMs, 2_000),
    retentionMs: positive('retentionMs', options.retentionMs, 24 * 60 * 60 * 1_000),
    maxExecutionMs: positive('maxExecutionMs', options.maxExecutionMs, 5 * 60 * 1_000),
    maxResponseBytes: positive('maxResponseBytes', options.maxResponseBytes, 1024 * 1024),
    maxBodyDepth: positive('maxBodyDepth', options.maxBodyDepth, 128),
    fingerprintHeaders: (options.fingerprintHeaders ?? []).map((h) => h.toLowerCase()),
    retryAfterSeconds,
    storeRetryAfterSeconds,
    markers,
    onEvent: options.onEvent,
    leaseMarginMs,
    route: resolveRoute(options),
  }
}
