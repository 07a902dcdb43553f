/** The Node entry point to the engine: the core with `node:crypto` injected. */
import { createEngine, type Idempotency } from './core/engine.js'
import type { IdempotencyOptions } from './core/options.js'
import { nodeCrypto } from './node-crypto.js'

/**
 * Creates an idempotency engine over a store; adapters (`idempotency-kit/express`, …) take it or its options.
 *
 * @example
 * const engine = createIdempotency({ store: new MemoryStore(), leaseMs: 30_000 })
 */
export function createIdempotency(options: IdempotencyOptions): Idempotency {
  return createEngine(options, options.crypto ?? nodeCrypto)
}
