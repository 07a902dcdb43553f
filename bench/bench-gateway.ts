// The bench's fake gateway: the demo's charge shape and an attempt counter, without keeping charges (runs are long).
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'

/** The charge every subject returns, as the demo's gateway makes it. */
export interface BenchCharge {
  readonly id: string
  readonly amount: number
  readonly currency: string
  readonly customerId: string
  readonly status: 'succeeded'
  readonly createdAt: string
}

/** Counts calls (executions) and answers after an optional latency. */
export class BenchGateway {
  /** Calls that reached the gateway: the number of executions of the charge. */
  attempts = 0
  readonly #latencyMs: number

  constructor(latencyMs = 0) {
    this.#latencyMs = latencyMs
  }

  async createCharge(request: { amount: number; currency: string; customerId: string }): Promise<BenchCharge> {
    this.attempts++
    if (this.#latencyMs > 0) await sleep(this.#latencyMs)
    return {
      id: `ch_${randomBytes(12).toString('hex')}`,
      amount: request.amount,
      currency: request.currency,
      customerId: request.customerId,
      status: 'succeeded',
      createdAt: new Date().toISOString(),
    }
  }
}
