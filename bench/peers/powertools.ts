// Powertools' `makeIdempotent` around the charge, on its Redis cache persistence over node-redis, as its README wires it.
import {
  IdempotencyAlreadyInProgressError,
  IdempotencyConfig,
  IdempotencyValidationError,
  makeIdempotent,
} from '@aws-lambda-powertools/idempotency'
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache'
import { createClient } from 'redis'
import type { ChargeGuard } from '../bench-app.js'
import type { BenchCharge } from '../bench-gateway.js'
import type { Counters } from '../counting.js'

interface ChargeEvent {
  readonly idempotencyKey: string
  readonly body: unknown
}

/**
 * The guard: the route calls a `makeIdempotent` function whose event is `{idempotencyKey, body}`; the key is
 * chosen by `eventKeyJmesPath`. Outside Lambda there is no
 * remaining time: a constant 30 s context is registered once (as the lease), or Powertools warns on every call.
 */
export async function powertoolsGuard(redisUrl: string, prefix: string, counters: Counters): Promise<ChargeGuard> {
  const client = await createClient({ url: redisUrl }).connect()
  // The counting client: the three calls the persistence layer makes, each one command.
  const counted = {
    get: (name: string) => {
      counters.roundTrips++
      return client.get(name)
    },
    set: (name: string, value: unknown, options?: unknown) => {
      counters.roundTrips++
      return client.set(name, value as string, options as Parameters<typeof client.set>[2])
    },
    del: (keys: string[]) => {
      counters.roundTrips++
      return client.del(keys)
    },
  }
  const persistenceStore = new CachePersistenceLayer({ client: counted })
  // No `payloadValidationJmesPath`: in 2.35.0 the cache layer's `_updateRecord` drops the validation hash, so with
  // it every replay from Redis fails validation (measured: a 422 on the first retry). Without it a retry with
  // another body under the same key replays the first response instead of a 422.
  const config = new IdempotencyConfig({ eventKeyJmesPath: 'idempotencyKey', expiresAfterSeconds: 86_400 })
  config.registerLambdaContext({ getRemainingTimeInMillis: () => 30_000 } as never)
  // The gateway call rides as a second argument; the event (argument 0, the default) alone is hashed.
  const chargeOnce = makeIdempotent(async (_event: ChargeEvent, call: () => Promise<BenchCharge>) => call(), {
    persistenceStore,
    config,
    keyPrefix: prefix,
  })

  return {
    middleware: [],
    charge: async (req, res, run) => {
      const key = req.headers['idempotency-key']
      if (typeof key !== 'string' || key === '') {
        res.status(400).json({ error: 'IDEMPOTENCY_KEY_REQUIRED' })
        return
      }
      try {
        const result = await chargeOnce({ idempotencyKey: key, body: req.body as unknown }, () => run())
        res.json(result)
      } catch (error) {
        if (error instanceof IdempotencyAlreadyInProgressError) {
          res.status(409).set('Retry-After', '1').json({ error: 'REQUEST_IN_PROGRESS' })
        } else if (error instanceof IdempotencyValidationError) {
          res.status(422).json({ error: 'IDEMPOTENCY_KEY_REUSED' })
        } else {
          throw error
        }
      }
    },
    close: async () => {
      client.destroy()
    },
  }
}
