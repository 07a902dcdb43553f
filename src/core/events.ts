/** Events the engine emits for every outcome; they carry the storage-key hash, never a raw key, body or credential. */

export type IdempotencyEventType =
  | 'acquired'
  | 'takeover'
  | 'replayed'
  | 'conflict'
  | 'mismatch'
  | 'completed'
  | 'released'
  | 'complete_failed'
  | 'lease_lost'
  | 'store_error'
  | 'rejected'

export interface IdempotencyEvent {
  readonly type: IdempotencyEventType
  /** `lease.key`: hex SHA-256 of scope and key; absent before the key was parsed. */
  readonly key?: string
  readonly fence?: number
  readonly previousFence?: number
  /** HTTP status sent or stored, where there is one. */
  readonly status?: number
  /** Milliseconds since the engine saw the request. */
  readonly durationMs: number
  /** A short machine-readable why: a store failure reason, a rejection code, an abort reason. */
  readonly reason?: string
  /** The fault behind a `store_error` or `complete_failed`, for logs. */
  readonly error?: unknown
}
