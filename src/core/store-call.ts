/** Every store call under the engine's own deadline, whatever the driver retries (DESIGN §3, Timeouts). */
import { IdempotencyStoreError } from './errors.js'

/**
 * Runs `call` and settles within `ms`: a driver error becomes `IdempotencyStoreError('unavailable')`, a call
 * still pending at the deadline `IdempotencyStoreError('timeout')`. The abandoned call may still apply later.
 */
export function callStore<T>(what: string, ms: number, call: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new IdempotencyStoreError('timeout', `store ${what} did not answer within ${ms} ms`))
    }, ms)
    let pending: Promise<T>
    try {
      pending = call()
    } catch (error) {
      pending = Promise.reject(error)
    }
    pending.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(
          error instanceof IdempotencyStoreError
            ? error
            : new IdempotencyStoreError('unavailable', `store ${what} failed: ${describe(error)}`, { cause: error }),
        )
      },
    )
  })
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
