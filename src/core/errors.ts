/** Faults the library throws. Client-facing outcomes (400/409/410/422) are values, not errors. */

export type IdempotencyErrorCode =
  | 'ERR_IDEMPOTENCY_CONFIG'
  | 'ERR_IDEMPOTENCY_STORE'
  | 'ERR_IDEMPOTENCY_LEASE_LOST'
  // Thrown by idempotent(fn), where the HTTP adapters answer 409 or 422, or replay a stored failure.
  | 'ERR_IDEMPOTENCY_IN_PROGRESS'
  | 'ERR_IDEMPOTENCY_KEY_REUSED'
  | 'ERR_IDEMPOTENCY_RECORD_LIMIT'
  | 'ERR_IDEMPOTENCY_VALUE'
  | 'ERR_IDEMPOTENT_FAILURE'

const HELP = 'docs/errors.md#'

/** Base class of every error the library throws; `code` is stable, `cause` keeps the original. */
export abstract class IdempotencyError extends Error {
  abstract readonly code: IdempotencyErrorCode
  get help(): string {
    return `${HELP}${this.code.toLowerCase()}`
  }
}

/** Invalid options, or an adapter that cannot see what it needs (a body parser mounted after it). */
export class IdempotencyConfigError extends IdempotencyError {
  override readonly name = 'IdempotencyConfigError'
  readonly code = 'ERR_IDEMPOTENCY_CONFIG'
}

/** Why a store call failed; every reason answers 503 with `Retry-After`. */
export type StoreFailure = 'unavailable' | 'timeout' | 'full' | 'undecodable' | 'closing'

/** The store is unreachable, slower than the engine's deadline, full, or holds a record it cannot decode. */
export class IdempotencyStoreError extends IdempotencyError {
  override readonly name = 'IdempotencyStoreError'
  readonly code = 'ERR_IDEMPOTENCY_STORE'
  readonly reason: StoreFailure
  constructor(reason: StoreFailure, message: string, options?: ErrorOptions) {
    super(message, options)
    this.reason = reason
  }
}

/** Thrown by `lease.assertHeld()` once the lease can no longer be trusted: another holder may run. */
export class IdempotencyLeaseLostError extends IdempotencyError {
  override readonly name = 'IdempotencyLeaseLostError'
  readonly code = 'ERR_IDEMPOTENCY_LEASE_LOST'
}
