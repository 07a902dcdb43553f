/** @module idempotency-kit/client: a `fetch` that sends idempotency keys and retries safely. */

export type {
  FetchFunction,
  IdempotencyInfo,
  IdempotentFetch,
  IdempotentFetchOptions,
  IdempotentRequestInit,
  RetryCause,
  RetryEvent,
} from './idempotent-fetch.js'
export { createIdempotentFetch, idempotencyInfo } from './idempotent-fetch.js'
