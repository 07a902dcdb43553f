// A Store wrapper that injects the faults a network gives a real driver: lost requests, lost replies, resends.
import { IdempotencyStoreError, type Store } from 'idempotency-kit'

/**
 * What happens to one call:
 * - `none`: passes through;
 * - `lost_request`: throws before the real store sees it (refused connection, request dropped);
 * - `lost_reply`: applies on the real store, then throws (the reply was lost, or the caller's deadline passed);
 * - `resent`: applies twice, and the caller gets the second reply (a driver that resends after a reset).
 */
export type Fault = 'none' | 'lost_request' | 'lost_reply' | 'resent'

/** The store operations a fault can hit (delete is an operator's purge, not a retried write). */
export type FaultableOperation = 'begin' | 'complete' | 'release' | 'extend' | 'get'

/** One call as it went: which operation, which fault. */
export interface FaultRecord {
  readonly operation: FaultableOperation
  readonly fault: Fault
}

/** The wrapped store, and the faults it injected so far (for the failure message). */
export interface FaultStore extends Store {
  readonly injected: FaultRecord[]
}

/**
 * Wraps `store`; `next(operation)` picks the fault of each call. `get` can lose its request or reply but is
 * never resent (it writes nothing, so a resend proves nothing). `delete` and `close` always pass through.
 */
export function faultStore(store: Store, next: (operation: FaultableOperation) => Fault): FaultStore {
  const injected: FaultRecord[] = []

  async function call<T>(operation: FaultableOperation, run: () => Promise<T>): Promise<T> {
    const picked = next(operation)
    const fault: Fault = operation === 'get' && picked === 'resent' ? 'none' : picked
    injected.push({ operation, fault })
    switch (fault) {
      case 'none':
        return run()
      case 'lost_request':
        throw new IdempotencyStoreError('unavailable', `injected: ${operation} request lost`)
      case 'lost_reply':
        await run()
        throw new IdempotencyStoreError('timeout', `injected: ${operation} applied, reply lost`)
      case 'resent':
        await run()
        return run()
      default: {
        const unknown: never = fault
        throw new Error(`unknown fault ${String(unknown)}`)
      }
    }
  }

  return {
    injected,
    begin: (input) => call('begin', () => store.begin(input)),
    complete: (input) => call('complete', () => store.complete(input)),
    release: (input) => call('release', () => store.release(input)),
    extend: (input) => call('extend', () => store.extend(input)),
    get: (key) => call('get', () => store.get(key)),
    delete: (key, options) => store.delete(key, options),
  }
}
