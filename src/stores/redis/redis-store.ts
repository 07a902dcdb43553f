// The Redis store: one Lua script per operation, one key per record, one round trip in steady state.

import { IdempotencyConfigError, IdempotencyError, IdempotencyStoreError } from '../../core/errors.js'
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
import type { RedisArgument, RedisClient, ScriptReply, WaitFor } from './clients.js'
import { decodeHeaders, encodeHeaders } from './header-codec.js'
import { type LuaScript, luaScripts, type OperationName } from './lua-scripts.js'

/** Options of `RedisStore`. */
export interface RedisStoreOptions {
  /** The user's client, wrapped by `ioredisClient` or `nodeRedisClient`; never closed by the store. */
  readonly client: RedisClient
  /**
   * Namespace of the records: a record lives at `prefix + ':' + key`. Default `idempotency`.
   * No hash tag (`{…}`): it would put every record in one Cluster slot.
   */
  readonly prefix?: string
  /** Test-only: milliseconds added to Redis's `TIME` in every script. */
  readonly clockOffset?: ClockOffset
  /**
   * What to do when `maxmemory-policy` can evict records (anything but `noeviction`), checked on
   * first use: `warn` (default) calls `onWarning`; `refuse` makes every call throw
   * `IdempotencyConfigError` until the policy is fixed.
   */
  readonly evictionPolicy?: 'warn' | 'refuse'
  /** Receives configuration warnings; default `process.emitWarning`. */
  readonly onWarning?: (message: string) => void
  /**
   * Pipelines `WAIT replicas timeoutMs` behind `begin` and `complete` (same round trip). Fewer
   * acknowledgements than asked throw `IdempotencyStoreError('unavailable')`; after `begin`, the
   * record is released first so the key is not held.
   */
  readonly durability?: { readonly replicas: number; readonly timeoutMs: number }
  /**
   * Most live records one scope (tenant) may hold, tombstones included; past it a new key of that scope is
   * refused (`scope_full`: 429 from the adapters) while its existing keys keep working. Default: no limit.
   * Each scope then has a sorted set at `prefix + ':scope:' + scope hash` (member: the record's key, score: its
   * expiry), kept by the same scripts in the same round trips. Single-node Redis only: a scope's records and
   * its set sit in different Cluster slots, so a Cluster client is refused at construction.
   */
  readonly maxRecordsPerScope?: number
}

const EVICTING_POLICIES = new Set([
  'allkeys-lru',
  'allkeys-lfu',
  'allkeys-random',
  'volatile-lru',
  'volatile-lfu',
  'volatile-random',
  'volatile-ttl',
])

/**
 * A `Store` on Redis 7+ (single node or Cluster), over the user's ioredis or node-redis client.
 *
 * @example
 * import { Redis } from 'ioredis'
 * import { RedisStore, ioredisClient } from 'idempotency-kit/redis'
 * const redis = new Redis(process.env.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 })
 * const store = new RedisStore({ client: ioredisClient(redis), prefix: 'payments-idem' })
 */
export class RedisStore implements Store {
  readonly #client: RedisClient
  readonly #prefix: string
  readonly #clockOffset: ClockOffset
  readonly #refuseEviction: boolean
  readonly #warn: (message: string) => void
  readonly #wait: WaitFor | undefined
  /** `maxRecordsPerScope` as the begin script's argument, or undefined without a limit. */
  readonly #scopeLimit: string | undefined
  readonly #scripts: Readonly<Record<OperationName, LuaScript>>
  #policyChecked = false
  #policyCheck: Promise<void> | undefined

  constructor(options: RedisStoreOptions) {
    const prefix = options.prefix ?? 'idempotency'
    if (typeof prefix !== 'string' || prefix === '') {
      throw new IdempotencyConfigError('RedisStore: prefix must be a non-empty string')
    }
    if (prefix.includes('{') || prefix.includes('}')) {
      throw new IdempotencyConfigError(
        `RedisStore: prefix ${JSON.stringify(prefix)} has a hash tag, which would put every record in one Cluster slot; records need none (one key each)`,
      )
    }
    const policy = options.evictionPolicy ?? 'warn'
    if (policy !== 'warn' && policy !== 'refuse') {
      throw new IdempotencyConfigError("RedisStore: evictionPolicy must be 'warn' or 'refuse'")
    }
    const durability = options.durability
    if (durability !== undefined) {
      const { replicas, timeoutMs } = durability
      if (!Number.isSafeInteger(replicas) || replicas < 1) {
        throw new IdempotencyConfigError('RedisStore: durability.replicas must be an integer >= 1')
      }
      // WAIT with timeout 0 blocks forever.
      if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
        throw new IdempotencyConfigError('RedisStore: durability.timeoutMs must be an integer >= 1')
      }
      this.#wait = { replicas, timeoutMs }
    }
    const limit = options.maxRecordsPerScope
    if (limit !== undefined) {
      if (!Number.isSafeInteger(limit) || limit < 1) {
        throw new IdempotencyConfigError(`RedisStore: maxRecordsPerScope must be a positive integer, got ${limit}`)
      }
      // A script may only touch keys of one slot: complete, release, extend and delete get only the record's
      // key, yet must move its score in its scope's set, which lives in another slot.
      if (options.client.cluster === true) {
        throw new IdempotencyConfigError(
          "RedisStore: maxRecordsPerScope needs a single Redis node (or a primary with replicas), not a Cluster: each record is one key in its own slot, and counting a scope's records would make every operation touch a second key in another slot, which a Cluster refuses (CROSSSLOT). Limit records per tenant in front of the store, or use a non-Cluster Redis for this store",
        )
      }
      this.#scopeLimit = String(limit)
    }
    this.#client = options.client
    this.#prefix = prefix
    this.#clockOffset = options.clockOffset ?? (() => 0)
    this.#refuseEviction = policy === 'refuse'
    this.#warn =
      options.onWarning ?? ((message) => process.emitWarning(message, { code: 'IDEMPOTENCY_REDIS_EVICTION' }))
    this.#scripts = luaScripts()
  }

  async begin(input: BeginInput): Promise<BeginResult> {
    const args = [
      input.fingerprint,
      nonEmpty('token', input.token),
      ms('leaseMs', input.leaseMs, 1),
      ms('retentionMs', input.retentionMs, 0),
      this.#offset(),
    ]
    let scopeSet: string | undefined
    if (this.#scopeLimit !== undefined) {
      scopeSet = `${this.#prefix}:scope:${nonEmpty('scope', input.scope)}`
      args.push(this.#scopeLimit)
    }
    const reply = await this.#run('begin', input.key, args, this.#wait, scopeSet)
    const result = decodeBegin(reply.values)
    if (this.#wait !== undefined && result.kind === 'acquired' && reply.replicas < this.#wait.replicas) {
      // The record may vanish in a failover: do not let a handler run on it, and free the key.
      const release = { key: input.key, token: input.token, retentionMs: input.retentionMs }
      const cause = await this.release(release).then(
        () => undefined,
        (error: unknown) => error,
      )
      const { replicas, timeoutMs } = this.#wait
      const outcome = cause === undefined ? 'released it' : 'could not release it (the lease will lapse)'
      throw new IdempotencyStoreError(
        'unavailable',
        `begin reached ${reply.replicas} of ${replicas} replicas within ${timeoutMs} ms and ${outcome}`,
        cause === undefined ? undefined : { cause },
      )
    }
    return result
  }

  async complete(input: CompleteInput): Promise<boolean> {
    const { response } = input
    if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
      throw new RangeError(`RedisStore: status ${response.status} is not 100-599`)
    }
    const body = response.body
    const args = [
      nonEmpty('token', input.token),
      String(response.status),
      response.replayable ? '1' : '0',
      encodeHeaders(response.headers),
      Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      ms('retentionMs', input.retentionMs, 0),
      this.#offset(),
    ]
    const reply = await this.#run('complete', input.key, args, this.#wait)
    const outcome = word(reply.values, 0)
    let stored: boolean
    switch (outcome) {
      case 'completed':
      case 'already_completed':
        stored = true
        break
      case 'not_owner':
        return false
      default:
        throw unexpected('complete', outcome)
    }
    if (this.#wait !== undefined && reply.replicas < this.#wait.replicas) {
      // Stored on the primary only: the engine retries complete (a no-op true) while its lease holds.
      throw new IdempotencyStoreError(
        'unavailable',
        `complete reached ${reply.replicas} of ${this.#wait.replicas} replicas within ${this.#wait.timeoutMs} ms`,
      )
    }
    return stored
  }

  async release(input: ReleaseInput): Promise<boolean> {
    const args = [nonEmpty('token', input.token), ms('retentionMs', input.retentionMs, 0), this.#offset()]
    const outcome = word((await this.#run('release', input.key, args)).values, 0)
    switch (outcome) {
      case 'released':
      case 'already_released':
        return true
      case 'not_owner':
      case 'completed':
        return false
      default:
        throw unexpected('release', outcome)
    }
  }

  async extend(input: ExtendInput): Promise<boolean> {
    const args = [
      nonEmpty('token', input.token),
      ms('leaseMs', input.leaseMs, 1),
      ms('retentionMs', input.retentionMs, 0),
      this.#offset(),
    ]
    const outcome = word((await this.#run('extend', input.key, args)).values, 0)
    switch (outcome) {
      case 'extended':
      case 'already_completed':
        return true
      case 'not_owner':
        return false
      default:
        throw unexpected('extend', outcome)
    }
  }

  async get(key: string): Promise<StoredRecord | null> {
    return decodeRecord((await this.#run('get', key, [this.#offset()])).values)
  }

  async delete(key: string, options?: { readonly force?: boolean }): Promise<DeleteResult> {
    const force = options?.force === true ? '1' : '0'
    const outcome = word((await this.#run('delete', key, [force, this.#offset()])).values, 0)
    switch (outcome) {
      case 'deleted':
      case 'absent':
      case 'refused_in_progress':
        return outcome
      default:
        throw unexpected('delete', outcome)
    }
  }

  #offset(): string {
    const offset = this.#clockOffset()
    if (!Number.isFinite(offset)) throw new RangeError('RedisStore: clockOffset() is not finite')
    return String(Math.round(offset))
  }

  /**
   * EVALSHA, and EVAL only when the node has no such script (restart, failover, SCRIPT FLUSH). `scopeSet` is
   * the second key of a limited `begin`.
   */
  async #run(
    operation: OperationName,
    key: string,
    args: readonly RedisArgument[],
    wait?: WaitFor,
    scopeSet?: string,
  ): Promise<ScriptReply> {
    const storageKey = `${this.#prefix}:${nonEmpty('key', key)}`
    const keys = scopeSet === undefined ? [storageKey] : [storageKey, scopeSet]
    const script = this.#scripts[operation]
    if (!this.#policyChecked) await this.#checkPolicy()
    try {
      try {
        return await this.#client.evalsha(script.sha, keys, args, wait)
      } catch (error) {
        if (!message(error).startsWith('NOSCRIPT')) throw error
        return await this.#client.eval(script.source, keys, args, wait)
      }
    } catch (error) {
      throw storeError(operation, error)
    }
  }

  /** Reads `maxmemory_policy` once (INFO, because CONFIG is often disabled on managed Redis). */
  async #checkPolicy(): Promise<void> {
    this.#policyCheck ??= this.#readPolicy().finally(() => {
      this.#policyCheck = undefined
    })
    await this.#policyCheck
  }

  async #readPolicy(): Promise<void> {
    let info: string
    try {
      info = await this.#client.info('memory')
    } catch (error) {
      throw storeError('INFO memory', error)
    }
    const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1]
    const maxmemory = /^maxmemory:(\d+)/m.exec(info)?.[1] ?? 'unknown'
    if (policy === undefined || EVICTING_POLICIES.has(policy)) {
      const what =
        policy === undefined
          ? 'could not read maxmemory_policy from INFO memory'
          : `maxmemory-policy is ${policy} (maxmemory ${maxmemory})`
      const message = `RedisStore: ${what}; Redis may evict idempotency records, which lets a retry run the handler again. Set maxmemory-policy noeviction (a full store then answers 503).`
      if (this.#refuseEviction) throw new IdempotencyConfigError(message)
      this.#warn(message)
    }
    this.#policyChecked = true
  }
}

function decodeBegin(values: readonly Buffer[]): BeginResult {
  const outcome = word(values, 0)
  switch (outcome) {
    case 'acquired': {
      exactly(values, 4, outcome)
      const takeover = word(values, 2)
      if (takeover !== '0' && takeover !== '1') throw unexpected('begin', `takeover ${takeover}`)
      return {
        kind: 'acquired',
        fence: integer(values, 1),
        takeover: takeover === '1',
        previousFence: integer(values, 3),
      }
    }
    case 'replay':
      exactly(values, 5, outcome)
      return { kind: 'replay', response: decodeResponse(values, 1) }
    case 'in_progress':
      exactly(values, 2, outcome)
      return { kind: 'in_progress', leaseRemainingMs: Math.max(0, integer(values, 1)) }
    case 'mismatch':
      exactly(values, 1, outcome)
      return { kind: 'mismatch' }
    case 'scope_full':
      exactly(values, 2, outcome)
      return { kind: 'scope_full', retryAfterMs: Math.max(0, integer(values, 1)) }
    default:
      throw unexpected('begin', outcome)
  }
}

function decodeRecord(values: readonly Buffer[]): StoredRecord | null {
  const outcome = word(values, 0)
  if (outcome === 'none') return null
  if (outcome !== 'record') throw unexpected('get', outcome)
  exactly(values, 11, outcome)
  const state = word(values, 1)
  if (!isState(state)) throw unexpected('get', `state ${state}`)
  return {
    state,
    fence: integer(values, 2),
    fingerprint: word(values, 3),
    token: word(values, 4),
    leaseDeadline: integer(values, 5),
    expiresAt: integer(values, 6),
    response: state === 'completed' ? decodeResponse(values, 7) : null,
  }
}

/** Reads (status, replayable, headers, body) starting at `at`. */
function decodeResponse(values: readonly Buffer[], at: number): StoredResponse {
  const status = integer(values, at)
  const replayable = word(values, at + 1)
  const headers = decodeHeaders(values[at + 2] ?? Buffer.alloc(0))
  const body = values[at + 3]
  if (replayable !== '0' && replayable !== '1') throw unexpected('response', `replayable ${replayable}`)
  if (headers === null) throw unexpected('response', 'headers')
  if (body === undefined) throw unexpected('response', 'no body')
  // A copy: the reply Buffer may be a view into a larger pooled allocation.
  return { status, headers, body: new Uint8Array(body), replayable: replayable === '1' }
}

function isState(state: string): state is RecordState {
  return state === 'in_progress' || state === 'completed' || state === 'released'
}

function word(values: readonly Buffer[], at: number): string {
  const value = values[at]
  if (value === undefined) throw unexpected('reply', `element ${at} missing`)
  return value.toString('utf8')
}

function integer(values: readonly Buffer[], at: number): number {
  const text = word(values, at)
  const value = Number(text)
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value)) throw unexpected('reply', text)
  return value
}

function exactly(values: readonly Buffer[], length: number, outcome: string): void {
  if (values.length !== length) throw unexpected(outcome, `${values.length} elements`)
}

function unexpected(what: string, detail: string): IdempotencyStoreError {
  return new IdempotencyStoreError('undecodable', `RedisStore: unexpected ${what} reply (${detail})`)
}

function nonEmpty(name: string, value: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new RangeError(`RedisStore: ${name} must be a non-empty string`)
  }
  return value
}

/** Durations go to Lua as integer strings; fractions round up so a lease is never shorter than asked. */
function ms(name: string, value: number, min: number): string {
  if (!Number.isFinite(value) || value < min) {
    throw new RangeError(`RedisStore: ${name} must be a finite number >= ${min}, got ${value}`)
  }
  return String(Math.ceil(value))
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Maps a server or connection error to the store error the engine answers 503 for. */
function storeError(operation: string, error: unknown): IdempotencyError {
  if (error instanceof IdempotencyError) return error
  const text = message(error)
  const options = { cause: error }
  if (text.startsWith('OOM')) {
    return new IdempotencyStoreError('full', `RedisStore ${operation}: Redis is out of memory`, options)
  }
  if (text.startsWith('IDEMPOTENCY_UNDECODABLE') || text.startsWith('WRONGTYPE')) {
    return new IdempotencyStoreError('undecodable', `RedisStore ${operation}: ${text}`, options)
  }
  // Everything else (connection lost, offline queue disabled, READONLY/MASTERDOWN in a failover,
  // CLUSTERDOWN, BUSY, a script/argument mismatch) fails closed the same way.
  return new IdempotencyStoreError('unavailable', `RedisStore ${operation}: ${text}`, options)
}
