/** What the Express adapter keeps per request, kept beside the request rather than added to it. */
import type { Lease } from '../../core/lease.js'

/** Where the raw request bytes are kept on the request (read by the NestJS interceptor too). */
export const RAW_BODY = Symbol.for('idempotency-kit.raw-body')
/** Set on a request one of the adapters handled, so that app-wide plus per-route use handles it once. */
export const HANDLED = Symbol.for('idempotency-kit.handled')

/** The request as the adapter reads and writes it. */
export type Kept = {
  [RAW_BODY]?: Buffer | undefined
  [HANDLED]?: boolean | undefined
  idempotency?: Lease | undefined
  /** body-parser 1.x's mark of a parsed body (Express 4): a later JSON parser skips the request. */
  _body?: boolean | undefined
}

const installed = new WeakSet<object>()

/** One record per request that set any of them: one WeakMap entry, not one each. */
interface Record {
  [RAW_BODY]?: unknown
  [HANDLED]?: unknown
  idempotency?: unknown
  _body?: unknown
}
const records = new WeakMap<object, Record>()

/**
 * Defines `idempotency`, the raw body, the handled mark and body-parser's `_body` as accessors on a prototype of requests
 * (`express.request`), kept in a WeakMap. Express swaps every request's prototype, after which V8 gives each
 * property added to the request a hidden class of its own (~10 µs a property on the bench machine).
 * The values read and write as before; a request outside that prototype keeps them as its own properties.
 */
export function keepBesideRequests(prototype: object): void {
  if (installed.has(prototype)) return
  installed.add(prototype)
  for (const key of [RAW_BODY, HANDLED, 'idempotency', '_body'] as const) {
    // Defined already (by the app, or another copy of this module): theirs.
    if (Object.getOwnPropertyDescriptor(prototype, key) !== undefined) continue
    Object.defineProperty(prototype, key, {
      configurable: true,
      enumerable: false,
      get(this: object) {
        return records.get(this)?.[key]
      },
      set(this: object, value: unknown) {
        let record = records.get(this)
        if (record === undefined) {
          record = { [RAW_BODY]: undefined, [HANDLED]: undefined, idempotency: undefined, _body: undefined }
          records.set(this, record)
        }
        record[key] = value
      },
    })
  }
}
