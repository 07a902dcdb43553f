// What `idempotent(fn)` throws where the HTTP adapters answer 409, 422, or replay a stored failure.
import { IdempotencyError, type IdempotencyErrorCode } from '../core/errors.js'
import type { ValueRefusal } from './value-codec.js'

/** The codes of the errors below. */
export type IdempotentErrorCode = Extract<
  IdempotencyErrorCode,
  | 'ERR_IDEMPOTENCY_IN_PROGRESS'
  | 'ERR_IDEMPOTENCY_KEY_REUSED'
  | 'ERR_IDEMPOTENCY_RECORD_LIMIT'
  | 'ERR_IDEMPOTENCY_VALUE'
  | 'ERR_IDEMPOTENT_FAILURE'
>

/** Another call with the same key is running (the 409 of the HTTP adapters); retry after `retryAfterMs`. */
export class IdempotencyInProgressError extends IdempotencyError {
  override readonly name = 'IdempotencyInProgressError'
  readonly code = 'ERR_IDEMPOTENCY_IN_PROGRESS'
  /** A hint: the first call is likely finished (or its holder dead) by then. */
  readonly retryAfterMs: number
  constructor(retryAfterMs: number) {
    super(`a call with this idempotency key is in progress; retry in ${retryAfterMs} ms`)
    this.retryAfterMs = retryAfterMs
  }
}

/** The key was already used with other arguments (the 422 of the HTTP adapters). */
export class IdempotencyKeyReusedError extends IdempotencyError {
  override readonly name = 'IdempotencyKeyReusedError'
  readonly code = 'ERR_IDEMPOTENCY_KEY_REUSED'
  constructor() {
    super('this idempotency key was already used with different arguments')
  }
}

/**
 * The scope already holds the store's `maxRecordsPerScope` live records (the 429 of the HTTP adapters); the
 * function was not run. New keys are accepted as older records expire.
 */
export class IdempotencyRecordLimitError extends IdempotencyError {
  override readonly name = 'IdempotencyRecordLimitError'
  readonly code = 'ERR_IDEMPOTENCY_RECORD_LIMIT'
  /** A hint: when the scope's earliest record expires. */
  readonly retryAfterMs: number
  constructor(retryAfterMs: number) {
    super(`too many idempotency records are held for this scope; retry in ${retryAfterMs} ms`)
    this.retryAfterMs = retryAfterMs
  }
}

/** The arguments or the return value cannot be encoded (a function, a symbol, a class instance, a cycle). */
export class IdempotencyValueError extends IdempotencyError {
  override readonly name = 'IdempotencyValueError'
  readonly code = 'ERR_IDEMPOTENCY_VALUE'
  /** `unsupported`, `cycle`, `too_deep`, or `too_large` (over `maxValueBytes`). */
  readonly reason: ValueRefusal | 'too_large'
  /** Where in the value, as `$[0].items[2]` (`$` is the return value or the argument list). */
  readonly path: string
  constructor(what: 'arguments' | 'return value', reason: ValueRefusal | 'too_large', path: string, detail: string) {
    super(`the ${what} cannot be stored at ${path}: ${detail}`)
    this.reason = reason
    this.path = path
  }
}

/**
 * A replay of a call that failed after `lease.commit()`: the first call's error, as stored. It carries the
 * original `name`, `message` and string or number `code`, never the stack or other properties.
 */
export class IdempotentError extends IdempotencyError {
  override readonly name = 'IdempotentError'
  readonly code = 'ERR_IDEMPOTENT_FAILURE'
  /** The `name` of the error the first call threw (`TypeError`, `PaymentDeclinedError`, …). */
  readonly originalName: string
  /** Its `code` property, when it had a string or number one. */
  readonly originalCode: string | number | undefined
  /** Always true: this error is a replay, the function did not run. */
  readonly replayed = true
  constructor(originalName: string, message: string, originalCode: string | number | undefined) {
    super(message)
    this.originalName = originalName
    this.originalCode = originalCode
  }
}
