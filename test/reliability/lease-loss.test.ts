// A holder that loses its lease (event loop blocked, or cut off from the store) while another process takes over: one charge.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Store } from 'idempotency-kit'
import { migrate, PostgresStore } from 'idempotency-kit/postgres'
import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Charge, FakeGateway } from '../../examples/payments/gateway.js'
import { charge, closeServer, listen, problemOf, type RawResponse, REPO_ROOT, request } from '../support/http.js'
import { createPostgresTestSchema } from '../support/postgres.js'
import { storageKey, until } from '../support/records.js'
import { startTcpProxy, type TcpProxy } from '../system/tcp-proxy.js'
import { createHolderApp, DOWNSTREAM_HEADER, STALL_HEADERS, type StallPoint, serveGateway } from './holder-app.js'

const LEASE_MS = 1000
const REDIS_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'

/** A store both holders share: ours directly, the child's through a proxy we can cut. */
interface Shared {
  /** The port the proxy forwards to. */
  readonly port: number
  /** What the child process opens, through the proxy on `proxyPort`. */
  storeUrl(proxyPort: number): string
  /** The takeover side's store (this process, straight to the server) */
  readonly store: Store
  close(): Promise<void>
}

const backends: ReadonlyArray<{ readonly name: string; open(): Promise<Shared> }> = [
  {
    name: 'Redis',
    async open() {
      const client = new Redis('redis://127.0.0.1:6379', {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        lazyConnect: true,
        retryStrategy: () => null,
      })
      client.on('error', () => {})
      try {
        await client.connect()
      } catch (error) {
        throw new Error(`Redis is not reachable at 127.0.0.1:6379 (${String(error)}). Start it with:\n  ${REDIS_START}`)
      }
      const prefix = `idem-lease-loss-${randomUUID().slice(0, 8)}`
      return {
        port: 6379,
        storeUrl: (proxyPort) => `redis://127.0.0.1:${proxyPort}?prefix=${prefix}`,
        store: new RedisStore({ client: ioredisClient(client), prefix }),
        async close() {
          let cursor = '0'
          do {
            const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
            cursor = next
            if (keys.length > 0) await client.del(...keys)
          } while (cursor !== '0')
          client.disconnect()
        },
      }
    },
  },
  {
    name: 'PostgreSQL',
    async open() {
      const pg = await createPostgresTestSchema()
      await migrate(pg.pool, { schema: pg.schema })
      return {
        port: 5432,
        storeUrl: (proxyPort) => `postgres://postgres@127.0.0.1:${proxyPort}/test?schema=${pg.schema}`,
        store: new PostgresStore({ pool: pg.pool, schema: pg.schema }),
        close: () => pg.close(),
      }
    },
  },
]

/** The holder app in a child process: its event loop can be blocked without blocking the test. */
interface Holder {
  readonly url: string
  output(): string
  stop(): Promise<void>
  /** SIGKILL: a crash, nothing runs after it. */
  crash(): Promise<void>
}

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL')
})

function startHolder(env: Readonly<Record<string, string>>, timeoutMs = 20_000): Promise<Holder> {
  const child = spawn(
    process.execPath,
    ['--conditions=idempotency-kit-source', '--import', 'tsx', 'test/reliability/holder-process.ts'],
    { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  children.add(child)
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
      await exited
      clearTimeout(timer)
    }
    children.delete(child)
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`the holder printed no "listening on" line within ${timeoutMs} ms:\n${output}`))
    }, timeoutMs)
    child.stdout.on('data', () => {
      const match = /holder listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match === null) return
      clearTimeout(timer)
      const crash = async () => {
        child.kill('SIGKILL')
        await exited
        children.delete(child)
      }
      resolve({ url: match[1] as string, output: () => output, stop, crash })
    })
    void exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`the holder exited before listening:\n${output}`))
    })
  })
}

/** The engine's storage key, which the route passes to the gateway as `lease.key`. */

describe.each(backends)('lease loss end to end on $name', (backend) => {
  const cleanups: Array<() => Promise<void>> = []
  let shared: Shared
  let gateway: FakeGateway
  let proxy: TcpProxy
  let holder: Holder
  let taker: { url: string; log: string[] }
  let resumeDir: string
  let gatewayUrl: string

  beforeAll(async () => {
    shared = await backend.open()
    cleanups.push(() => shared.close())
    resumeDir = mkdtempSync(join(tmpdir(), 'idem-lease-loss-'))
    cleanups.push(async () => rmSync(resumeDir, { recursive: true, force: true }))
    // One gateway for both processes, as a real payment provider would be.
    gateway = new FakeGateway(0)
    const gatewayServer: Server = serveGateway(gateway)
    gatewayUrl = await listen(gatewayServer)
    cleanups.push(() => closeServer(gatewayServer))
    proxy = await startTcpProxy(shared.port)
    // Reset the proxy's connections before the holder closes its pool, which would wait on a swallowed query.
    cleanups.push(() => proxy.stop())
    holder = await startHolder({
      STORE_URL: shared.storeUrl(proxy.port),
      GATEWAY_URL: gatewayUrl,
      LEASE_MS: String(LEASE_MS),
    })
    cleanups.push(() => holder.stop())
    const log: string[] = []
    const { app } = createHolderApp({ store: shared.store, leaseMs: LEASE_MS, gatewayUrl, log: (l) => log.push(l) })
    const server = app.listen(0, '127.0.0.1')
    taker = { url: await listen(server), log }
    cleanups.push(() => closeServer(server))
  })
  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  /**
   * The holder (the child, fence 1) stalls at `point`; once the store's lease has lapsed the taker (this
   * process) runs the same request; then the holder resumes. `cut` partitions the holder from the store
   * for the stall instead of blocking its event loop.
   */
  async function loseLease(
    point: StallPoint,
    mode: 'blocked' | 'cut off',
    downstream: 'key and fence' | 'none' = 'key and fence',
  ) {
    const key = randomUUID()
    const hash = storageKey(key)
    const resume = join(resumeDir, key)
    const before = { attempts: gateway.attempts, charges: gateway.charges.length }
    const late = charge(holder.url, key, undefined, [
      [STALL_HEADERS.point, point],
      [STALL_HEADERS.how, mode === 'blocked' ? 'block' : 'await'],
      [STALL_HEADERS.resume, resume],
      ...(downstream === 'none' ? [[DOWNSTREAM_HEADER, 'none'] as const] : []),
    ])
    await until(
      'the holder to stall',
      () => holder.output(),
      (out) => out.includes(`stalled ${hash} fence 1 ${point}`),
    )
    if (mode === 'cut off') {
      proxy.blackhole()
      // Its heartbeat cannot reach the store: the local deadline fires the signal by itself.
      await until(
        "the holder's signal",
        () => holder.output(),
        (out) => out.includes(`signal aborted ${hash} fence 1`),
      )
    }
    // The store's lease lapses: no heartbeat from the holder can land any more.
    await until(
      'the lease to lapse in the store',
      () => shared.store.get(hash),
      (record) => record !== null && Date.now() > record.leaseDeadline + 50,
    )
    if (mode === 'cut off') expect(holder.output()).toContain(`signal aborted ${hash} fence 1`)

    const taken = await charge(taker.url, key, undefined, downstream === 'none' ? [[DOWNSTREAM_HEADER, 'none']] : [])
    expect(taken.status, taken.body.toString()).toBe(200)
    expect(taken.header('idempotent-replayed')).toBeUndefined()
    expect(taker.log).toContain(`acquired ${hash} fence 2 takeover true previous 1`)

    if (mode === 'cut off') {
      await proxy.start()
      await until(
        'the holder to reach its store again',
        async () => (await request(`${holder.url}/health`)).status,
        (status) => status === 200,
      )
    }
    writeFileSync(resume, '')
    const lateAnswer = await late
    await until(
      "the holder's request to finish",
      () => holder.output(),
      (out) => out.includes(`event lease_lost ${hash} fence 1 complete`),
    )
    return { hash, key, taken, late: lateAnswer, before }
  }

  /** One charge, the new owner's bytes stored and replayed everywhere, the holder's answer not stored. */
  async function expectOneCharge(outcome: Awaited<ReturnType<typeof loseLease>>) {
    const { hash, key, taken, late, before } = outcome
    expect(gateway.charges.length - before.charges).toBe(1)
    const made = gateway.charges.at(-1) as Charge
    expect((taken.json() as Charge).id).toBe(made.id)
    expect(await shared.store.get(hash)).toMatchObject({ state: 'completed', fence: 2 })
    // The stalled holder's result was refused by token: it could not overwrite the new owner's.
    expect(holder.output()).toContain(`event lease_lost ${hash} fence 1 complete`)
    expect(holder.output()).toContain(`signal aborted ${hash} fence 1`)
    expect(late.status, late.body.toString()).toBe(409)
    expect(problemOf(late).error).toBe('REQUEST_IN_PROGRESS')
    for (const url of [taker.url, holder.url]) {
      const replay: RawResponse = await charge(url, key)
      expect(replay.header('idempotent-replayed')).toBe('true')
      expect(replay.body.equals(taken.body)).toBe(true)
    }
  }

  describe('event loop blocked longer than the lease', () => {
    it('before assertHeld(): it throws, the signal fires, the holder never charges; one charge', async () => {
      const outcome = await loseLease('before-assert', 'blocked')
      expect(holder.output()).toContain(`assertHeld threw ${outcome.hash} fence 1 IdempotencyLeaseLostError`)
      expect(gateway.attempts - outcome.before.attempts).toBe(1)
      await expectOneCharge(outcome)
    })

    it('after assertHeld(), before the charge: the gateway refuses its lower fence; one charge', async () => {
      const outcome = await loseLease('before-charge', 'blocked')
      expect(holder.output()).toContain(`gateway answered ${outcome.hash} fence 1 409`)
      expect(gateway.attempts - outcome.before.attempts).toBe(2)
      await expectOneCharge(outcome)
    })

    it('after the charge, before complete: the new holder gets the same charge by its key; one charge', async () => {
      const outcome = await loseLease('after-charge', 'blocked')
      expect(holder.output()).toContain(`gateway answered ${outcome.hash} fence 1 200`)
      expect(gateway.attempts - outcome.before.attempts).toBe(2)
      await expectOneCharge(outcome)
    })

    it('the at-least-once window: a route that passes neither key nor fence downstream charges twice', async () => {
      // What GUARANTEES.md states: the lease alone cannot stop a process that stalled past it.
      const outcome = await loseLease('before-charge', 'blocked', 'none')
      expect(gateway.charges.length - outcome.before.charges).toBe(2)
      // Still only the new owner's result is stored and replayed.
      expect(await shared.store.get(outcome.hash)).toMatchObject({ state: 'completed', fence: 2 })
      const replay = await charge(taker.url, outcome.key)
      expect(replay.body.equals(outcome.taken.body)).toBe(true)
      expect(outcome.late.status).toBe(409)
    })
  })

  describe('the store unreachable from the holder only (its connections swallowed by a proxy)', () => {
    it('before assertHeld(): the signal fires before the takeover, assertHeld() throws; one charge', async () => {
      const outcome = await loseLease('before-assert', 'cut off')
      expect(holder.output()).toContain(`assertHeld threw ${outcome.hash} fence 1 IdempotencyLeaseLostError`)
      expect(gateway.attempts - outcome.before.attempts).toBe(1)
      await expectOneCharge(outcome)
    })

    it('after assertHeld(), before the charge: the gateway refuses its lower fence; one charge', async () => {
      const outcome = await loseLease('before-charge', 'cut off')
      expect(holder.output()).toContain(`gateway answered ${outcome.hash} fence 1 409`)
      expect(gateway.attempts - outcome.before.attempts).toBe(2)
      await expectOneCharge(outcome)
    })
  })
  describe('the holder SIGKILLed after its charge, before storing it', () => {
    it('the takeover gets the same charge by its key: one charge, and the crash is not a double charge', async () => {
      // A holder of its own: this one does not come back.
      const doomed = await startHolder({
        STORE_URL: shared.storeUrl(proxy.port),
        GATEWAY_URL: gatewayUrl,
        LEASE_MS: String(LEASE_MS),
      })
      try {
        const key = randomUUID()
        const hash = storageKey(key)
        const before = { attempts: gateway.attempts, charges: gateway.charges.length }
        const lost = charge(doomed.url, key, undefined, [
          [STALL_HEADERS.point, 'after-charge'],
          [STALL_HEADERS.how, 'block'],
          [STALL_HEADERS.resume, join(resumeDir, key)],
        ]).then(
          (res) => `answered ${res.status}`,
          (error: unknown) => error,
        )
        await until(
          'the charge, then the stall',
          () => doomed.output(),
          (out) => out.includes(`stalled ${hash} fence 1 after-charge`),
        )
        expect(doomed.output()).toContain(`gateway answered ${hash} fence 1 200`)
        await doomed.crash()
        expect(await lost).toBeInstanceOf(Error)
        expect(await shared.store.get(hash)).toMatchObject({ state: 'in_progress', fence: 1 })

        await until(
          'the lease to lapse in the store',
          () => shared.store.get(hash),
          (record) => record !== null && Date.now() > record.leaseDeadline + 50,
        )
        const taken = await charge(taker.url, key)
        expect(taken.status, taken.body.toString()).toBe(200)
        expect(taker.log).toContain(`acquired ${hash} fence 2 takeover true previous 1`)
        expect(gateway.attempts - before.attempts).toBe(2)
        expect(gateway.charges.length - before.charges).toBe(1)
        expect((taken.json() as Charge).id).toBe((gateway.charges.at(-1) as Charge).id)
        expect(await shared.store.get(hash)).toMatchObject({ state: 'completed', fence: 2 })
      } finally {
        await doomed.stop()
      }
    })
  })
})
