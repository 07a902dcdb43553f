// The in-memory store: each operation is one synchronous block, so it is atomic within one process.
import { IdempotencyConfigError, IdempotencyStoreError } from '../../core/errors.js'
import type {
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

/** Read once: a getter call per clock read otherwise, and it never changes. */
const TIME_ORIGIN = performance.timeOrigin
/** The record format this code reads and writes; any other is undecodable, never "no record". */
const FORMAT = 1
/** A rough per-record cost of the object, the map entry and the expiry heap slot. */
const RECORD_OVERHEAD_BYTES = 256
/** Expired records dropped on every write, so dead bodies do not wait for the store to fill up. */
const SWEEP_PER_WRITE = 16

/**
 * One record. A write replaces it with a new one that takes over its place in the expiry heap, except `complete`,
 * which completes it in place (one object per key instead of two: the memory store keeps every record a day).
 */
class MemoryRecord {
  /** The record format this code reads and writes. */
  readonly v = FORMAT
  heapIndex = -1

  constructor(
    readonly key: string,
    /** The hashed scope that created the record. */
    readonly scope: string,
    public state: RecordState,
    readonly fence: number,
    readonly fingerprint: string,
    readonly token: string,
    /** Whether the acquisition that made `token` the owner was a takeover, to answer a repeated begin alike. */
    readonly takeover: boolean,
    readonly leaseDeadline: number,
    public expiresAt: number,
    /** The store's own copy, set once completed. */
    public response: KeptResponse | null,
    /** This record's share of `maxBytes`. */
    public bytes: number,
  ) {}

  /** What a token-guarded write leaves in its place: the same key, scope, fence and owner, the rest as given. */
  succeededBy(
    state: RecordState,
    fingerprint: string,
    leaseDeadline: number,
    expiresAt: number,
    response: KeptResponse | null,
    bytes: number,
  ): MemoryRecord {
    return new MemoryRecord(
      this.key,
      this.scope,
      state,
      this.fence,
      fingerprint,
      this.token,
      this.takeover,
      leaseDeadline,
      expiresAt,
      response,
      bytes,
    )
  }
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
  /** A min-heap by expiry over the live records, so a sweep never scans live records. */
  private readonly expiries: MemoryRecord[] = []
  /** The keys of each scope's records, kept only with `maxRecordsPerScope`. */
  private readonly scopes = new Map<string, Set<string>>()
  private bytes = 0
  private readonly maxRecords: number
  private readonly maxRecordsPerScope: number | undefined
  private readonly maxBytes: number
  private readonly clockOffset: ClockOffset
  private readonly bodies: BodySlabs

  constructor(options: MemoryStoreOptions = {}) {
    this.maxRecords = positiveInteger('maxRecords', options.maxRecords ?? 100_000)
    this.maxBytes = positiveInteger('maxBytes', options.maxBytes ?? 64 * 1024 * 1024)
    this.maxRecordsPerScope =
      options.maxRecordsPerScope === undefined
        ? undefined
        : positiveInteger('maxRecordsPerScope', options.maxRecordsPerScope)
    this.clockOffset = options.clockOffset ?? (() => 0)
    // A slab is at most 1/32 of the bound, so even a small store is not filled by the slack of a few slabs.
    this.bodies = new BodySlabs(Math.min(SLAB_BYTES, Math.floor(this.maxBytes / 32)))
  }

  async begin(input: BeginInput): Promise<BeginResult> {
    const now = this.now()
    const record = this.read(input.key, now)
    const plan = planBegin(record ?? null, input, now)
    if (plan.kind === 'answer') {
      const { result } = plan
      return result.kind === 'replay' ? { kind: 'replay', response: handOut(record?.response ?? null) } : result
    }
    const limited = record === undefined && this.maxRecordsPerScope !== undefined
    if (limited) {
      const full = this.scopeFull(input.scope, now)
      if (full !== undefined) return full
    }
    const leaseDeadline = now + input.leaseMs
    this.write(
      now,
      record,
      new MemoryRecord(
        input.key,
        record?.scope ?? input.scope,
        'in_progress',
        plan.fence,
        input.fingerprint,
        input.token,
        plan.takeover,
        leaseDeadline,
        leaseDeadline + input.retentionMs,
        null,
        sizeOf(input.key, input.fingerprint, input.token, null),
      ),
    )
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
    const response = new KeptResponse(input.response, this.bodies)
    const bytes = sizeOf(record.key, record.fingerprint, record.token, response)
    try {
      this.makeRoom(now, 0, bytes - record.bytes)
    } catch (error) {
      this.bodies.free(response)
      throw error
    }
    const previousExpiry = record.expiresAt
    record.state = 'completed'
    record.response = response
    record.expiresAt = now + input.retentionMs
    this.bytes += bytes - record.bytes
    record.bytes = bytes
    this.resift(record, previousExpiry)
    return true
  }

  async release(input: ReleaseInput): Promise<boolean> {
    const now = this.now()
    const plan = planWrite('release', this.read(input.key, now) ?? null, input.token)
    if (plan.kind === 'answer') return plan.result
    const { record } = plan
    const bytes = sizeOf(record.key, '', record.token, null)
    this.write(
      now,
      record,
      record.succeededBy('released', '', record.leaseDeadline, now + input.retentionMs, null, bytes),
    )
    return true
  }

  async extend(input: ExtendInput): Promise<boolean> {
    const now = this.now()
    const plan = planWrite('extend', this.read(input.key, now) ?? null, input.token)
    if (plan.kind === 'answer') return plan.result
    const { record } = plan
    const leaseDeadline = now + input.leaseMs
    const expiresAt = leaseDeadline + input.retentionMs
    this.write(
      now,
      record,
      record.succeededBy(record.state, record.fingerprint, leaseDeadline, expiresAt, record.response, record.bytes),
    )
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
      response: response === null ? null : handOut(response),
    }
  }

  async delete(key: string, options: { readonly force?: boolean } = {}): Promise<DeleteResult> {
    const record = this.read(key, this.now())
    if (record === undefined) return 'absent'
    if (record.state === 'in_progress' && options.force !== true) return 'refused_in_progress'
    this.drop(record)
    return 'deleted'
  }

  /** Monotonic: `performance.now()` never steps back when the wall clock is adjusted. */
  private now(): number {
    return TIME_ORIGIN + performance.now() + this.clockOffset()
  }

  /** The live record under `key`; an expired one is dropped on the way. */
  private read(key: string, now: number): MemoryRecord | undefined {
    const record = this.records.get(key)
    if (record === undefined) return undefined
    if (record.v !== FORMAT) {
      throw new IdempotencyStoreError('undecodable', `memory store: record format ${String(record.v)} is not ${FORMAT}`)
    }
    if (now < record.expiresAt) return record
    this.drop(record)
    return undefined
  }

  private overfull(addedRecords: number, addedBytes: number): boolean {
    return (
      this.records.size + addedRecords > this.maxRecords || this.bytes + this.bodies.slack + addedBytes > this.maxBytes
    )
  }

  /** Drops expired records, enough of them to fit what a write adds; throws 'full' rather than evict. */
  private makeRoom(now: number, addedRecords: number, addedBytes: number): void {
    // The record being written is live, so the sweep cannot drop it: it only takes records already past expiry.
    let budget = SWEEP_PER_WRITE
    for (let top = this.expiries[0]; top !== undefined && top.expiresAt <= now; top = this.expiries[0]) {
      if (budget <= 0 && !this.overfull(addedRecords, addedBytes)) break
      budget -= 1
      this.drop(top)
    }
    if (this.overfull(addedRecords, addedBytes)) {
      throw new IdempotencyStoreError(
        'full',
        `memory store full: ${this.records.size} records of ${this.maxRecords}, ` +
          `${this.bytes} bytes of ${this.maxBytes}, none expired`,
      )
    }
  }

  /** Replaces `previous` (or nothing) with `next`, after making room; throws 'full' rather than evict. */
  private write(now: number, previous: MemoryRecord | undefined, next: MemoryRecord): void {
    const addedBytes = next.bytes - (previous?.bytes ?? 0)
    this.makeRoom(now, previous === undefined ? 1 : 0, addedBytes)
    this.records.set(next.key, next)
    this.bytes += addedBytes
    const heap = this.expiries
    if (previous === undefined) {
      next.heapIndex = heap.length
      heap.push(next)
      siftUp(heap, next.heapIndex)
    } else {
      // The new record takes the old one's place, then moves to where its expiry belongs.
      const at = previous.heapIndex
      previous.heapIndex = -1
      next.heapIndex = at
      heap[at] = next
      this.resift(next, previous.expiresAt)
    }
  }

  /** Moves a record whose expiry changed from `previousExpiry` to where it now belongs in the heap. */
  private resift(record: MemoryRecord, previousExpiry: number): void {
    if (record.expiresAt < previousExpiry) siftUp(this.expiries, record.heapIndex)
    else siftDown(this.expiries, record.heapIndex)
  }

  private drop(record: MemoryRecord): void {
    // Only the record the map holds: a test may have put an undecodable one in its place.
    if (this.records.get(record.key) === record) this.records.delete(record.key)
    this.bytes -= record.bytes
    if (record.response !== null) this.bodies.free(record.response)
    removeAt(this.expiries, record.heapIndex)
    record.heapIndex = -1
    const held = this.scopes.get(record.scope)
    if (held?.delete(record.key) === true && held.size === 0) this.scopes.delete(record.scope)
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
}

/**
 * The store's own copy of a response, in as few objects as it can be: the headers as one flat list of names and
 * values, the body as a range of a slab. Callers may reuse or mutate what they passed in.
 */
class KeptResponse implements StoredResponse {
  readonly status: number
  readonly replayable: boolean
  // Plain fields, so what is at rest shows in a dump of the records (the security suite reads one).
  /** Name, value, name, value… */
  readonly headerList: string[]
  private frozen: ReadonlyArray<readonly [string, string]> | undefined
  /** The body is `slab.bytes[bodyAt, bodyAt + bodyLength)`. */
  readonly slab: Slab
  readonly bodyAt: number
  readonly bodyLength: number

  constructor(response: StoredResponse, bodies: BodySlabs) {
    this.status = response.status
    this.replayable = response.replayable
    const flat: string[] = []
    for (const [name, value] of response.headers) flat.push(name, value)
    this.headerList = flat
    const { body } = response
    this.bodyLength = body.byteLength
    this.slab = bodies.place(body)
    this.bodyAt = bodies.placedAt
  }

  /**
   * Frozen on the first hand-out (a response never replayed never pays for it); the same arrays every time after,
   * since nobody can change them.
   */
  get headers(): ReadonlyArray<readonly [string, string]> {
    if (this.frozen === undefined) {
      const flat = this.headerList
      const headers: Array<readonly [string, string]> = []
      for (let i = 0; i < flat.length; i += 2) headers.push(Object.freeze([flat[i] as string, flat[i + 1] as string]))
      this.frozen = Object.freeze(headers)
    }
    return this.frozen
  }

  /** A fresh copy of the body, the caller's to reuse or mutate. */
  get body(): Uint8Array {
    const length = this.bodyLength
    const copy = new Uint8Array(length)
    copy.set(this.slab.bytes.subarray(this.bodyAt, this.bodyAt + length))
    return copy
  }

  /** This response's share of `maxBytes`. */
  get size(): number {
    let bytes = this.bodyLength
    const flat = this.headerList
    for (let i = 0; i < flat.length; i += 2) bytes += (flat[i] as string).length + (flat[i + 1] as string).length + 32
    return bytes
  }
}

/** What a caller gets of a stored response: a new object, frozen headers and a body of its own. */
function handOut(response: KeptResponse | null): StoredResponse {
  if (response === null) throw new TypeError('a completed record without a response')
  return { status: response.status, headers: response.headers, body: response.body, replayable: response.replayable }
}

/** Bodies up to this size (and 1/16 of a slab) share slabs; larger ones get a buffer of their own. */
const SLAB_MAX_BODY = 2 * 1024
/** The slab size, unless 1/32 of `maxBytes` is smaller. */
const SLAB_BYTES = 32 * 1024

/** One shared buffer of small bodies, and how many of them are still held. */
class Slab {
  /** Live bodies in it. */
  live = 0
  constructor(readonly bytes: Uint8Array) {}
}

/** Where bodies of no bytes are kept; large bodies get a slab of their own. Neither is counted in `slack`. */
const NO_SLAB = new Slab(new Uint8Array(0))

/**
 * Copies of small bodies, packed into shared slabs: a buffer per stored body costs the garbage collector far more
 * than the copy (the memory store keeps every body for a day). A slab is freed once all its bodies are; no view
 * into it leaves the store (a hand-out copies). What slabs hold beyond their live bodies (`slack`) counts toward
 * `maxBytes`, so one long-lived body pinning a slab of expired ones cannot grow memory past the bound. Each slab
 * counts its own live bodies: no map lookup per body stored or freed.
 */
class BodySlabs {
  /** The slab being filled. */
  #slab = NO_SLAB
  #at = 0
  /** Bytes of the slabs held minus the bytes of the live bodies in them. */
  slack = 0
  /** Where in the slab `place` returned the body starts. */
  placedAt = 0
  readonly #slabBytes: number
  readonly #maxBody: number

  constructor(slabBytes: number) {
    this.#slabBytes = slabBytes
    this.#maxBody = Math.min(SLAB_MAX_BODY, Math.floor(slabBytes / 16))
  }

  /** Forgets a kept body; its slab goes once it holds no live body and is not the one being filled. */
  free(response: { readonly slab: Slab; readonly bodyLength: number }): void {
    const slab = response.slab
    // Not a shared slab (empty or large body): nothing was counted.
    if (slab.live === 0) return
    slab.live -= 1
    this.slack += response.bodyLength
    if (slab.live === 0 && slab !== this.#slab) this.slack -= slab.bytes.byteLength
  }

  /** Copies `body` into a slab (a slab of its own when large) and returns that; it starts at `placedAt`. */
  place(body: Uint8Array): Slab {
    const length = body.byteLength
    this.placedAt = 0
    if (length === 0) return NO_SLAB
    if (length > this.#maxBody) return new Slab(new Uint8Array(body))
    let slab = this.#slab
    if (this.#at + length > slab.bytes.byteLength) {
      // The slab filled so far goes now if every body in it was freed meanwhile.
      if (slab !== NO_SLAB && slab.live === 0) this.slack -= slab.bytes.byteLength
      slab = new Slab(new Uint8Array(this.#slabBytes))
      this.#slab = slab
      this.#at = 0
      this.slack += this.#slabBytes
    }
    const at = this.#at
    slab.bytes.set(body, at)
    this.#at = at + length
    this.placedAt = at
    slab.live += 1
    this.slack -= length
    return slab
  }
}

function sizeOf(key: string, fingerprint: string, token: string, response: KeptResponse | null): number {
  const bytes = RECORD_OVERHEAD_BYTES + key.length + fingerprint.length + token.length
  return response === null ? bytes : bytes + response.size
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new IdempotencyConfigError(`MemoryStore: ${name} must be a positive integer, got ${value}`)
  }
  return value
}

// The expiry heap: each record knows its slot, so a write replaces its record in place and a drop removes it.

function place(heap: MemoryRecord[], at: number, record: MemoryRecord): void {
  heap[at] = record
  record.heapIndex = at
}

function siftUp(heap: MemoryRecord[], from: number): void {
  const record = heap[from] as MemoryRecord
  let i = from
  while (i > 0) {
    const parent = (i - 1) >> 1
    const above = heap[parent] as MemoryRecord
    if (above.expiresAt <= record.expiresAt) break
    place(heap, i, above)
    i = parent
  }
  place(heap, i, record)
}

function siftDown(heap: MemoryRecord[], from: number): void {
  const record = heap[from] as MemoryRecord
  const n = heap.length
  let i = from
  for (;;) {
    const left = 2 * i + 1
    if (left >= n) break
    const right = left + 1
    let child = left
    if (right < n && (heap[right] as MemoryRecord).expiresAt < (heap[left] as MemoryRecord).expiresAt) child = right
    const smaller = heap[child] as MemoryRecord
    if (smaller.expiresAt >= record.expiresAt) break
    place(heap, i, smaller)
    i = child
  }
  place(heap, i, record)
}

function removeAt(heap: MemoryRecord[], at: number): void {
  if (at < 0) return
  const last = heap.pop() as MemoryRecord
  if (at === heap.length) return
  place(heap, at, last)
  const parent = (at - 1) >> 1
  if (at > 0 && (heap[parent] as MemoryRecord).expiresAt > last.expiresAt) siftUp(heap, at)
  else siftDown(heap, at)
}
