// express-idempotency with its Redis adapter (express-idempotency-redis-adapter), as their READMEs wire them.
import { createRequire } from 'node:module'
import type { RequestHandler } from 'express'
import { getSharedIdempotencyService, idempotency } from 'express-idempotency'
import RedisAdapterModule from 'express-idempotency-redis-adapter'
import type { ChargeGuard } from '../bench-app.js'
import { type Counters, countMethods } from '../counting.js'

// The package is CommonJS with `exports.default`, as its README's `require(...).default` shows.
const RedisAdapter = RedisAdapterModule.default

/** The three calls the adapter makes of its client, each one command. */
interface AdapterClient {
  get(key: string): Promise<string | null>
  set(key: string, value: string, options: { EX: number }): Promise<unknown>
  del(key: string): Promise<unknown>
}

/**
 * The guard: `idempotency({ dataAdapter })` before the route, and the route returns early on `isHit(req)` (the
 * middleware sends the replay and still calls `next()`). The adapter looks a key up (GET), writes the request
 * (SET), and after the response is sent writes it with the response (SET): three commands per first request,
 * none of them conditional, so every duplicate whose lookup reaches Redis before the first one's write runs too.
 *
 * The client is the adapter's own `@redis/client` (the one `connectionConfig` would create), handed over as its
 * README's `connectionInstance`, behind a wrapper that counts each command and puts the run's prefix before the key
 * (the adapter writes the header's value as the Redis key, and a run must remove what it wrote).
 */
export async function expressIdempotencyRedisGuard(
  redisUrl: string,
  prefix: string,
  counters: Counters,
): Promise<ChargeGuard> {
  const adapterRequire = createRequire(createRequire(import.meta.url).resolve('express-idempotency-redis-adapter'))
  const { createClient } = adapterRequire('@redis/client') as {
    createClient(options: { url: string }): AdapterClient & { connect(): Promise<unknown>; quit(): Promise<unknown> }
  }
  const client = createClient({ url: redisUrl })
  await client.connect()
  const counted: AdapterClient = {
    get: (key) => client.get(`${prefix}:${key}`),
    set: (key, value, options) => client.set(`${prefix}:${key}`, value, options),
    del: (key) => client.del(`${prefix}:${key}`),
  }
  countMethods(counted, ['get', 'set', 'del'], counters)
  const adapter = new RedisAdapter({ connectionInstance: counted as never })
  // Its typings disagree with express-idempotency's under `exactOptionalPropertyTypes` (an optional `response`).
  const middleware = idempotency({ dataAdapter: adapter as never }) as unknown as RequestHandler
  return {
    middleware: [middleware],
    charge: async (req, res, run) => {
      if (getSharedIdempotencyService().isHit(req as never)) return
      res.json(await run())
    },
    close: async () => {
      await client.quit()
    },
  }
}
