/** The `Store` contract: what every store (memory, SQLite, Redis, PostgreSQL, yours) must do, atomically. */

/**
 * One response exactly as it will be replayed: bytes, not parsed JSON.
 *
 * A response that was too large or streamed is kept as `replayable: false` with its status only
 * (empty headers and body); a retry is then answered 410 and never runs the handler again.
 */
export interface StoredResponse {
  /** HTTP status code, 100–599. */
  readonly status: number
  /**
   * Headers in the order the handler set them, repeated names allowed. Values are latin1 strings:
   * each char code is one byte (0–255), as Node's HTTP layer writes them.
   */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
  /** The body bytes; empty for an unreplayable response. */
  readonly body: Uint8Array
  /** False when only the status was kept (too large, streamed). */
  readonly replayable: boolean
}

/** What `begin` found or did. Outcomes are values; only faults are thrown. */
export type BeginResult =
  | {
      /** The caller's token now owns the record: run the handler. */
      readonly kind: 'acquired'
      /** Strictly greater than every fence handed out for this key while the record or its tombstone lives. */
      readonly fence: number
      /** True when an `in_progress` record whose lease had passed was taken over. */
      readonly takeover: boolean
      /** The fence of the record or tombstone this acquisition follows; 0 when there was none. */
      readonly previousFence: number
    }
  | {
      /** The key completed with the same fingerprint: send this again. */
      readonly kind: 'replay'
      readonly response: StoredResponse
    }
  | {
      /** Another token holds a live lease. */
      readonly kind: 'in_progress'
      /** Time left on the holder's lease by the store's clock, ≥ 0. */
      readonly leaseRemainingMs: number
    }
  | {
      /** Same key, different request (checked before the state: 422 before 409). */
      readonly kind: 'mismatch'
    }
  | {
      /**
       * No live record under the key, and the store already holds its `maxRecordsPerScope` live records for
       * `input.scope`: nothing was written. Only stores configured with a per-scope limit answer this.
       */
      readonly kind: 'scope_full'
      /** Until the scope's earliest record expires by the store's clock, ≥ 0: a hint, not a promise. */
      readonly retryAfterMs: number
    }

export interface BeginInput {
  /** The engine's storage key: hex SHA-256 of scope and key. Stores add their own prefix. */
  readonly key: string
  /**
   * Hex SHA-256 of the request's scope (the tenant), never the scope itself. A store limiting records per
   * scope counts the live records of each scope and refuses a new one past its limit (`scope_full`); records
   * that already exist (replays, conflicts, takeovers, tombstones) are never refused. Other stores ignore it.
   */
  readonly scope: string
  /** Versioned request fingerprint, compared byte for byte. */
  readonly fingerprint: string
  /** 128 random bits made by the engine, hex. A `begin` by the current owner's token answers `acquired` again. */
  readonly token: string
  /** Lease length from the store's now. */
  readonly leaseMs: number
  /** Kept after the lease deadline (in progress) or after completion/release. */
  readonly retentionMs: number
}

export interface CompleteInput {
  readonly key: string
  readonly token: string
  readonly response: StoredResponse
  /** The completed record expires this long after the store's now. */
  readonly retentionMs: number
}

export interface ReleaseInput {
  readonly key: string
  readonly token: string
  /** The tombstone (which keeps the fence) expires this long after the store's now. */
  readonly retentionMs: number
}

export interface ExtendInput {
  readonly key: string
  readonly token: string
  readonly leaseMs: number
  readonly retentionMs: number
}

export type RecordState = 'in_progress' | 'completed' | 'released'

/** A record as `get` shows it, for inspection and tests. Times are the store's clock, epoch ms. */
export interface StoredRecord {
  readonly state: RecordState
  readonly fence: number
  /** Empty for a tombstone. */
  readonly fingerprint: string
  readonly token: string
  readonly leaseDeadline: number
  readonly expiresAt: number
  /** Present once completed. */
  readonly response: StoredResponse | null
}

export type DeleteResult = 'deleted' | 'absent' | 'refused_in_progress'

/**
 * Persistence for idempotency records.
 *
 * Every method is ONE atomic step on the backend (one Lua script, one SQL statement, one IMMEDIATE
 * transaction, one synchronous block) and one round trip in steady state: no check-then-set.
 * Every write is safe to repeat with the same token, because drivers resend commands.
 *
 * Stores decide deadlines with their own clock (plus the test-only clock offset), never the caller's.
 * A record past its `expiresAt` is absent, swept or not. An undecodable record is a thrown
 * `IdempotencyStoreError` ('undecodable'), never "no record". A full store throws ('full'); it never
 * evicts a live record.
 */
export interface Store {
  /**
   * Compares the fingerprint first (mismatch in every state but a tombstone), then: no live record or a
   * tombstone → new `in_progress` owned by `token` (fence continues past the tombstone); `in_progress`
   * owned by `token` → the same acquisition again (fence, takeover, previousFence), lease not pushed; `in_progress` past its lease deadline → takeover
   * (new token, fence + 1); live `in_progress` → `in_progress`; `completed` → `replay`.
   */
  begin(input: BeginInput): Promise<BeginResult>
  /** Stores the response iff `token` owns the record, whatever its deadline; true again if `token` already completed it. */
  complete(input: CompleteInput): Promise<boolean>
  /** Turns the record owned by `token` into a `released` tombstone that keeps the fence; true again on a tombstone of `token`. */
  release(input: ReleaseInput): Promise<boolean>
  /** Pushes the lease deadline of the record `token` owns; a no-op true if `token` already completed it. */
  extend(input: ExtendInput): Promise<boolean>
  /** The live record under `key`, or null. */
  get(key: string): Promise<StoredRecord | null>
  /** Purges a record. An `in_progress` one only with `force` (a retry may then run while the holder still runs). */
  delete(key: string, options?: { readonly force?: boolean }): Promise<DeleteResult>
  /** Frees what the store itself created (timers, statements). Never closes a client the user passed in. */
  close?(): Promise<void>
}

/**
 * Test-only time travel shared by every store: milliseconds added to the store's own clock in every
 * script and statement (0 in production). The contract suite moves time with it instead of sleeping.
 */
export type ClockOffset = () => number
