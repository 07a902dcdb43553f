/** @module idempotency-kit/nestjs: `@Idempotent()` and `IdempotencyModule` for NestJS 10/11 on Express and Fastify. */

export { IdempotencyInterceptor } from './idempotency-interceptor.js'
export type { IdempotencyModuleAsyncOptions, IdempotencyModuleOptions } from './idempotency-module.js'
export { IDEMPOTENCY_ENGINE, IdempotencyModule } from './idempotency-module.js'
export { IDEMPOTENT_OPTIONS, IdempotencyLease, Idempotent } from './idempotent.js'
