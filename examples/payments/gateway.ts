/** The demo's fake payment gateway: the subject of the demo, not code under test. */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'

export interface Charge {
  readonly id: string
  readonly amount: number
  readonly currency: string
  readonly customerId: string
  readonly status: 'succeeded'
  readonly createdAt: string
}

/** The card was declined: a final answer, stored and replayed. */
export class CardDeclinedError extends Error {
  override readonly name = 'CardDeclinedError'
}

/** The gateway refused the connection before doing anything: safe to run again. */
export class GatewayUnavailableError extends Error {
  override readonly name = 'GatewayUnavailableError'
  readonly refused = true
}

/**
 * The request carried a lower fence than one already seen for its key: a holder that lost its lease
 * (design-review P6). Nothing was charged.
 */
export class StaleFenceError extends Error {
  override readonly name = 'StaleFenceError'
  readonly fence: number
  readonly highestFence: number
  constructor(fence: number, highestFence: number) {
    super(`fence ${fence} is lower than fence ${highestFence} already seen for this idempotency key`)
    this.fence = fence
    this.highestFence = highestFence
  }
}

export interface ChargeRequest {
  readonly amount: number
  readonly currency: string
  readonly customerId: string
  /** The downstream idempotency key (`lease.key`): stable across retries and takeovers. */
  readonly idempotencyKey: string | undefined
  /** The holder's fence (`lease.fence`): a request below the highest seen for its key is refused. */
  readonly fence?: number | undefined
}

/**
 * An in-process gateway that records every charge it makes, so tests can count them. Like Stripe, a
 * second charge with the same idempotency key returns the first one; a lower fence for a key is refused.
 */
export class FakeGateway {
  /** Distinct charges made. */
  readonly charges: Charge[] = []
  /** Calls that reached the gateway: charged, declined, deduplicated or refused for their fence. */
  attempts = 0
  readonly #latencyMs: number
  readonly #byKey = new Map<string, Promise<Charge>>()
  readonly #fences = new Map<string, number>()

  constructor(latencyMs = 0) {
    this.#latencyMs = latencyMs
  }

  async createCharge(request: ChargeRequest): Promise<Charge> {
    if (request.customerId === 'cus_gateway_down') {
      throw new GatewayUnavailableError('connect ECONNREFUSED: the payment gateway is unreachable')
    }
    this.attempts++
    const key = request.idempotencyKey
    if (key !== undefined && request.fence !== undefined) {
      // Checked and raised on arrival: a late request from an older holder is refused even when the
      // newer holder's call is still in flight.
      const highest = this.#fences.get(key) ?? 0
      if (request.fence < highest) throw new StaleFenceError(request.fence, highest)
      this.#fences.set(key, request.fence)
    }
    // Reserved on arrival, so a concurrent second call with the key shares the first one's outcome.
    const earlier = key === undefined ? undefined : this.#byKey.get(key)
    if (earlier !== undefined) return earlier
    const pending = this.#charge(request)
    if (key !== undefined) this.#byKey.set(key, pending)
    return pending
  }

  async #charge(request: ChargeRequest): Promise<Charge> {
    if (this.#latencyMs > 0) await sleep(this.#latencyMs)
    if (request.customerId === 'cus_decline') throw new CardDeclinedError('Your card was declined.')
    const charge: Charge = {
      id: `ch_${randomBytes(12).toString('hex')}`,
      amount: request.amount,
      currency: request.currency,
      customerId: request.customerId,
      status: 'succeeded',
      createdAt: new Date().toISOString(),
    }
    this.charges.push(charge)
    return charge
  }
}
