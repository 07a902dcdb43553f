/** The lease a handler holds: heartbeat, local deadline, commit point, and the advisory abort signal. */
import { type Deadline, setDeadline } from './deadlines.js'
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
const ENDED = 'the outcome of this execution was already stored or released'

/** A held lease with its heartbeat. The engine owns it; the handler sees it as `Lease`. */
export class HeldLease implements Lease {
  readonly key: string
  readonly fence: number
  readonly takeover: boolean
  readonly previousFence: number
  readonly token: string
  /** When the engine saw the request, for the durations its events report. */
  readonly startedAt: number
  committed = false
  releaseRequested = false
  abortReason: AbortReason | undefined
  /** Set once the engine completed or released the record: nothing this holder does is protected any more. */
  ended = false

  readonly #options: ResolvedOptions
  /** Made on the first read of `signal`: most handlers never read it, and aborting one costs an error and an event. */
  #controller: AbortController | undefined
  /** Why the lease stopped being trusted, once it did; the signal's reason is built from it when first needed. */
  #lostBecause: string | undefined
  #deadline: number
  /** When the next heartbeat is due; Infinity while an extend is in flight. */
  #nextBeat: number
  readonly #maxExecutionAt: number
  /**
   * One timer for the three deadlines (heartbeat, local expiry, max execution), armed for the earliest. The first
   * one shares a timer with every lease of the same duration (most leases end long before it); later ones, after
   * a heartbeat, get their own.
   */
  #first: Deadline<HeldLease> | undefined
  #timer: ReturnType<typeof setTimeout> | undefined
  #timerAt = Number.POSITIVE_INFINITY
  #stopped = false
  readonly #onAbort: (lease: HeldLease, reason: AbortReason) => void

  constructor(
    options: ResolvedOptions,
    key: string,
    token: string,
    acquired: { readonly fence: number; readonly takeover: boolean; readonly previousFence: number },
    sentAt: number,
    startedAt: number,
    onAbort: (lease: HeldLease, reason: AbortReason) => void,
  ) {
    this.#options = options
    this.key = key
    this.token = token
    this.fence = acquired.fence
    this.takeover = acquired.takeover
    this.previousFence = acquired.previousFence
    this.startedAt = startedAt
    this.#onAbort = onAbort
    // The store set its deadline after we sent `begin`, so send time + lease − margin is never later
    // than the store's deadline, given clock rates agree (design-review P4).
    this.#deadline = sentAt + options.leaseMs - options.leaseMarginMs
    const t = now()
    this.#nextBeat = t + options.heartbeatMs
    this.#maxExecutionAt = t + options.maxExecutionMs
    const first = Math.min(options.heartbeatMs, options.maxExecutionMs)
    // A begin that took longer than the lease minus the first check leaves an earlier expiry: its own timer.
    if (this.#deadline - t >= first) this.#first = setDeadline<HeldLease>(first, HeldLease.#onTimer, this)
    else this.#arm(t)
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#lostBecause !== undefined) this.#controller.abort(new IdempotencyLeaseLostError(this.#lostBecause))
    }
    return this.#controller.signal
  }

  /** Whether the signal fired (or would have, had anyone read it). */
  get aborted(): boolean {
    return this.#lostBecause !== undefined
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
    this.#fire(`lease aborted: ${reason}`)
    this.#onAbort(this, reason)
  }

  /**
   * The engine stored or released this execution's outcome: a handler still running (an outer timeout answered
   * for it) must not act on the key any more. The signal fires; no event, this is not a lost lease.
   */
  end(): void {
    this.ended = true
    this.stop()
    if (!this.aborted) this.#fire(ENDED)
  }

  #fire(message: string): void {
    this.#lostBecause = message
    this.#controller?.abort(new IdempotencyLeaseLostError(message))
  }

  /** Stops the heartbeat and the timer; answers of an extend still in flight are ignored. */
  stop(): void {
    if (this.#stopped) return
    this.#stopped = true
    this.#first?.cancel()
    this.#first = undefined
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** (Re)arms the timer for the earliest of the three deadlines, unless it is already set for that time. */
  #arm(t: number): void {
    const at = Math.min(this.#nextBeat, this.#deadline, this.#maxExecutionAt)
    if (this.#timer !== undefined && at === this.#timerAt) return
    this.#first?.cancel()
    this.#first = undefined
    clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(HeldLease.#onTimer, Math.max(0, at - t), this)
  }

  static #onTimer(lease: HeldLease): void {
    lease.#tick()
  }

  /** The timer fired: abort past a deadline, send a heartbeat when due, then arm for what comes next. */
  #tick(): void {
    this.#first = undefined
    this.#timer = undefined
    if (this.#stopped) return
    const t = now()
    if (t >= this.#maxExecutionAt) this.abort('max_execution')
    else if (t >= this.#deadline) this.abort('lease_expired')
    else {
      if (t >= this.#nextBeat) this.#beat(t)
      this.#arm(t)
    }
  }

  #beat(sentAt: number): void {
    this.#nextBeat = Number.POSITIVE_INFINITY
    const o = this.#options
    callStore('extend', o.extendTimeoutMs, () =>
      o.store.extend({ key: this.key, token: this.token, leaseMs: o.leaseMs, retentionMs: o.retentionMs }),
    ).then(
      (held) => {
        if (this.#stopped) return
        if (!held) return this.abort('lease_lost')
        this.#deadline = sentAt + o.leaseMs - o.leaseMarginMs
        const t = now()
        this.#nextBeat = t + o.heartbeatMs
        this.#arm(t)
      },
      () => {
        // Unreachable or slow: keep trying; the local deadline aborts if it never comes back.
        if (this.#stopped) return
        const t = now()
        this.#nextBeat = t + Math.min(o.heartbeatMs, 250)
        this.#arm(t)
      },
    )
  }
}
