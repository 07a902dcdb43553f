/** The engine: one keyed request from header to stored result, framework-neutral (DESIGN §4). */
import { IdempotencyStoreError } from './errors.js'
import type { IdempotencyEvent, IdempotencyEventType } from './events.js'
import {
  fingerprintRequestHex,
  mediaTypeOf,
  type Sha256Hex,
  sha256HexOfPair,
  sha256HexOfText,
  toHex,
} from './fingerprint.js'
import { storableHeaders } from './headers.js'
import type { HttpResponse, IdempotencyRequest } from './http.js'
import { parseIdempotencyKey } from './key.js'
import { type AbortReason, HeldLease, type Lease } from './lease.js'
import {
  type CryptoProvider,
  type IdempotencyOptions,
  type ResolvedOptions,
  type ResolvedRoute,
  type RouteOptions,
  resolveOptions,
  resolveRoute,
} from './options.js'
import { defaultStoragePolicy } from './policy.js'
import { rejection } from './problem.js'
import type { BeginInput, BeginResult, CompleteInput, ReleaseInput, StoredResponse } from './store.js'
import { callStore, delay } from './store-call.js'

/** What the adapter does with a request. */
export type Decision =
  /** Not ours (method not covered, no key on an optional route, fail-open): run the route untouched. */
  | { readonly kind: 'pass' }
  /** Write this response and do not run the route: a replay, or a problem+json rejection. */
  | { readonly kind: 'respond'; readonly response: HttpResponse }
  /** The key is held: run the route with `execution.lease`, capture its response, then `finish`. */
  | { readonly kind: 'execute'; readonly execution: Execution }

/** How the route's response ended, as the adapter captured it. */
export type HandlerOutcome =
  /** Buffered whole: only headers set after the middleware ran, in order. */
  | {
      readonly kind: 'response'
      readonly status: number
      readonly headers: ReadonlyArray<readonly [string, string]>
      readonly body: Uint8Array
    }
  /** Larger than `maxResponseBytes` or streamed: already sent as it came, only the status is kept. */
  | { readonly kind: 'unreplayable'; readonly status: number }

/** A running execution that holds the key. */
export interface Execution {
  readonly lease: Lease
  /** Headers the fresh response carries (the markers); the adapter sets them before the route runs. */
  readonly headers: ReadonlyArray<readonly [string, string]>
  /** Buffer at most this many body bytes; beyond, pass through and finish as `unreplayable`. */
  readonly maxResponseBytes: number
  /**
   * Stores or releases per the storage policy, and only then says what to send: `null` means the captured
   * response as is; a response means send that instead (409 when the lease was lost and the handler aborted).
   * Never rejects.
   */
  finish(outcome: HandlerOutcome): Promise<HttpResponse | null>
}

/** A configured engine; adapters share one. */
export interface Idempotency {
  readonly options: ResolvedOptions
  /** Validates per-route overrides once, at mount time. */
  route(options?: RouteOptions): ResolvedRoute
  /** Decides one request. Never rejects: store faults become 503 (or `pass` with `onStoreError: 'pass'`). */
  handle(request: IdempotencyRequest, route?: ResolvedRoute): Promise<Decision>
  /** Stops taking new keys, lets running handlers finish within `graceMs`, then releases uncommitted ones. */
  close(options?: { readonly graceMs?: number }): Promise<void>
}

const now = () => performance.now()
const NO_HEADERS: ReadonlyArray<readonly [string, string]> = []
const REPLAYED = ['idempotent-replayed', 'true'] as const
/** Scope hashes remembered per engine, so a tenant's steady traffic hashes its scope once; cleared when full. */
const SCOPE_CACHE_SIZE = 1_024
/** Background releases of timed-out begins in flight at once, per engine. */
const MAX_PENDING_RELEASES = 1_024

// A stack frame as error pages render it ("    at fn (file.js:10:5)", in text or HTML). Such a page is sent to
// this one client as the app chose, but never stored for a day of replays (design-review H13).
const STACK_FRAME = /(?:^|\n|<br>)(?:[ \t]|&nbsp;)+at [^\n<]*:\d+:\d+/
const latin1 = new TextDecoder('latin1')

function rendersStackTrace(outcome: { readonly status: number; readonly body: Uint8Array }): boolean {
  return outcome.status >= 500 && STACK_FRAME.test(latin1.decode(outcome.body.subarray(0, 64 * 1024)))
}

/**
 * Creates the engine.
 *
 * @example
 * const engine = createEngine({ store: new MemoryStore(), leaseMs: 30_000 }, nodeCrypto)
 */
export function createEngine(options: IdempotencyOptions, crypto: CryptoProvider): Idempotency {
  const o = resolveOptions(options, crypto)
  const markerNames = new Set(o.markers.map(([name]) => name))
  const freshMarkers = o.markers.map(([name, fresh]) => [name, fresh] as const)
  const replayMarkers = o.markers.map(([name, , replayed]) => [name, replayed] as const)
  const running = new Set<Run>()
  const sha256Hex: Sha256Hex = o.crypto.sha256Hex?.bind(o.crypto) ?? ((data) => toHex(o.crypto.sha256(data)))
  const probes = new Map<string, Promise<{ result: BeginResult; token: string }>>()
  const scopeHashes = new Map<string, string>()
  const depthLimit = { maxDepth: o.maxBodyDepth }
  const storeBegin = (input: BeginInput) => o.store.begin(input)
  const storeComplete = (input: CompleteInput) => o.store.complete(input)
  const storeRelease = (input: ReleaseInput) => o.store.release(input)
  let closing = false
  let pendingReleases = 0

  // Events are built only when someone listens: `observed` guards the hot paths' calls.
  const observed = o.onEvent !== undefined
  function emit(type: IdempotencyEventType, startedAt: number, fields?: Omit<IdempotencyEvent, 'type' | 'durationMs'>) {
    if (o.onEvent === undefined) return
    try {
      o.onEvent({ type, durationMs: now() - startedAt, ...fields })
    } catch {
      // A throwing listener must never change what the client gets.
    }
  }

  function newToken(): string {
    return o.crypto.randomHex?.(16) ?? toHex(o.crypto.randomBytes(16))
  }

  /** What stores count records per scope by: a hash, so no tenant id or credential reaches storage. */
  function hashScope(scope: string): string {
    let hash = scopeHashes.get(scope)
    if (hash === undefined) {
      if (scopeHashes.size >= SCOPE_CACHE_SIZE) scopeHashes.clear()
      hash = sha256HexOfText(scope, sha256Hex)
      scopeHashes.set(scope, hash)
    }
    return hash
  }

  function unavailable(error: unknown): HttpResponse {
    const reason = error instanceof IdempotencyStoreError ? error.reason : 'unavailable'
    return rejection(
      'IDEMPOTENCY_STORE_UNAVAILABLE',
      reason === 'full'
        ? 'The idempotency store is full; retry later.'
        : 'The idempotency store could not be reached in time; the request was not run. Retry later.',
      {},
      [['retry-after', String(o.storeRetryAfterSeconds)]],
    )
  }

  function conflict(leaseRemainingMs: number): HttpResponse {
    // A hint plus jitter, not the remaining lease: with a heartbeat that is always about leaseMs
    // (design-review H6). Never 0: clients would hot-loop.
    const hint = Math.ceil(o.retryAfterSeconds + Math.random())
    const cap = Math.max(1, Math.ceil(leaseRemainingMs / 1000))
    return rejection('REQUEST_IN_PROGRESS', 'A request with this idempotency key is currently being processed.', {}, [
      ['retry-after', String(Math.min(hint, cap))],
    ])
  }

  function replay(response: StoredResponse): HttpResponse {
    if (!response.replayable) {
      return rejection(
        'IDEMPOTENT_RESPONSE_NOT_STORED',
        'The first response to this key could not be stored (too large, streamed, or its client was gone); the request was not run again.',
        { originalStatus: response.status },
      )
    }
    const headers: Array<readonly [string, string]> = []
    for (const header of response.headers) headers.push(header)
    for (const marker of replayMarkers) headers.push(marker)
    headers.push(REPLAYED, ['content-length', String(response.body.byteLength)])
    return { status: response.status, headers, body: response.body }
  }

  /**
   * Best effort, guarded by the token: a `begin` that timed out may still apply later (a driver resends it
   * on a new connection), leaving the key held by a token nobody runs (P1). Retried with backoff until the
   * lease would have lapsed anyway.
   */
  function releaseLater(key: string, token: string): void {
    // During a long outage every refused request would start a loop: bound them; the lease frees the rest.
    if (pendingReleases >= MAX_PENDING_RELEASES) return
    pendingReleases++
    const until = now() + o.leaseMs
    let wait = 250
    const done = () => {
      pendingReleases--
    }
    const tryRelease = () => {
      callStore('release', o.storeTimeoutMs, () => o.store.release({ key, token, retentionMs: o.retentionMs })).then(
        (released) => {
          // false: the late begin never applied (or lost to another holder); nothing is ours to free.
          if (!released && now() + wait < until) schedule()
          else done()
        },
        () => {
          if (now() + wait < until) schedule()
          else done()
        },
      )
    }
    const schedule = () => {
      const timer: { unref?: () => void } = setTimeout(tryRelease, wait)
      // Housekeeping only: it must not keep a process alive that is otherwise done.
      timer.unref?.()
      wait = Math.min(wait * 2, 4_000)
    }
    tryRelease()
  }

  function begin(key: string, scope: string, fingerprint: string, token: string): Promise<BeginResult> {
    return callStore('begin', o.beginTimeoutMs, storeBegin, {
      key,
      scope,
      fingerprint,
      token,
      leaseMs: o.leaseMs,
      retentionMs: o.retentionMs,
    })
  }

  /** Duplicates in one process share one probe at a time instead of each polling the store. */
  function probe(key: string, scope: string, fingerprint: string, token: string) {
    const id = `${key}\0${fingerprint}`
    let pending = probes.get(id)
    if (pending === undefined) {
      pending = begin(key, scope, fingerprint, token)
        .then((result) => ({ result, token }))
        .finally(() => probes.delete(id))
      probes.set(id, pending)
    }
    return pending
  }

  async function wait(
    key: string,
    scope: string,
    fingerprint: string,
    token: string,
    route: ResolvedRoute,
    signal: AbortSignal | undefined,
    first: { leaseRemainingMs: number },
  ): Promise<{ result: BeginResult; sentAt: number }> {
    const until = now() + route.waitMs
    let last: BeginResult = { kind: 'in_progress', leaseRemainingMs: first.leaseRemainingMs }
    for (let attempt = 0; now() < until && !signal?.aborted; attempt++) {
      const backoff = Math.min(25 * 2 ** attempt, 500)
      await delay(Math.min(backoff / 2 + Math.random() * (backoff / 2), until - now()), signal)
      if (signal?.aborted || now() >= until) break
      const sentAt = now()
      const { result, token: prober } = await probe(key, scope, fingerprint, token)
      // Another waiter in this process acquired it: for us it is simply still in progress.
      if (result.kind === 'acquired' && prober !== token) continue
      if (result.kind !== 'in_progress') return { result, sentAt }
      last = result
    }
    return { result: last, sentAt: now() }
  }

  function policyFor(route: ResolvedRoute) {
    return route.storagePolicy ?? defaultStoragePolicy
  }

  function onLeaseAbort(lease: HeldLease, reason: AbortReason): void {
    emit('lease_lost', lease.startedAt, { key: lease.key, fence: lease.fence, reason })
  }

  async function release(lease: HeldLease, status: number): Promise<null> {
    lease.stop()
    try {
      await callStore('release', o.storeTimeoutMs, storeRelease, {
        key: lease.key,
        token: lease.token,
        retentionMs: o.retentionMs,
      })
      if (observed) emit('released', lease.startedAt, { key: lease.key, fence: lease.fence, status })
    } catch (error) {
      // The record stays in_progress and lapses after the lease: a retry takes over then.
      emit('store_error', lease.startedAt, { key: lease.key, fence: lease.fence, reason: 'release', error })
    }
    return null
  }

  async function complete(lease: HeldLease, response: StoredResponse): Promise<HttpResponse | null> {
    // Retried while the lease holds: `complete` is safe to repeat with the same token (P2).
    // Never release after the handler ran: that would turn a store blip into a duplicate (P11).
    for (let attempt = 0; ; attempt++) {
      try {
        const stored = await callStore('complete', o.storeTimeoutMs, storeComplete, {
          key: lease.key,
          token: lease.token,
          response,
          retentionMs: o.retentionMs,
        })
        lease.stop()
        if (stored) {
          if (observed) {
            emit('completed', lease.startedAt, { key: lease.key, fence: lease.fence, status: response.status })
          }
          return null
        }
        emit('lease_lost', lease.startedAt, { key: lease.key, fence: lease.fence, reason: 'complete' })
        // An aborted handler's answer is not this execution's result: send the client to the new holder.
        return lease.aborted ? conflict(o.leaseMs) : null
      } catch (error) {
        if (lease.remainingMs <= 0) {
          lease.stop()
          emit('complete_failed', lease.startedAt, {
            key: lease.key,
            fence: lease.fence,
            status: response.status,
            error,
          })
          return null
        }
        await delay(Math.min(50 * 2 ** attempt, 500, Math.max(lease.remainingMs, 0)))
      }
    }
  }

  async function finishRun(run: Run, outcome: HandlerOutcome): Promise<HttpResponse | null> {
    const { lease, route } = run
    try {
      const decision = lease.releaseRequested ? 'release' : policyFor(route)(outcome.status, lease.committed)
      switch (decision) {
        case 'release':
        case 'never':
          return await release(lease, outcome.status)
        case 'store':
          return await complete(
            lease,
            outcome.kind === 'response' && !rendersStackTrace(outcome)
              ? {
                  status: outcome.status,
                  headers: storableHeaders(outcome.headers, markerNames),
                  body: outcome.body,
                  replayable: true,
                }
              : { status: outcome.status, headers: [], body: new Uint8Array(0), replayable: false },
          )
        default: {
          const unknown: never = decision
          throw new TypeError(`unknown storage decision ${String(unknown)}`)
        }
      }
    } finally {
      lease.end()
      running.delete(run)
      run.settled?.()
    }
  }

  /**
   * A running execution as the adapter sees it and as `close` tracks it: one object, `finish` a method on its
   * class rather than a closure per request.
   */
  class Run implements Execution {
    readonly headers = freshMarkers
    readonly maxResponseBytes = o.maxResponseBytes
    /** Set by `close` when it waits for this execution; called once it finished. */
    settled: (() => void) | undefined = undefined

    constructor(
      readonly lease: HeldLease,
      readonly route: ResolvedRoute,
    ) {}

    finish(outcome: HandlerOutcome): Promise<HttpResponse | null> {
      return finishRun(this, outcome)
    }
  }

  function execute(
    route: ResolvedRoute,
    key: string,
    token: string,
    acquired: { readonly fence: number; readonly takeover: boolean; readonly previousFence: number },
    sentAt: number,
    startedAt: number,
  ): Execution {
    const lease = new HeldLease(o, key, token, acquired, sentAt, startedAt, onLeaseAbort)
    const run = new Run(lease, route)
    running.add(run)
    if (observed) {
      emit(acquired.takeover ? 'takeover' : 'acquired', startedAt, {
        key,
        fence: lease.fence,
        previousFence: lease.previousFence,
      })
    }
    return run
  }

  async function handle(request: IdempotencyRequest, routeOverride?: ResolvedRoute): Promise<Decision> {
    const route = routeOverride ?? o.route
    const startedAt = now()
    const method = request.method.toUpperCase()
    if (!route.methods.has(method)) return { kind: 'pass' }

    const parsed = parseIdempotencyKey(request.header(o.headerName))
    switch (parsed.kind) {
      case 'missing':
        if (!route.required) return { kind: 'pass' }
        emit('rejected', startedAt, { reason: 'IDEMPOTENCY_KEY_REQUIRED' })
        return {
          kind: 'respond',
          response: rejection('IDEMPOTENCY_KEY_REQUIRED', `The ${o.headerName} header is required for this endpoint.`),
        }
      case 'invalid':
        emit('rejected', startedAt, { reason: 'INVALID_IDEMPOTENCY_KEY' })
        return { kind: 'respond', response: rejection('INVALID_IDEMPOTENCY_KEY', parsed.reason) }
      case 'ok':
        break
      default: {
        const unknown: never = parsed
        throw new TypeError(`unknown key parse ${String(unknown)}`)
      }
    }

    const fingerprinted = fingerprintRequestHex(
      {
        method,
        url: request.url,
        mediaType: request.body.kind === 'none' ? null : mediaTypeOf(request.contentType),
        body: request.body,
        headers:
          o.fingerprintHeaders.length === 0
            ? NO_HEADERS
            : o.fingerprintHeaders.map((name) => [name, request.header(name) ?? ''] as const),
      },
      sha256Hex,
      depthLimit,
    )
    if (fingerprinted.kind !== 'ok') {
      emit('rejected', startedAt, { reason: 'INVALID_REQUEST_BODY' })
      return {
        kind: 'respond',
        response: rejection(
          'INVALID_REQUEST_BODY',
          fingerprinted.kind === 'too_deep'
            ? `The request body is nested deeper than ${o.maxBodyDepth} levels.`
            : 'The request body could not be read as the JSON value it claims to be.',
        ),
      }
    }

    const key = sha256HexOfPair(request.scope, parsed.key, sha256Hex)
    const scope = hashScope(request.scope)
    const token = newToken()
    if (closing) {
      return storeFailed(route, startedAt, key, new IdempotencyStoreError('closing', 'the engine is shutting down'))
    }

    // The lease's local deadline counts from when begin was sent; the request's start is earlier still, so the
    // deadline it gives can only come sooner (safe), and it spares a clock read per request.
    let sentAt = startedAt
    let result: BeginResult
    try {
      result = await begin(key, scope, fingerprinted.fingerprint, token)
      if (result.kind === 'in_progress' && route.onConflict === 'wait') {
        const waited = await wait(key, scope, fingerprinted.fingerprint, token, route, request.signal, result)
        result = waited.result
        sentAt = waited.sentAt
      }
    } catch (error) {
      // A begin may have applied though we got no answer: a timeout, or a connection that dropped after the
      // command was sent. The token guards the release, so it is safe to send whatever happened.
      if (error instanceof IdempotencyStoreError && (error.reason === 'timeout' || error.reason === 'unavailable')) {
        releaseLater(key, token)
      }
      return storeFailed(route, startedAt, key, error)
    }

    switch (result.kind) {
      case 'acquired':
        return { kind: 'execute', execution: execute(route, key, token, result, sentAt, startedAt) }
      case 'replay':
        if (observed) emit('replayed', startedAt, { key, status: result.response.status })
        return { kind: 'respond', response: replay(result.response) }
      case 'in_progress':
        emit('conflict', startedAt, { key })
        return { kind: 'respond', response: conflict(result.leaseRemainingMs) }
      case 'mismatch':
        emit('mismatch', startedAt, { key })
        return {
          kind: 'respond',
          response: rejection(
            'IDEMPOTENCY_KEY_REUSED',
            'This idempotency key was already used with a different request (method, path, or body).',
          ),
        }
      case 'scope_full':
        emit('rejected', startedAt, { key, reason: 'IDEMPOTENCY_RECORD_LIMIT_REACHED' })
        return {
          kind: 'respond',
          response: rejection(
            'IDEMPOTENCY_RECORD_LIMIT_REACHED',
            'Too many idempotency keys are held for this client; new keys are accepted as older ones expire.',
            {},
            [['retry-after', String(Math.max(1, Math.ceil(result.retryAfterMs / 1000)))]],
          ),
        }
      default: {
        const unknown: never = result
        throw new TypeError(`unknown begin result ${String(unknown)}`)
      }
    }
  }

  function storeFailed(route: ResolvedRoute, startedAt: number, key: string, error: unknown): Decision {
    const reason = error instanceof IdempotencyStoreError ? error.reason : 'unavailable'
    emit('store_error', startedAt, { key, reason, error })
    // Fail open only by explicit choice, and then nothing is stored or released.
    if (route.onStoreError === 'pass') return { kind: 'pass' }
    return { kind: 'respond', response: unavailable(error) }
  }

  async function close(options: { readonly graceMs?: number } = {}): Promise<void> {
    closing = true
    const graceMs = options.graceMs ?? 10_000
    const all = Promise.all([...running].map((r) => new Promise<void>((resolve) => (r.settled = resolve))))
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))])
    clearTimeout(timer)
    await Promise.all(
      [...running].map(async ({ lease }) => {
        lease.abort('shutdown')
        // Uncommitted holders have done nothing external: free the key for a retry on another instance.
        if (!lease.committed) {
          await callStore('release', o.storeTimeoutMs, () =>
            o.store.release({ key: lease.key, token: lease.token, retentionMs: o.retentionMs }),
          ).catch(() => undefined)
        }
      }),
    )
  }

  return { options: o, route: (overrides = {}) => resolveRoute(overrides, o.route), handle, close }
}
