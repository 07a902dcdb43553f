/** The lease a handler holds: heartbeat, local deadline, commit point, and the advisory abort signal. */
import { IdempotencyLeaseLostError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import { callStore } from './store-call.js'

/** What the handler sees of its hold on the key (DESIGN §4.6). */
export interface Lease {
  /** The stable downstream idempotency key: hex SHA-256 of scope and key, the same across takeovers. */
  readonly key: string
  /** Orders holders: pass it only to a downstream that can refuse a lower one, never as a key. */
  readonly fence: number
  /** True when this execution took the key over from a holder whose lease lapsed (it may have done the work). */
  readonly takeover: boolean
  /** The fence of the holder or tombstone this one follows; 0 when none. */
  readonly previousFence: number
  /** Aborts when the lease can no longer be trusted. Advisory: it never follows the client's connection. */
  readonly signal: AbortSignal
  /** Whether `commit()` was called. */
  readonly committed: boolean
  /** Throws `IdempotencyLeaseLostError` unless the lease is certainly still held; call right before a side effect. */
  assertHeld(): void
  /** Call immediately BEFORE the first call that may have an external effect: from here every outcome is stored. */
  commit(): void
  /** Declare that nothing happened (the downstream refused the connection): the outcome is not stored. */
  release(): void
}

export type AbortReason = 'lease_lost' | 'lease_expired' | 'max_execution' | 'shutdown'

const now = () => performance.now()

/** A held lease with its heartbeat. The engine owns it; the handler sees it as `Lease`. */
export class HeldLease implements Lease {
  readonly key: string
  readonly fence: number
  readonly takeover: boolean
  readonly previousFence: number
  readonly token: string
  committed = false
  releaseRequested = false
  abortReason: AbortReason | undefined
  /** Set once the engine completed or released the record: nothing this holder does is protected any more. */
  ended = false

  readonly #options: ResolvedOptions
  /** Made on the first read of `signal`: most handlers never read it, and aborting one costs an error and an event. */
  #controller: AbortController | undefined
  /** Why the lease stopped being trusted, once it did; the signal's reason is built from it when first needed. */
  #abortedBecause: (() => Error) | undefined
  #deadline: number
  #heartbeat: ReturnType<typeof setTimeout> | undefined
  #expiry: ReturnType<typeof setTimeout> | undefined
  #maxExecution: ReturnType<typeof setTimeout> | undefined
  #stopped = false
  readonly #onAbort: (reason: AbortReason) => void

  constructor(
    options: ResolvedOptions,
    acquired: { key: string; token: string; fence: number; takeover: boolean; previousFence: number },
    sentAt: number,
    onAbort: (reason: AbortReason) => void,
  ) {
    this.#options = options
    this.key = acquired.key
    this.token = acquired.token
    this.fence = acquired.fence
    this.takeover = acquired.takeover
    this.previousFence = acquired.previousFence
    this.#onAbort = onAbort
    // The store set its deadline after we sent `begin`, so send time + lease − margin is never later
    // than the store's deadline, given clock rates agree (design-review P4).
    this.#deadline = sentAt + options.leaseMs - options.leaseMarginMs
    this.#armExpiry()
    this.#heartbeat = setTimeout(() => this.#beat(), options.heartbeatMs)
    this.#maxExecution = setTimeout(() => this.abort('max_execution'), options.maxExecutionMs)
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#abortedBecause !== undefined) this.#controller.abort(this.#abortedBecause())
    }
    return this.#controller.signal
  }

  /** Whether the signal fired (or would have, had anyone read it). */
  get aborted(): boolean {
    return this.#abortedBecause !== undefined
  }

  /** Monotonic time left before this process must assume the key may be taken over. */
  get remainingMs(): number {
    return this.#deadline - now()
  }

  assertHeld(): void {
    // Synchronous on purpose: after an event-loop stall no timer has run yet, but the clock has moved.
    if (this.ended || this.aborted || now() >= this.#deadline) {
      if (!this.aborted) this.abort('lease_expired')
      throw new IdempotencyLeaseLostError(
        `the lease on ${this.key} (fence ${this.fence}) is no longer held: another request may run it`,
      )
    }
  }

  commit(): void {
    this.committed = true
  }

  release(): void {
    this.releaseRequested = true
  }

  /** Fires the signal and stops extending: the lease lapses in the store by itself. */
  abort(reason: AbortReason): void {
    if (this.aborted) return
    this.abortReason = reason
    this.stop()
    this.#fire(() => new IdempotencyLeaseLostError(`lease aborted: ${reason}`))
    this.#onAbort(reason)
  }

  /**
   * The engine stored or released this execution's outcome: a handler still running (an outer timeout answered
   * for it) must not act on the key any more. The signal fires; no event, this is not a lost lease.
   */
  end(): void {
    this.ended = true
    this.stop()
    if (!this.aborted) {
      this.#fire(() => new IdempotencyLeaseLostError('the outcome of this execution was already stored or released'))
    }
  }

  #fire(reason: () => Error): void {
    this.#abortedBecause = reason
    this.#controller?.abort(reason())
  }

  /** Stops the heartbeat and every timer; answers of an extend still in flight are ignored. */
  stop(): void {
    this.#stopped = true
    clearTimeout(this.#heartbeat)
    clearTimeout(this.#expiry)
    clearTimeout(this.#maxExecution)
  }

  #armExpiry(): void {
    clearTimeout(this.#expiry)
    this.#expiry = setTimeout(
      () => {
        if (now() >= this.#deadline) this.abort('lease_expired')
        else this.#armExpiry()
      },
      Math.max(0, this.#deadline - now()),
    )
  }

  #beat(): void {
    if (this.#stopped) return
    const sentAt = now()
    const o = this.#options
    callStore('extend', o.extendTimeoutMs, () =>
      o.store.extend({ key: this.key, token: this.token, leaseMs: o.leaseMs, retentionMs: o.retentionMs }),
    ).then(
      (held) => {
        if (this.#stopped) return
        if (!held) return this.abort('lease_lost')
        this.#deadline = sentAt + o.leaseMs - o.leaseMarginMs
        this.#armExpiry()
        this.#heartbeat = setTimeout(() => this.#beat(), o.heartbeatMs)
      },
      () => {
        // Unreachable or slow: keep trying; the local deadline aborts if it never comes back.
        if (this.#stopped) return
        this.#heartbeat = setTimeout(() => this.#beat(), Math.min(o.heartbeatMs, 250))
      },
    )
  }
}
