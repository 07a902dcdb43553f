/** Every store call under the engine's own deadline, whatever the driver retries (DESIGN §3, Timeouts). */
import { type Deadline, setDeadline } from './deadlines.js'
import { IdempotencyStoreError } from './errors.js'

/**
 * Runs `call` and settles within `ms`: a driver error becomes `IdempotencyStoreError('unavailable')`, a call
 * still pending at the deadline `IdempotencyStoreError('timeout')`. The abandoned call may still apply later.
 */
export function callStore<T, A = undefined>(
  what: string,
  ms: number,
  call: (arg: A) => Promise<T>,
  // `call(arg)`: a function made once and its input, instead of a closure per call on the hot path.
  arg?: A,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const pending = new PendingCall(what, ms, reject)
    pending.deadline = setDeadline(ms, timedOut, pending)
    let answer: Promise<T>
    try {
      answer = call(arg as A)
    } catch (error) {
      answer = Promise.reject(error)
    }
    answer.then(
      (value) => {
        if (pending.settle()) resolve(value)
      },
      (error: unknown) => {
        if (!pending.settle()) return
        reject(
          error instanceof IdempotencyStoreError
            ? error
            : new IdempotencyStoreError('unavailable', `store ${what} failed: ${describe(error)}`, { cause: error }),
        )
      },
    )
  })
}

/** A store call in flight and its deadline. */
class PendingCall {
  deadline: Deadline<PendingCall> | undefined
  settled = false

  constructor(
    readonly what: string,
    readonly ms: number,
    readonly reject: (error: unknown) => void,
  ) {}

  /** The call answered: true if it did so before its deadline. */
  settle(): boolean {
    if (this.settled) return false
    this.settled = true
    this.deadline?.cancel()
    return true
  }
}

function timedOut(pending: PendingCall): void {
  if (pending.settled) return
  pending.settled = true
  pending.reject(new IdempotencyStoreError('timeout', `store ${pending.what} did not answer within ${pending.ms} ms`))
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Resolves after `ms` unless `signal` aborts first (then resolves early). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
