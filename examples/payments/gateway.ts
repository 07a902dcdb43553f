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

export interface ChargeRequest {
  readonly amount: number
  readonly currency: string
  readonly customerId: string
  /** The downstream idempotency key (`lease.key`): stable across retries and takeovers. */
  readonly idempotencyKey: string | undefined
}

/** An in-process gateway that records every charge it makes, so tests can count them. */
export class FakeGateway {
  readonly charges: Charge[] = []
  /** Calls that reached the gateway, charged or declined. */
  attempts = 0
  readonly #latencyMs: number

  constructor(latencyMs = 0) {
    this.#latencyMs = latencyMs
  }

  async createCharge(request: ChargeRequest): Promise<Charge> {
    if (request.customerId === 'cus_gateway_down') {
      throw new GatewayUnavailableError('connect ECONNREFUSED: the payment gateway is unreachable')
    }
    this.attempts++
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
