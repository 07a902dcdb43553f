/** @module idempotency-kit/koa: the Koa 2 and 3 middleware; the lease is `ctx.state.idempotency`. */
export type { IdempotencyState, KoaIdempotencyOptions } from './middleware.js'
export { idempotency } from './middleware.js'
