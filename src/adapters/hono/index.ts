/** @module idempotency-kit/hono: the Hono 4 middleware, on any runtime (Node, Bun, Deno, workers). */
export type { HonoIdempotencyOptions, IdempotencyVariables } from './middleware.js'
export { idempotency } from './middleware.js'
