// The one "run a script" call the Redis store needs, and the two explicit wrappers that provide it.

import { IdempotencyStoreError } from '../../core/errors.js'

/** A script argument: strings go as UTF-8, Buffers byte for byte. */
export type RedisArgument = string | Buffer

/** Ask for `WAIT replicas timeoutMs` right behind the script, in the same round trip. */
export interface WaitFor {
  readonly replicas: number
  readonly timeoutMs: number
}

/** A script's reply: every element a bulk string, as bytes; `replicas` is WAIT's answer, or -1 unasked. */
export interface ScriptReply {
  readonly values: readonly Buffer[]
  readonly replicas: number
}

/**
 * The structural client the store talks to; build it with `ioredisClient` or `nodeRedisClient`.
 *
 * `evalsha` rejects with the server's error as is (`NOSCRIPT` included): the store decides what to do.
 */
export interface RedisClient {
  evalsha(sha: string, keys: readonly string[], args: readonly RedisArgument[], wait?: WaitFor): Promise<ScriptReply>
  eval(source: string, keys: readonly string[], args: readonly RedisArgument[], wait?: WaitFor): Promise<ScriptReply>
  /** The text of `INFO <section>` (from any node of a cluster). */
  info(section: string): Promise<string>
  /** True when keys may live on different nodes (a Cluster client): a script then touches one slot only. */
  readonly cluster?: boolean
}

type IoredisArgument = string | Buffer | number

/** The part of an ioredis 5 pipeline the store uses. */
export interface IoredisPipelineLike {
  callBuffer(command: string, args: IoredisArgument[]): unknown
  call(command: string, args: IoredisArgument[]): unknown
  exec(): Promise<Array<[error: Error | null, result: unknown]> | null>
}

/** The part of an ioredis 5 `Redis` or `Cluster` the store uses. */
export interface IoredisLike {
  callBuffer(command: string, args: IoredisArgument[]): Promise<unknown>
  /** ioredis makes these (EVALSHA and EVAL with Buffer replies) at run time; its typings leave them out. */
  evalshaBuffer?: (...args: IoredisArgument[]) => Promise<unknown>
  evalBuffer?: (...args: IoredisArgument[]) => Promise<unknown>
  call(command: string, args: IoredisArgument[]): Promise<unknown>
  pipeline(): IoredisPipelineLike
  /** ioredis sets it: true on a `Cluster`, false on a `Redis`. */
  readonly isCluster?: boolean
}

/**
 * Wraps an ioredis 5 `Redis` or `Cluster` for `RedisStore`.
 *
 * Its `keyPrefix`, if any, is applied by ioredis to script keys too: the store does not add it again.
 * So that an outage rejects instead of queueing, create the client with `enableOfflineQueue: false`
 * (and a small `maxRetriesPerRequest`); the engine's deadline still bounds every call.
 * With `enableAutoPipelining: true` the scripts of concurrent requests go out in one write: behind an HTTP server
 * that cut Redis's CPU per request by about 40%, while a tight loop of 64 in-process callers ran slower, ioredis
 * keeping one auto-pipeline in flight at a time (docs/BENCHMARKS.md).
 *
 * @example
 * const store = new RedisStore({
 *   client: ioredisClient(new Redis(url, { enableOfflineQueue: false, enableAutoPipelining: true })),
 * })
 */
export function ioredisClient(client: IoredisLike): RedisClient {
  const run = async (
    command: 'EVALSHA' | 'EVAL',
    script: string,
    keys: readonly string[],
    args: readonly RedisArgument[],
    wait: WaitFor | undefined,
  ): Promise<ScriptReply> => {
    const argv: IoredisArgument[] = [script, keys.length, ...keys, ...args]
    if (wait === undefined) {
      // The named commands where they exist: with `enableAutoPipelining`, ioredis 5 loses callBuffer's command
      // name and throws from a timer, which would take the process down.
      const named = command === 'EVALSHA' ? client.evalshaBuffer : client.evalBuffer
      const reply = named === undefined ? client.callBuffer(command, argv) : named.apply(client, argv)
      return { values: buffers(await reply), replicas: -1 }
    }
    // A pipeline, not two calls: on a Cluster it keeps WAIT on the node that ran the script.
    const pipeline = client.pipeline()
    pipeline.callBuffer(command, argv)
    pipeline.call('WAIT', [wait.replicas, wait.timeoutMs])
    const results = await pipeline.exec()
    const [script_, wait_] = results ?? []
    if (script_ === undefined || wait_ === undefined) {
      throw new IdempotencyStoreError('unavailable', 'ioredis discarded the pipeline')
    }
    if (script_[0] !== null) throw script_[0]
    if (wait_[0] !== null) throw wait_[0]
    return { values: buffers(script_[1]), replicas: replicaCount(wait_[1]) }
  }
  return {
    evalsha: (sha, keys, args, wait) => run('EVALSHA', sha, keys, args, wait),
    eval: (source, keys, args, wait) => run('EVAL', source, keys, args, wait),
    info: async (section) => text(await client.call('INFO', [section])),
    cluster: client.isCluster === true,
  }
}

/** Command options understood by both node-redis 4 (`returnBuffers`) and 5 (`typeMapping`). */
export interface NodeRedisCommandOptions {
  readonly returnBuffers?: boolean
  readonly typeMapping?: Readonly<Record<number, unknown>>
}

/** The part of a node-redis 4 or 5 client the store uses. */
export interface NodeRedisLike {
  sendCommand(args: RedisArgument[], options?: NodeRedisCommandOptions): Promise<unknown>
}

// RESP type byte of a bulk (blob) string, '$'; node-redis 5 maps it to Buffer with this.
const BLOB_STRING = 36
const AS_BUFFERS: NodeRedisCommandOptions = {
  returnBuffers: true,
  typeMapping: { [BLOB_STRING]: Buffer },
}

/**
 * Wraps a node-redis 4 or 5 client (`createClient()`, not a cluster) for `RedisStore`.
 *
 * Replies are asked for as Buffers in a way both versions understand (`returnBuffers` for 4,
 * `typeMapping` for 5; each ignores the other). So that an outage rejects instead of queueing,
 * create the client with `disableOfflineQueue: true`.
 *
 * @example
 * const store = new RedisStore({ client: nodeRedisClient(await createClient({ url }).connect()) })
 */
export function nodeRedisClient(client: NodeRedisLike): RedisClient {
  const run = async (
    command: 'EVALSHA' | 'EVAL',
    script: string,
    keys: readonly string[],
    args: readonly RedisArgument[],
    wait: WaitFor | undefined,
  ): Promise<ScriptReply> => {
    const argv: RedisArgument[] = [command, script, String(keys.length), ...keys, ...args]
    const reply = client.sendCommand(argv, AS_BUFFERS)
    if (wait === undefined) return { values: buffers(await reply), replicas: -1 }
    // Queued in the same tick, so node-redis writes both in one batch: one round trip.
    const acked = client.sendCommand(['WAIT', String(wait.replicas), String(wait.timeoutMs)])
    const [scriptResult, waitResult] = await Promise.allSettled([reply, acked])
    if (scriptResult.status === 'rejected') throw scriptResult.reason
    if (waitResult.status === 'rejected') throw waitResult.reason
    return { values: buffers(scriptResult.value), replicas: replicaCount(waitResult.value) }
  }
  return {
    evalsha: (sha, keys, args, wait) => run('EVALSHA', sha, keys, args, wait),
    eval: (source, keys, args, wait) => run('EVAL', source, keys, args, wait),
    info: async (section) => text(await client.sendCommand(['INFO', section])),
  }
}

function buffers(reply: unknown): Buffer[] {
  if (Array.isArray(reply) && reply.every((item) => Buffer.isBuffer(item))) return reply
  throw new IdempotencyStoreError(
    'undecodable',
    'the Redis client did not return the script reply as Buffers: wrap it with the matching function (ioredisClient or nodeRedisClient)',
  )
}

function replicaCount(reply: unknown): number {
  const count = typeof reply === 'number' ? reply : Number(String(reply))
  if (!Number.isSafeInteger(count)) {
    throw new IdempotencyStoreError('undecodable', `WAIT answered ${String(reply)}`)
  }
  return count
}

function text(reply: unknown): string {
  if (typeof reply === 'string') return reply
  if (Buffer.isBuffer(reply)) return reply.toString('utf8')
  throw new IdempotencyStoreError('undecodable', 'INFO did not answer text')
}
