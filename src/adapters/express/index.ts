/** @module idempotency-kit/express: the Express 4 and 5 middleware and a raw-body-keeping JSON parser. */
export type { ExpressIdempotencyOptions } from './middleware.js'
export { idempotency } from './middleware.js'
export type { JsonOptions } from './raw-body.js'
export { json, keepRawBody } from './raw-body.js'
