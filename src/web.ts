/**
 * @module idempotency-kit/web: the engine, the in-memory store and the errors for runtimes without `node:`
 * modules (workers, Vercel Edge, Deno, Bun): hashing is a built-in SHA-256 and randomness Web Crypto's.
 */
import { createEngine, type Idempotency } from './core/engine.js'
import type { IdempotencyOptions } from './core/options.js'
import { webCrypto } from './core/web-crypto.js'

/**
 * Creates an idempotency engine that imports no `node:` module.
 *
 * @example
 * const engine = createIdempotency({ store: new MemoryStore() })
 */
export function createIdempotency(options: IdempotencyOptions): Idempotency {
  return createEngine(options, options.crypto ?? webCrypto)
}

export type { Decision, Execution, HandlerOutcome, Idempotency } from './core/engine.js'
export { createEngine } from './core/engine.js'
export {
  IdempotencyConfigError,
  IdempotencyError,
  IdempotencyLeaseLostError,
  IdempotencyStoreError,
} from './core/errors.js'
export type { IdempotencyEvent, IdempotencyEventType } from './core/events.js'
export type { Lease } from './core/lease.js'
export type { CryptoProvider, IdempotencyOptions, RouteOptions } from './core/options.js'
export type { StorageDecision, StoragePolicy } from './core/policy.js'
export { defaultStoragePolicy } from './core/policy.js'
export type { BeginResult, Store, StoredRecord, StoredResponse } from './core/store.js'
export { webCrypto } from './core/web-crypto.js'
export type { MemoryStoreOptions } from './stores/memory/memory-store.js'
export { MemoryStore } from './stores/memory/memory-store.js'
