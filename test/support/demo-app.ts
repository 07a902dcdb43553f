// The payments demo app in this process over a store URL (through store-from-url.ts and its fail-fast client
// options), and the fail-closed check the store-fault tests share.
import type { Server } from 'node:http'
import { expect } from 'vitest'
import { createPaymentsApp } from '../../examples/payments/app.js'
import { FakeGateway } from '../../examples/payments/gateway.js'
import { openStore } from '../../examples/payments/store-from-url.js'
import { charge, charges, closeServer, listen, problemOf, type RawResponse } from './http.js'

/** The engine's default `beginTimeoutMs`, which the demo keeps. */
export const BEGIN_TIMEOUT_MS = 2_000
/** Scheduling room on a loaded machine; far below a hang. */
export const SLACK_MS = 1_000

export interface DemoApp {
  readonly url: string
  /** Calls that reached this app's gateway. */
  attempts(): Promise<number>
}

/** Serves the demo over `storeUrl` on a free port; what to undo is pushed onto `cleanups`. */
export async function startDemoApp(storeUrl: string, cleanups: Array<() => Promise<void>>): Promise<DemoApp> {
  const opened = await openStore(storeUrl)
  cleanups.push(() => opened.close())
  const { app } = createPaymentsApp({ store: opened.store, gateway: new FakeGateway(0) })
  const server: Server = app.listen(0, '127.0.0.1')
  const url = await listen(server)
  cleanups.push(() => closeServer(server))
  return { url, attempts: async () => (await charges(url)).attempts }
}

/** Runs `cleanups` newest first, every one of them, then throws what failed. */
export async function runCleanups(cleanups: Array<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = []
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup().catch((error: unknown) => errors.push(error))
  }
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed')
}

/** Sends a keyed charge and checks the fail-closed answer: 503, the code, Retry-After, in time, and no charge. */
export async function expectUnavailable(
  demo: DemoApp,
  key: string,
  expectedMs: { readonly min?: number } = {},
): Promise<RawResponse> {
  const attempts = await demo.attempts()
  const startedAt = performance.now()
  const res = await charge(demo.url, key)
  const elapsed = performance.now() - startedAt
  expect(res.status, res.body.toString()).toBe(503)
  expect(problemOf(res).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
  expect(res.header('retry-after')).toMatch(/^[1-9]\d*$/)
  expect(elapsed).toBeLessThan(BEGIN_TIMEOUT_MS + SLACK_MS)
  if (expectedMs.min !== undefined) expect(elapsed).toBeGreaterThanOrEqual(expectedMs.min)
  expect(await demo.attempts()).toBe(attempts)
  return res
}
