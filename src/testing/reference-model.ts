// The executable spec of one store: the record state machine of DESIGN §2 and §3, plain and synchronous.
import type {
  BeginInput,
  BeginResult,
  CompleteInput,
  DeleteResult,
  ExtendInput,
  RecordState,
  ReleaseInput,
  StoredRecord,
  StoredResponse,
} from '../core/store.js'

interface ModelRecord {
  readonly state: RecordState
  readonly fence: number
  readonly fingerprint: string
  readonly token: string
  /** The answer that made `token` the owner; a repeated `begin` by `token` gets it again. */
  readonly acquisition: Extract<BeginResult, { kind: 'acquired' }>
  readonly leaseDeadline: number
  readonly expiresAt: number
  readonly response: StoredResponse | null
}

/**
 * A store reduced to its rules, against which the contract suite checks real stores.
 *
 * Time is a number the caller moves with `advance`. A lease has passed, and a record has expired, once
 * `now` reaches the deadline; real stores are never asked about the exact boundary.
 */
export class ReferenceModel {
  /** The model's clock in milliseconds. */
  now = 0
  private readonly records = new Map<string, ModelRecord>()

  /** Moves the clock forward. */
  advance(ms: number): void {
    this.now += ms
  }

  /** Fingerprint first, then the state: see `Store.begin`. */
  begin(input: BeginInput): BeginResult {
    const record = this.live(input.key)
    if (record === undefined) return this.acquire(input, 0, false)
    if (record.state !== 'released' && record.fingerprint !== input.fingerprint) {
      return { kind: 'mismatch' }
    }
    switch (record.state) {
      case 'released':
        return this.acquire(input, record.fence, false)
      case 'completed':
        if (record.response === null) throw new Error('model bug: completed without a response')
        return { kind: 'replay', response: record.response }
      case 'in_progress':
        if (record.token === input.token) return record.acquisition
        if (this.now < record.leaseDeadline) {
          return { kind: 'in_progress', leaseRemainingMs: record.leaseDeadline - this.now }
        }
        return this.acquire(input, record.fence, true)
    }
  }

  /** Stores the response iff `token` owns the record, whatever its deadline; true again once done. */
  complete(input: CompleteInput): boolean {
    const record = this.live(input.key)
    if (record === undefined || record.token !== input.token) return false
    switch (record.state) {
      case 'completed':
        return true
      case 'released':
        return false
      case 'in_progress':
        this.records.set(input.key, {
          ...record,
          state: 'completed',
          response: input.response,
          expiresAt: this.now + input.retentionMs,
        })
        return true
    }
  }

  /** Turns the record `token` owns into a tombstone that keeps the fence; true again on its tombstone. */
  release(input: ReleaseInput): boolean {
    const record = this.live(input.key)
    if (record === undefined || record.token !== input.token) return false
    switch (record.state) {
      case 'released':
        return true
      case 'completed':
        return false
      case 'in_progress':
        this.records.set(input.key, {
          ...record,
          state: 'released',
          fingerprint: '',
          expiresAt: this.now + input.retentionMs,
        })
        return true
    }
  }

  /** Pushes the lease deadline of the record `token` owns; a no-op true once `token` completed it. */
  extend(input: ExtendInput): boolean {
    const record = this.live(input.key)
    if (record === undefined || record.token !== input.token) return false
    switch (record.state) {
      case 'completed':
        return true
      case 'released':
        return false
      case 'in_progress': {
        const leaseDeadline = this.now + input.leaseMs
        this.records.set(input.key, {
          ...record,
          leaseDeadline,
          expiresAt: leaseDeadline + input.retentionMs,
        })
        return true
      }
    }
  }

  /** The live record under `key`, or null. */
  get(key: string): StoredRecord | null {
    const record = this.live(key)
    if (record === undefined) return null
    const { acquisition: _, ...shown } = record
    return shown
  }

  /** Purges a record; an `in_progress` one only with `force`. */
  delete(key: string, options: { readonly force?: boolean } = {}): DeleteResult {
    const record = this.live(key)
    if (record === undefined) return 'absent'
    if (record.state === 'in_progress' && options.force !== true) return 'refused_in_progress'
    this.records.delete(key)
    return 'deleted'
  }

  /** The future instants at which `key`'s answers change (lease deadline, expiry), for boundary checks. */
  deadlines(key: string): number[] {
    const record = this.live(key)
    if (record === undefined) return []
    return record.state === 'in_progress' ? [record.leaseDeadline, record.expiresAt] : [record.expiresAt]
  }

  private live(key: string): ModelRecord | undefined {
    const record = this.records.get(key)
    if (record !== undefined && this.now >= record.expiresAt) {
      this.records.delete(key)
      return undefined
    }
    return record
  }

  private acquire(input: BeginInput, previousFence: number, takeover: boolean): BeginResult {
    const acquisition = { kind: 'acquired', fence: previousFence + 1, takeover, previousFence } as const
    const leaseDeadline = this.now + input.leaseMs
    this.records.set(input.key, {
      state: 'in_progress',
      fence: acquisition.fence,
      fingerprint: input.fingerprint,
      token: input.token,
      acquisition,
      leaseDeadline,
      expiresAt: leaseDeadline + input.retentionMs,
      response: null,
    })
    return acquisition
  }
}
