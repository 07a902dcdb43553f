/**
 * @module idempotency-kit: the framework-neutral engine, the Store contract, the in-memory store, errors,
 * key parsing and fingerprinting.
 */

export type { Decision, Execution, HandlerOutcome, Idempotency } from './core/engine.js'
export { createEngine } from './core/engine.js'
export type { IdempotencyErrorCode, StoreFailure } from './core/errors.js'
export {
  IdempotencyConfigError,
  IdempotencyError,
  IdempotencyLeaseLostError,
  IdempotencyStoreError,
} from './core/errors.js'
export type { IdempotencyEvent, IdempotencyEventType } from './core/events.js'
export type { FingerprintBody } from './core/fingerprint.js'
export { FINGERPRINT_VERSION, fingerprintRequest } from './core/fingerprint.js'
export { storableHeaders } from './core/headers.js'
export type { HttpResponse, IdempotencyRequest } from './core/http.js'
export { parseIdempotencyKey } from './core/key.js'
export type { Lease } from './core/lease.js'
export type {
  CryptoProvider,
  IdempotencyOptions,
  ResolvedOptions,
  ResolvedRoute,
  RouteOptions,
} from './core/options.js'
export type { StorageDecision, StoragePolicy } from './core/policy.js'
export { defaultStoragePolicy } from './core/policy.js'
export type { ProblemCode } from './core/problem.js'
export { problemType } from './core/problem.js'
export type {
  BeginInput,
  BeginResult,
  ClockOffset,
  CompleteInput,
  DeleteResult,
  ExtendInput,
  RecordState,
  ReleaseInput,
  Store,
  StoredRecord,
  StoredResponse,
} from './core/store.js'
export { createIdempotency } from './create-idempotency.js'
export type { IdempotentErrorCode } from './idempotent/errors.js'
export {
  IdempotencyInProgressError,
  IdempotencyKeyReusedError,
  IdempotencyRecordLimitError,
  IdempotencyValueError,
  IdempotentError,
} from './idempotent/errors.js'
export type { IdempotentFunction, IdempotentOptions } from './idempotent/idempotent.js'
export { idempotent } from './idempotent/idempotent.js'
export type { ValueRefusal } from './idempotent/value-codec.js'
export type { MemoryStoreOptions } from './stores/memory/memory-store.js'
export { MemoryStore } from './stores/memory/memory-store.js'
