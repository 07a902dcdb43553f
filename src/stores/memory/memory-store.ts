// The in-memory store: each operation is one synchronous block, so it is atomic within one process.
import { IdempotencyConfigError, IdempotencyStoreError } from '../../core/errors.js'
import type {
  BeginInput,
  BeginResult,
  ClockOffset,
  CompleteInput,
  DeleteResult,
  ExtendInput,
  ReleaseInput,
  Store,
  StoredRecord,
  StoredResponse,
} from '../../core/store.js'
import { planBegin, planWrite } from '../../core/transitions.js'

/** Limits and test hooks of a `MemoryStore`. */
export interface MemoryStoreOptions {
  /** Most records held, tombstones included; default 100,000. */
  readonly maxRecords?: number
  /** Most bytes held, estimated from keys, tokens, fingerprints, headers and bodies; default 64 MiB. */
  readonly maxBytes?: number
  /**
   * Most live records one scope (tenant) may hold, tombstones included; past it a new key of that scope is
   * refused (`scope_full`: 429 from the adapters) while its existing keys keep working. Default: no limit.
   */
  readonly maxRecordsPerScope?: number
  /** Test-only: milliseconds added to the store's clock (the contract suite moves time with it). */
  readonly clockOffset?: ClockOffset
}

/** The record format this code reads and writes; any other is undecodable, never "no record". */
const FORMAT = 1
/** A rough per-record cost of the object, the map entry and the expiry queue entry. */
const RECORD_OVERHEAD_BYTES = 256
/** Expired records dropped on every write, so dead bodies do not wait for the store to fill up. */
const SWEEP_PER_WRITE = 16

interface RecordBase {
  readonly v: number
  /** The hashed scope that created the record. */
  readonly scope: string
  readonly fence: number
  readonly fingerprint: string
  readonly token: string
  /** Whether the acquisition that made `token` the owner was a takeover, to answer a repeated begin alike. */
  readonly takeover: boolean
  readonly leaseDeadline: number
  readonly expiresAt: number
  /** This record's share of `maxBytes`. */
  readonly bytes: number
}

type MemoryRecord = RecordBase &
  (
    | { readonly state: 'in_progress' | 'released'; readonly response: null }
    | { readonly state: 'completed'; readonly response: StoredResponse }
  )

/** An entry of the expiry queue; stale once its key holds another record object. */
interface Expiry {
  readonly at: number
  readonly key: string
  readonly record: MemoryRecord
}

/**
 * A `Store` in this process's memory, for tests, demos and single-process deployments.
 *
 * Its clock is monotonic, so a wall-clock step does not expire every lease at once. It never evicts a
 * live record: when full after dropping expired ones, it throws `IdempotencyStoreError` ('full').
 *
 * @example
 * const store = new MemoryStore({ maxRecords: 10_000 })
 */
export class MemoryStore implements Store {
  private readonly records = new Map<string, MemoryRecord>()
  /** A min-heap by expiry over every record written, so a sweep never scans live records. */
  private readonly expiries: Expiry[] = []
  /** The keys of each scope's records, kept only with `maxRecordsPerScope`. */
  private readonly scopes = new Map<string, Set<string>>()
  private bytes = 0
  private readonly maxRecords: number
  private readonly maxRecordsPerScope: number | undefined
  private readonly maxBytes: number
  private readonly clockOffset: ClockOffset

  constructor(options: MemoryStoreOptions = {}) {
    this.maxRecords = positiveInteger('maxRecords', options.maxRecords ?? 100_000)
    this.maxBytes = positiveInteger('maxBytes', options.maxBytes ?? 64 * 1024 * 1024)
    this.maxRecordsPerScope =
      options.maxRecordsPerScope === undefined
        ? undefined
        : positiveInteger('maxRecordsPerScope', options.maxRecordsPerScope)
    this.clockOffset = options.clockOffset ?? (() => 0)
  }

  async begin(input: BeginInput): Promise<BeginResult> {
    const now = this.now()
    const record = this.read(input.key, now)
    const plan = planBegin(record ?? null, input, now)
    if (plan.kind === 'answer') {
      const { result } = plan
      return result.kind === 'replay' ? { kind: 'replay', response: copyResponse(result.response) } : result
    }
    const limited = record === undefined && this.maxRecordsPerScope !== undefined
    if (limited) {
      const full = this.scopeFull(input.scope, now)
      if (full !== undefined) return full
    }
    const leaseDeadline = now + input.leaseMs
    const fields = {
      v: FORMAT,
      scope: record?.scope ?? input.scope,
      state: 'in_progress',
      fence: plan.fence,
      fingerprint: input.fingerprint,
      token: input.token,
      takeover: plan.takeover,
      response: null,
    } as const
    this.write(input.key, now, record, {
      ...fields,
      leaseDeadline,
      expiresAt: leaseDeadline + input.retentionMs,
      bytes: sizeOf(input.key, fields, null),
    })
    if (limited) {
      const held = this.scopes.get(input.scope)
      if (held === undefined) this.scopes.set(input.scope, new Set([input.key]))
      else held.add(input.key)
    }
    return { kind: 'acquired', fence: plan.fence, takeover: plan.takeover, previousFence: plan.previousFence }
  }

  async complete(input: CompleteInput): Promise<boolean> {
    const now = this.now()
    const plan = planWrite('complete', this.read(input.key, now) ?? null, input.token)
    if (plan.kind === 'answer') return plan.result
    const { record } = plan
    const response = copyResponse(input.response)
    this.write(input.key, now, record, {
      ...record,
      state: 'completed',
      response,
      expiresAt: now + input.retentionMs,
      bytes: sizeOf(input.key, record, response),
    })
    return true
  }

  async release(input: ReleaseInput): Promise<boolean> {
    const now = this.now()
    const plan = planWrite('release', this.read(input.key, now) ?? null, input.token)
    if (plan.kind === 'answer') return plan.result
    const { record } = plan
    const tombstone = { ...record, state: 'released', fingerprint: '', response: null } as const
    this.write(input.key, now, record, {
      ...tombstone,
      expiresAt: now + input.retentionMs,
      bytes: sizeOf(input.key, tombstone, null),
    })
    return true
  }

  async extend(input: ExtendInput): Promise<boolean> {
    const now = this.now()
    const plan = planWrite('extend', this.read(input.key, now) ?? null, input.token)
    if (plan.kind === 'answer') return plan.result
    const { record } = plan
    const leaseDeadline = now + input.leaseMs
    this.write(input.key, now, record, { ...record, leaseDeadline, expiresAt: leaseDeadline + input.retentionMs })
    return true
  }

  async get(key: string): Promise<StoredRecord | null> {
    const record = this.read(key, this.now())
    if (record === undefined) return null
    const { state, fence, fingerprint, token, leaseDeadline, expiresAt, response } = record
    return {
      state,
      fence,
      fingerprint,
      token,
      leaseDeadline,
      expiresAt,
      response: response === null ? null : copyResponse(response),
    }
  }

  async delete(key: string, options: { readonly force?: boolean } = {}): Promise<DeleteResult> {
    const record = this.read(key, this.now())
    if (record === undefined) return 'absent'
    if (record.state === 'in_progress' && options.force !== true) return 'refused_in_progress'
    this.drop(key, record)
    return 'deleted'
  }

  /** Monotonic: `performance.now()` never steps back when the wall clock is adjusted. */
  private now(): number {
    return performance.timeOrigin + performance.now() + this.clockOffset()
  }

  /** The live record under `key`; an expired one is dropped on the way. */
  private read(key: string, now: number): MemoryRecord | undefined {
    const record = this.records.get(key)
    if (record === undefined) return undefined
    if (record.v !== FORMAT) {
      throw new IdempotencyStoreError('undecodable', `memory store: record format ${String(record.v)} is not ${FORMAT}`)
    }
    if (now < record.expiresAt) return record
    this.drop(key, record)
    return undefined
  }

  /** Replaces `previous` (or nothing) with `next`, after making room; throws 'full' rather than evict. */
  private write(key: string, now: number, previous: MemoryRecord | undefined, next: MemoryRecord): void {
    const addedRecords = previous === undefined ? 1 : 0
    const addedBytes = next.bytes - (previous?.bytes ?? 0)
    const overfull = () => this.records.size + addedRecords > this.maxRecords || this.bytes + addedBytes > this.maxBytes
    // `previous` is live, so the sweep cannot drop it: it only takes records already past expiry.
    let budget = SWEEP_PER_WRITE
    for (let top = this.expiries[0]; top !== undefined && top.at <= now; top = this.expiries[0]) {
      if (budget <= 0 && !overfull()) break
      budget -= 1
      popExpiry(this.expiries)
      if (this.records.get(top.key) === top.record) this.drop(top.key, top.record)
    }
    if (overfull()) {
      throw new IdempotencyStoreError(
        'full',
        `memory store full: ${this.records.size} records of ${this.maxRecords}, ` +
          `${this.bytes} bytes of ${this.maxBytes}, none expired`,
      )
    }
    this.records.set(key, next)
    this.bytes += addedBytes
    pushExpiry(this.expiries, { at: next.expiresAt, key, record: next })
    // Every write queues an entry; rebuild once stale ones (superseded records) dominate.
    if (this.expiries.length > 2 * this.records.size + 1024) this.rebuildExpiries()
  }

  private drop(key: string, record: MemoryRecord): void {
    this.records.delete(key)
    this.bytes -= record.bytes
    const held = this.scopes.get(record.scope)
    if (held?.delete(key) === true && held.size === 0) this.scopes.delete(record.scope)
  }

  /** The refusal when `scope` holds `maxRecordsPerScope` live records, or undefined when a new one fits. */
  private scopeFull(scope: string, now: number): BeginResult | undefined {
    const held = this.scopes.get(scope)
    const limit = this.maxRecordsPerScope ?? Number.POSITIVE_INFINITY
    if (held === undefined || held.size < limit) return undefined
    // Only at the limit: reading drops what expired, and `drop` takes it out of this set.
    for (const key of held) this.read(key, now)
    if (held.size < limit) return undefined
    let first = Number.POSITIVE_INFINITY
    for (const key of held) first = Math.min(first, this.records.get(key)?.expiresAt ?? first)
    return { kind: 'scope_full', retryAfterMs: Math.max(0, first - now) }
  }

  private rebuildExpiries(): void {
    this.expiries.length = 0
    for (const [key, record] of this.records) {
      pushExpiry(this.expiries, { at: record.expiresAt, key, record })
    }
  }
}

/** A private copy: callers may reuse or mutate their buffers, and must not reach the stored ones. */
function copyResponse(response: StoredResponse): StoredResponse {
  return {
    status: response.status,
    headers: response.headers.map(([name, value]) => [name, value] as const),
    body: new Uint8Array(response.body),
    replayable: response.replayable,
  }
}

function sizeOf(
  key: string,
  record: Pick<RecordBase, 'fingerprint' | 'token'>,
  response: StoredResponse | null,
): number {
  let bytes = RECORD_OVERHEAD_BYTES + key.length + record.fingerprint.length + record.token.length
  if (response === null) return bytes
  bytes += response.body.byteLength
  for (const [name, value] of response.headers) bytes += name.length + value.length + 32
  return bytes
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new IdempotencyConfigError(`MemoryStore: ${name} must be a positive integer, got ${value}`)
  }
  return value
}

function pushExpiry(heap: Expiry[], entry: Expiry): void {
  heap.push(entry)
  let i = heap.length - 1
  while (i > 0) {
    const parent = (i - 1) >> 1
    const above = heap[parent]
    if (above === undefined || above.at <= entry.at) break
    heap[i] = above
    i = parent
  }
  heap[i] = entry
}

function popExpiry(heap: Expiry[]): void {
  const last = heap.pop()
  if (last === undefined || heap.length === 0) return
  let i = 0
  for (;;) {
    const left = 2 * i + 1
    const right = left + 1
    let child = left
    const l = heap[left]
    const r = heap[right]
    if (l === undefined) break
    if (r !== undefined && r.at < l.at) child = right
    const smaller = heap[child]
    if (smaller === undefined || smaller.at >= last.at) break
    heap[i] = smaller
    i = child
  }
  heap[i] = last
}
