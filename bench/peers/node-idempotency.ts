// @node-idempotency/core with its Redis storage adapter, wired as the core README says (onRequest, then onResponse).
import { Idempotency, IdempotencyError, IdempotencyErrorCodes } from '@node-idempotency/core'
import { RedisStorageAdapter } from '@node-idempotency/storage-adapter-redis'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import type { ChargeGuard } from '../bench-app.js'
import { type Counters, countMethods } from '../counting.js'

const STATUS: Record<string, number> = {
  [IdempotencyErrorCodes.REQUEST_IN_PROGRESS]: 409,
  [IdempotencyErrorCodes.IDEMPOTENCY_FINGERPRINT_MISSMATCH]: 422,
  [IdempotencyErrorCodes.IDEMPOTENCY_KEY_LEN_EXEEDED]: 400,
  [IdempotencyErrorCodes.IDEMPOTENCY_KEY_MISSING]: 400,
}

/**
 * The guard: `onRequest` before the route (a replay is sent from its stored `{additional, body}`), and `res.send`
 * wrapped to call `onResponse`, not awaited, as `@node-idempotency/express` does (that package is not installed).
 */
export async function nodeIdempotencyGuard(redisUrl: string, prefix: string, counters: Counters): Promise<ChargeGuard> {
  const storage = new RedisStorageAdapter({ url: redisUrl })
  await storage.connect()
  countMethods(storage, ['setIfNotExists', 'set', 'get'], counters)
  const idempotency = new Idempotency(storage, { cacheKeyPrefix: prefix, enforceIdempotency: true })

  const middleware: RequestHandler = async (req: Request, res: Response, next: NextFunction) => {
    const request = {
      method: req.method,
      headers: req.headers as Record<string, unknown>,
      body: req.body as Record<string, unknown>,
      path: req.originalUrl,
    }
    try {
      const cached = await idempotency.onRequest(request)
      if (cached !== undefined) {
        const additional = (cached.additional ?? {}) as { statusCode?: number }
        res.status(additional.statusCode ?? 200).set('Idempotent-Replayed', 'true')
        res.json(cached.body)
        return
      }
    } catch (error) {
      if (error instanceof IdempotencyError) {
        if (error.code === IdempotencyErrorCodes.REQUEST_IN_PROGRESS) res.set('Retry-After', '1')
        res.status(STATUS[error.code] ?? 500).json({ error: error.code, message: error.message })
        return
      }
      next(error)
      return
    }
    const send = res.send.bind(res)
    res.send = (body?: unknown) => {
      const parsed = typeof body === 'string' ? safeParse(body) : body
      void idempotency
        .onResponse(request, { body: parsed, additional: { statusCode: res.statusCode } })
        .catch(() => undefined)
      return send(body)
    }
    next()
  }

  return {
    middleware: [middleware],
    charge: async (_req, res, run) => {
      res.json(await run())
    },
    close: () => storage.disconnect(),
  }
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}
