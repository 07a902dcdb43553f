/** @module idempotency-kit/fastify: the Fastify 5 plugin. */
export type { FastifyIdempotencyOptions } from './plugin.js'
export { idempotency } from './plugin.js'
