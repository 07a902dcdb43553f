// The seed's design, step for step (GET result, SET NX lock, run, SET result, DEL lock) on ioredis: for comparison only.
import { createHash } from 'node:crypto'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import type { Redis } from 'ioredis'

/** The seed's `IdempotencyError`: a code the route maps to a status. */
export class SeedIdempotencyError extends Error {
  override readonly name = 'IdempotencyError'
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

interface SeedRecord {
  requestHash: string
  status: 'completed' | 'failed' | 'processing'
  result?: unknown
}

/** The seed's `IdempotencyHandler`, kept as written (flaws included: this is what users would run). */
export class SeedIdempotencyHandler {
  readonly #lockTTL: number
  readonly #resultTTL: number
  readonly #prefix: string

  constructor(
    readonly redis: Redis,
    options: { lockTTL?: number; resultTTL?: number; prefix?: string } = {},
  ) {
    this.#lockTTL = options.lockTTL ?? 60
    this.#resultTTL = options.resultTTL ?? 86400
    this.#prefix = options.prefix ?? 'idem'
  }

  hashRequest(body: unknown): string {
    return createHash('sha256')
      .update(JSON.stringify(this.sortObject(body)))
      .digest('hex')
  }

  sortObject(obj: unknown): unknown {
    if (typeof obj !== 'object' || obj === null) return obj
    if (Array.isArray(obj)) return obj.map((item) => this.sortObject(item))
    const record = obj as Record<string, unknown>
    return Object.keys(record)
      .sort()
      .reduce<Record<string, unknown>>((sorted, key) => {
        sorted[key] = this.sortObject(record[key])
        return sorted
      }, {})
  }

  async execute<T>(key: string, requestBody: unknown, operation: () => Promise<T>) {
    const requestHash = this.hashRequest(requestBody)
    // Step 1: check for an existing result.
    const existing = await this.getExistingResult(key)
    if (existing) {
      if (existing.requestHash !== requestHash) {
        throw new SeedIdempotencyError(
          'IDEMPOTENCY_KEY_REUSED',
          'Idempotency key was used with a different request body',
        )
      }
      if (existing.status === 'completed') return { cached: true, result: existing.result as T }
      if (existing.status === 'processing') {
        throw new SeedIdempotencyError(
          'REQUEST_IN_PROGRESS',
          'A request with this idempotency key is currently being processed',
        )
      }
    }
    // Step 2: acquire the lock.
    const lockAcquired = await this.acquireLock(key, requestHash)
    if (!lockAcquired) throw new SeedIdempotencyError('LOCK_FAILED', 'Could not acquire lock for this idempotency key')
    try {
      // Step 3: run; step 4: store the result.
      const result = await operation()
      await this.storeResult(key, requestHash, result)
      return { cached: false, result }
    } catch (error) {
      await this.storeError(key, requestHash, error)
      throw error
    } finally {
      await this.releaseLock(key)
    }
  }

  async getExistingResult(key: string): Promise<SeedRecord | null> {
    const data = await this.redis.get(`${this.#prefix}:result:${key}`)
    return data ? (JSON.parse(data) as SeedRecord) : null
  }

  async acquireLock(key: string, requestHash: string): Promise<boolean> {
    const value = JSON.stringify({ requestHash, status: 'processing', timestamp: Date.now() })
    const result = await this.redis.set(`${this.#prefix}:lock:${key}`, value, 'EX', this.#lockTTL, 'NX')
    return result === 'OK'
  }

  async releaseLock(key: string): Promise<void> {
    await this.redis.del(`${this.#prefix}:lock:${key}`)
  }

  async storeResult(key: string, requestHash: string, result: unknown): Promise<void> {
    const data = { requestHash, status: 'completed', result, completedAt: Date.now() }
    await this.redis.set(`${this.#prefix}:result:${key}`, JSON.stringify(data), 'EX', this.#resultTTL)
  }

  async storeError(key: string, requestHash: string, error: unknown): Promise<void> {
    const { message, code } = error as { message?: string; code?: string }
    const data = { requestHash, status: 'failed', error: { message, code }, failedAt: Date.now() }
    await this.redis.set(`${this.#prefix}:result:${key}`, JSON.stringify(data), 'EX', this.#resultTTL)
  }
}

/** What the seed's middleware puts on the request for the route. */
export interface SeedIdempotencyContext {
  readonly key: string
  execute<T>(operation: () => Promise<T>): Promise<{ cached: boolean; result: T }>
}

/** The seed's middleware: validates the key and hands the route an `execute`. */
export function seedIdempotencyMiddleware(
  redis: Redis,
  options: { prefix?: string; required?: boolean; resultTTL?: number } = {},
): RequestHandler {
  const handler = new SeedIdempotencyHandler(redis, options)
  const methods = ['POST', 'PUT', 'PATCH']
  return (req: Request, res: Response, next: NextFunction) => {
    if (!methods.includes(req.method)) return next()
    const idempotencyKey = req.headers['idempotency-key']
    if (typeof idempotencyKey !== 'string' || idempotencyKey === '') {
      if (options.required) {
        res.status(400).json({ error: 'IDEMPOTENCY_KEY_REQUIRED', message: 'Idempotency-Key header is required' })
        return
      }
      return next()
    }
    if (idempotencyKey.length > 255 || !/^[a-zA-Z0-9_-]+$/.test(idempotencyKey)) {
      res.status(400).json({ error: 'INVALID_IDEMPOTENCY_KEY', message: 'Invalid idempotency key' })
      return
    }
    const context: SeedIdempotencyContext = {
      key: idempotencyKey,
      execute: (operation) => handler.execute(idempotencyKey, req.body, operation),
    }
    ;(req as Request & { seedIdempotency?: SeedIdempotencyContext }).seedIdempotency = context
    next()
  }
}

/** The seed's route body: run through `execute`, set `Idempotency-Cached`, map its errors. */
export async function seedRoute(req: Request, res: Response, operation: () => Promise<unknown>): Promise<void> {
  const context = (req as Request & { seedIdempotency?: SeedIdempotencyContext }).seedIdempotency
  try {
    if (context) {
      const { cached, result } = await context.execute(operation)
      res.set('Idempotency-Cached', cached ? 'true' : 'false')
      res.json(result)
      return
    }
    res.json(await operation())
  } catch (error) {
    if (error instanceof SeedIdempotencyError) {
      const statusMap: Record<string, number> = {
        IDEMPOTENCY_KEY_REUSED: 422,
        REQUEST_IN_PROGRESS: 409,
        LOCK_FAILED: 503,
      }
      res.status(statusMap[error.code] ?? 500).json({ error: error.code, message: error.message })
      return
    }
    res.status(500).json({ error: 'INTERNAL_ERROR' })
  }
}
