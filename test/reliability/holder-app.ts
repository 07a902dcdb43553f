// A tiny payments app for the lease-loss tests: passes lease.key and lease.fence to a shared gateway, and stalls on cue.
import { existsSync, writeSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import { createIdempotency, type IdempotencyEvent, type Store } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import {
  CardDeclinedError,
  type ChargeRequest,
  type FakeGateway,
  GatewayUnavailableError,
  StaleFenceError,
} from '../../examples/payments/gateway.js'

/** Where the route stalls: before `assertHeld()`, between it and the charge, or after the charge. */
export type StallPoint = 'before-assert' | 'before-charge' | 'after-charge'

/**
 * Request headers of the test route: `x-stall` names the point, `x-stall-how` is `block` (the event loop
 * blocked: no timer, no socket, no heartbeat) or `await` (the event loop free), and `x-resume` is a file
 * whose appearance ends the stall. They are not part of the fingerprint, so a retry without them is the
 * same request.
 */
export const STALL_HEADERS = { point: 'x-stall', how: 'x-stall-how', resume: 'x-resume' } as const

/** Request header: `none` makes the route call the gateway without `lease.key` and `lease.fence`, as a naive one would. */
export const DOWNSTREAM_HEADER = 'x-downstream'

/** What the holder app runs on: its store and lease, the shared gateway, and where its lines go. */
export interface HolderAppOptions {
  readonly store: Store
  readonly leaseMs: number
  /** The shared gateway's base URL (`serveGateway`). */
  readonly gatewayUrl: string
  /** One line per thing the tests look for; the child process writes them to stdout synchronously. */
  readonly log: (line: string) => void
}

/** Blocks the whole thread (no busy CPU on a shared machine) until `file` exists or `maxMs` passes. */
function blockUntil(file: string, maxMs: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4))
  const until = performance.now() + maxMs
  while (!existsSync(file) && performance.now() < until) Atomics.wait(cell, 0, 0, 5)
}

async function awaitFile(file: string, maxMs: number): Promise<void> {
  const until = performance.now() + maxMs
  while (!existsSync(file) && performance.now() < until) await sleep(5)
}

function describeEvent(event: IdempotencyEvent): string {
  return `event ${event.type} ${event.key ?? '-'} fence ${event.fence ?? '-'} ${event.reason ?? ''}`.trimEnd()
}

/** The app: json(), idempotency() (required), and POST /api/payments/charge, which commits, checks its lease and charges. */
export function createHolderApp(options: HolderAppOptions) {
  const { log } = options
  const engine = createIdempotency({
    store: options.store,
    leaseMs: options.leaseMs,
    onEvent: (event) => log(describeEvent(event)),
  })
  const app = express()
  app.use(json())
  app.use(idempotency({ engine, required: true }))

  app.post('/api/payments/charge', async (req, res) => {
    const lease = req.idempotency
    if (lease === undefined) throw new Error('the idempotency middleware did not hold the key')
    const tag = `${lease.key} fence ${lease.fence}`
    lease.signal.addEventListener('abort', () => log(`signal aborted ${tag}`))
    log(`acquired ${tag} takeover ${lease.takeover} previous ${lease.previousFence}`)
    const point = req.get(STALL_HEADERS.point)
    const resume = req.get(STALL_HEADERS.resume) ?? ''
    const pause = async (here: StallPoint) => {
      if (point !== here) return
      log(`stalled ${tag} ${here}`)
      if (req.get(STALL_HEADERS.how) === 'block') blockUntil(resume, 30_000)
      else await awaitFile(resume, 30_000)
      log(`resumed ${tag}`)
    }

    // The demo's pattern: commit before the call that may charge, check the lease right before it.
    lease.commit()
    await pause('before-assert')
    try {
      lease.assertHeld()
    } catch (error) {
      log(`assertHeld threw ${tag} ${(error as Error).name}`)
      res.status(500).json({ error: 'lease_lost' })
      return
    }
    await pause('before-charge')
    const request: ChargeRequest =
      req.get(DOWNSTREAM_HEADER) === 'none'
        ? { ...req.body, idempotencyKey: undefined }
        : { ...req.body, idempotencyKey: lease.key, fence: lease.fence }
    const answer = await fetch(`${options.gatewayUrl}/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
    })
    const body = await answer.text()
    log(`gateway answered ${tag} ${answer.status}`)
    await pause('after-charge')
    res.status(answer.status).type('application/json').send(body)
  })

  // Whether this process reaches its store now (the tests wait for it after healing a partition).
  app.get('/health', async (_req, res) => {
    const probe = options.store.get('0'.repeat(64))
    const timeout = sleep(500).then(() => 'timeout' as const)
    const outcome = await Promise.race([
      probe.then(
        () => 'ok' as const,
        () => 'error' as const,
      ),
      timeout,
    ])
    res.status(outcome === 'ok' ? 200 : 503).json({ store: outcome })
  })
  return { app, engine }
}

/** Serves one `FakeGateway` over HTTP, so holders in several processes charge the same gateway. */
export function serveGateway(gateway: FakeGateway): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const request = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ChargeRequest
      const reply = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value))
      }
      gateway.createCharge(request).then(
        (made) => reply(200, made),
        (error: unknown) => {
          if (error instanceof StaleFenceError) return reply(409, { error: 'stale_fence', message: error.message })
          if (error instanceof CardDeclinedError) return reply(402, { error: 'card_declined' })
          if (error instanceof GatewayUnavailableError) return reply(503, { error: 'gateway_unavailable' })
          reply(500, { error: 'gateway_error' })
        },
      )
    })
  })
}

/** Writes a line to stdout at once, even from inside a stall (a pipe write is synchronous on Linux). */
export function writeLine(line: string): void {
  writeSync(1, `${line}\n`)
}
