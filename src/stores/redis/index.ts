// `idempotency-kit/redis`: the Redis store and the wrappers for the user's ioredis or node-redis client.

export type {
  IoredisLike,
  IoredisPipelineLike,
  NodeRedisCommandOptions,
  NodeRedisLike,
  RedisArgument,
  RedisClient,
  ScriptReply,
  WaitFor,
} from './clients.js'
export { ioredisClient, nodeRedisClient } from './clients.js'
export type { RedisStoreOptions } from './redis-store.js'
export { RedisStore } from './redis-store.js'
