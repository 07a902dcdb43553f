// The HTTP behaviour suite every framework adapter passes, against a real server of that framework on a real socket.

/*
 * HOW TO ADD A FRAMEWORK
 *
 * Write a short fixture and call `describeAdapterContract(fixture)` from `test/adapters/<fw>-contract.test.ts`.
 * The suite never touches the framework: it hands the fixture a neutral route (`RouteSpec`) and talks to the
 * server the fixture starts over a real socket. The fixture must:
 *
 * - start a real server of its framework on 127.0.0.1, port 0, serving `POST /r` (answer `url` = that route);
 * - mount its framework's JSON body parser (the one that keeps the raw bytes, where the adapter ships one), then
 *   the idempotency adapter with `{ store, ...engineOptions, ...routeOptions }` (route options may go through the
 *   framework's per-route mechanism instead) and `scope` = the request's `x-tenant` header, or '' without one;
 * - BEFORE the adapter (an earlier middleware or hook), set the response header `x-before` to a fresh random
 *   value on every request: it belongs to that request only and must never be stored or replayed;
 * - call `spec.handler({ body, lease })` inside the route (`body` the parsed JSON, `lease` what the adapter
 *   exposes, undefined when it passed the request through) and render the `Send` it returns in the
 *   framework's own idiom named by `send.idiom` (or its first idiom for that kind);
 * - declare in `idioms` every way its handlers can send each kind of body. A kind the framework cannot express
 *   is simply left out: the scenarios that need it are listed as skipped with the reason, never silently passed.
 *
 * Kinds of `Send` (the fixture translates each; headers go through the framework's normal header API, repeated
 * names appended in order):
 * - `json`   the framework's JSON reply of `value`;
 * - `text`   a string body with `contentType`;
 * - `bytes`  a binary body (a Buffer / Uint8Array) with `contentType`;
 * - `stream` the body written in `chunks` (a write per chunk, with a turn of the event loop between, then end);
 *            an idiom declares whether the adapter buffers it (`replay: 'exact'`, the default) or passes it
 *            through unstored (`replay: 'unreplayable'`, 410 on retry);
 * - `flush`  headers flushed to the client BEFORE the first chunk (`flushHeaders`, an SSE stream): always
 *            passed through and kept as unreplayable;
 * - `throw`  the handler throws `new Error(message)` and the framework renders its own error response.
 */

import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { type IdempotencyOptions, type Lease, MemoryStore, type RouteOptions, type Store } from 'idempotency-kit'
import { afterEach, describe, expect, it } from 'vitest'
import { problemOf, type RawResponse, request } from '../support/http.js'

/** Header pairs; a repeated name is appended (two header lines, or one joined value, as the framework does). */
export type HeaderPairs = ReadonlyArray<readonly [name: string, value: string]>

interface SendBase {
  readonly status: number
  readonly headers?: HeaderPairs
  /** Which of the fixture's idioms for this kind to use; default its first. */
  readonly idiom?: string
}

/** What the neutral handler asks the fixture to send. */
export type Send =
  | (SendBase & { readonly kind: 'json'; readonly value: unknown })
  | (SendBase & { readonly kind: 'text'; readonly contentType: string; readonly text: string })
  | (SendBase & { readonly kind: 'bytes'; readonly contentType: string; readonly bytes: Uint8Array })
  | (SendBase & { readonly kind: 'stream'; readonly contentType: string; readonly chunks: readonly Uint8Array[] })
  | (SendBase & { readonly kind: 'flush'; readonly contentType: string; readonly chunks: readonly Uint8Array[] })
  | { readonly kind: 'throw'; readonly message: string; readonly idiom?: string }

export type SendKind = Send['kind']

/** What the neutral handler sees of the request. */
export interface HandlerContext {
  /** The parsed JSON body. */
  readonly body: unknown
  /** The lease the adapter exposes on the request; undefined when the request was passed through. */
  readonly lease: Lease | undefined
}

/** A route, described without a framework. */
export interface RouteSpec {
  readonly store: Store
  /** Engine options other than the store (leaseMs, beginTimeoutMs, maxResponseBytes, …). */
  readonly engineOptions: Omit<IdempotencyOptions, 'store' | keyof RouteOptions>
  /** Per-route options (required, onConflict, …). */
  readonly routeOptions: RouteOptions
  readonly handler: (context: HandlerContext) => Send | Promise<Send>
}

/** A running server of the framework. */
export interface StartedServer {
  /** Absolute URL of `POST /r`. */
  readonly url: string
  close(): Promise<void>
}

/** One way of the framework to send a kind of body. */
export interface Idiom {
  /** Free text shown in the test name, e.g. `res.json` or `reply.send(Buffer)`. */
  readonly name: string
  /** What a retry gets: the same bytes, or 410 because the adapter passed it through. Default 'exact' ('flush': always unreplayable). */
  readonly replay?: 'exact' | 'unreplayable'
}

/** Builds servers of one framework from neutral routes. */
export interface AdapterFixture {
  /** Shown in the describe block, e.g. 'Express 5'. */
  readonly name: string
  /** Every way a handler can send each kind; a kind left out is unsupported by this framework. */
  readonly idioms: Readonly<Partial<Record<SendKind, readonly Idiom[]>>>
  start(spec: RouteSpec): Promise<StartedServer>
}

const encoder = new TextEncoder()
const BYTES = Uint8Array.from({ length: 256 }, (_, i) => i)
const TEXT = 'héllo ✓ naïve — 💳\n'
/** Headers that describe one message on the wire, not the stored result. */
const PER_MESSAGE = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'x-before'])

const newKey = () => crypto.randomUUID()

function post(url: string, key: string | undefined, body: unknown = { a: 1 }, headers: HeaderPairs = []) {
  return request(url, {
    method: 'POST',
    headers: [
      ['content-type', 'application/json'],
      ...(key === undefined ? [] : [['idempotency-key', key] as const]),
      ...headers,
    ],
    body: JSON.stringify(body),
  })
}

/** The stored part of a response's headers, as sorted `name: value` lines. */
function storedHeaderLines(response: RawResponse): string[] {
  return response.rawHeaders
    .filter(([name]) => !PER_MESSAGE.has(name.toLowerCase()) && name.toLowerCase() !== 'idempotent-replayed')
    .map(([name, value]) => `${name.toLowerCase()}: ${value}`)
    .sort()
}

/** A store whose `begin` never settles: the engine must give up on it in time. */
function hangingStore(memory: MemoryStore): Store {
  return {
    begin: () => new Promise(() => {}),
    complete: (input) => memory.complete(input),
    release: (input) => memory.release(input),
    extend: (input) => memory.extend(input),
    get: (key) => memory.get(key),
    delete: (key, options) => memory.delete(key, options),
  }
}

/** A store whose `complete` takes `ms`: a send-then-store adapter would be caught sending first. */
function slowCompleteStore(memory: MemoryStore, ms: number): Store {
  return {
    begin: (input) => memory.begin(input),
    complete: async (input) => {
      await sleep(ms)
      return memory.complete(input)
    },
    release: (input) => memory.release(input),
    extend: (input) => memory.extend(input),
    get: (key) => memory.get(key),
    delete: (key, options) => memory.delete(key, options),
  }
}

/** The body each kind sends, and the bytes a client must receive for it. */
function sample(kind: SendKind, idiom: string, runs: number): { send: Send; expected: Uint8Array | null } {
  const headers: HeaderPairs = [
    ['location', '/things/1'],
    ['x-multi', 'one'],
    ['x-multi', 'two'],
  ]
  switch (kind) {
    case 'json': {
      const value = { runs, big: '9007199254740993', text: TEXT }
      return { send: { kind, idiom, status: 201, headers, value }, expected: null }
    }
    case 'text':
      return {
        send: { kind, idiom, status: 201, headers, contentType: 'text/plain; charset=utf-8', text: `${TEXT}${runs}` },
        expected: encoder.encode(`${TEXT}${runs}`),
      }
    case 'bytes':
      return {
        send: { kind, idiom, status: 201, headers, contentType: 'application/octet-stream', bytes: BYTES },
        expected: BYTES,
      }
    case 'stream':
    case 'flush': {
      const chunks = [BYTES.subarray(0, 100), encoder.encode(TEXT), BYTES.subarray(100)]
      const expected = new Uint8Array(Buffer.concat(chunks))
      const contentType = kind === 'flush' ? 'text/event-stream' : 'application/octet-stream'
      return { send: { kind, idiom, status: 201, headers, contentType, chunks }, expected }
    }
    case 'throw':
      return { send: { kind, idiom, message: 'boom' }, expected: null }
    default: {
      const unknown: never = kind
      throw new TypeError(`unknown kind ${String(unknown)}`)
    }
  }
}

/** A promise the test resolves when it chooses: the route awaits it instead of sleeping. */
function newGate(): { opened: Promise<void>; open(): void } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  gates.push(open)
  return { opened, open }
}

/** Every gate made by the running test: opened after it, so a failed test leaves no route hanging. */
const gates: Array<() => void> = []

/** Waits (bounded) until `condition` holds, such as "the route is running". */
async function until(condition: () => boolean, withinMs = 10_000): Promise<void> {
  const deadline = performance.now() + withinMs
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${withinMs} ms: ${condition}`)
    await sleep(5)
  }
}

/** Polls the store until the record under `key` is in `state` (bounded): for what happens after the response. */
async function eventually(store: Store, key: string, state: string, withinMs = 3_000): Promise<void> {
  const until = performance.now() + withinMs
  for (;;) {
    const record = await store.get(key)
    if (record?.state === state) return
    if (performance.now() > until) throw new Error(`record ${key} is ${record?.state ?? 'absent'}, not ${state}`)
    await sleep(20)
  }
}

/**
 * Registers the adapter behaviour suite (vitest) for one framework.
 *
 * @example
 * describeAdapterContract({ name: 'Express 5', idioms: { json: [{ name: 'res.json' }] }, start: startExpress })
 */
export function describeAdapterContract(fixture: AdapterFixture): void {
  /** Starts the fixture's server with a handler that counts its runs; closes it after the test. */
  async function serve(
    handler: (context: HandlerContext, runs: number) => Send | Promise<Send>,
    options: {
      store?: Store
      engineOptions?: RouteSpec['engineOptions']
      routeOptions?: RouteOptions
    } = {},
  ) {
    const counter = { runs: 0, leaseKeys: [] as string[] }
    const server = await fixture.start({
      store: options.store ?? new MemoryStore(),
      engineOptions: options.engineOptions ?? {},
      routeOptions: options.routeOptions ?? {},
      handler: (context) => {
        counter.runs++
        if (context.lease !== undefined) counter.leaseKeys.push(context.lease.key)
        return handler(context, counter.runs)
      },
    })
    cleanups.push(() => server.close())
    return { url: server.url, counter }
  }

  const cleanups: Array<() => Promise<void>> = []
  const supported = (kind: SendKind) => (fixture.idioms[kind] ?? []).length > 0
  /** `it`, or a visible skip naming what the framework lacks. */
  const itWith = (kind: SendKind, name: string, fn: () => Promise<void>) =>
    supported(kind) ? it(name, fn) : it.skip(`${name} (${fixture.name} has no '${kind}' send)`, fn)

  describe(`adapter contract: ${fixture.name}`, () => {
    afterEach(async () => {
      for (const open of gates.splice(0)) open()
      await Promise.all(cleanups.splice(0).map((close) => close()))
    })

    describe('every way to send a body', () => {
      for (const kind of ['json', 'text', 'bytes', 'stream', 'flush', 'throw'] as const) {
        const idioms = fixture.idioms[kind] ?? []
        if (idioms.length === 0) {
          it.skip(`${kind} (${fixture.name} has no '${kind}' send)`, () => {})
          continue
        }
        for (const idiom of idioms) {
          const replay = kind === 'flush' ? 'unreplayable' : (idiom.replay ?? 'exact')
          if (kind === 'throw') {
            it(`${idiom.name}: a throw before commit is released (runs again), after commit stored and replayed`, async () => {
              const { url, counter } = await serve((context) => {
                if ((context.body as { commit?: boolean }).commit) context.lease?.commit()
                return { kind: 'throw', message: 'boom', idiom: idiom.name }
              })
              const released = newKey()
              const a = await post(url, released, { commit: false })
              const b = await post(url, released, { commit: false })
              expect(a.status).toBeGreaterThanOrEqual(500)
              expect(b.header('idempotent-replayed')).toBeUndefined()
              expect(counter.runs).toBe(2)
              const stored = newKey()
              const first = await post(url, stored, { commit: true })
              const again = await post(url, stored, { commit: true })
              expect(counter.runs).toBe(3)
              expect(again.status).toBe(first.status)
              expect(again.header('idempotent-replayed')).toBe('true')
              expect(Buffer.compare(again.body, first.body)).toBe(0)
            })
            continue
          }
          if (replay === 'exact') {
            it(`${idiom.name}: replays status, headers and body byte for byte, running once`, async () => {
              const { url, counter } = await serve((_context, runs) => sample(kind, idiom.name, runs).send)
              const key = newKey()
              const first = await post(url, key)
              const second = await post(url, key)
              expect(counter.runs).toBe(1)
              expect(first.status).toBe(201)
              const expected = sample(kind, idiom.name, 1).expected
              if (expected !== null) expect(Buffer.compare(first.body, Buffer.from(expected))).toBe(0)
              else expect(JSON.parse(first.body.toString('utf8'))).toMatchObject({ runs: 1, text: TEXT })
              expect(second.status).toBe(201)
              expect(Buffer.compare(second.body, first.body)).toBe(0)
              expect(second.header('content-length')).toBe(String(first.body.byteLength))
              expect(storedHeaderLines(second)).toEqual(storedHeaderLines(first))
              expect(second.all('x-multi').join(', ')).toBe('one, two')
              expect(second.header('location')).toBe('/things/1')
              expect(first.header('idempotent-replayed')).toBeUndefined()
              expect(second.header('idempotent-replayed')).toBe('true')
            })
          } else {
            it(`${idiom.name}: passes the body through whole and answers the retry 410, running once`, async () => {
              const { url, counter } = await serve((_context, runs) => sample(kind, idiom.name, runs).send)
              const key = newKey()
              const first = await post(url, key)
              expect(first.status).toBe(201)
              const expected = sample(kind, idiom.name, 1).expected
              expect(expected).not.toBeNull()
              expect(Buffer.compare(first.body, Buffer.from(expected ?? []))).toBe(0)
              const retry = await post(url, key)
              expect(retry.status).toBe(410)
              expect(problemOf(retry)).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
              expect(counter.runs).toBe(1)
            })
          }
        }
      }

      itWith(
        'bytes',
        'a body over maxResponseBytes passes through whole and is answered 410, never run twice',
        async () => {
          const big = new Uint8Array(5000).fill(120)
          const { url, counter } = await serve(
            () => ({ kind: 'bytes', status: 201, contentType: 'application/octet-stream', bytes: big }),
            { engineOptions: { maxResponseBytes: 1000 } },
          )
          const key = newKey()
          const first = await post(url, key)
          expect(first.status).toBe(201)
          expect(first.body.byteLength).toBe(5000)
          expect(Buffer.compare(first.body, Buffer.from(big))).toBe(0)
          const retry = await post(url, key)
          expect(retry.status).toBe(410)
          expect(problemOf(retry)).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
          expect(counter.runs).toBe(1)
        },
      )
    })

    describe('rejections as problem+json', () => {
      it('answers 400 for malformed keys and never runs the route', async () => {
        const { url, counter } = await serve(() => ({ kind: 'json', status: 200, value: { ok: true } }))
        for (const bad of ['', 'x'.repeat(256), 'a, b', '"unterminated', '"bad\\n"', 'with space']) {
          const response = await post(url, bad)
          expect(response.status, JSON.stringify(bad)).toBe(400)
          expect(problemOf(response).error).toBe('INVALID_IDEMPOTENCY_KEY')
        }
        expect(counter.runs).toBe(0)
        // And the sf-string form names the same key as the bare one.
        const key = newKey()
        await post(url, key)
        expect((await post(url, `"${key}"`)).header('idempotent-replayed')).toBe('true')
        expect(counter.runs).toBe(1)
      })

      it('answers 400 for a missing key where required, and passes keyless requests where not', async () => {
        const required = await serve(() => ({ kind: 'json', status: 200, value: { ok: true } }), {
          routeOptions: { required: true },
        })
        const missing = await post(required.url, undefined)
        expect(missing.status).toBe(400)
        expect(problemOf(missing).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
        expect(required.counter.runs).toBe(0)
        const optional = await serve(() => ({ kind: 'json', status: 200, value: { ok: true } }))
        expect((await post(optional.url, undefined)).status).toBe(200)
        expect((await post(optional.url, undefined)).status).toBe(200)
        expect(optional.counter.runs).toBe(2)
      })

      it('answers 422 for the same key with another body before 409, and 409 with Retry-After while running', async () => {
        const gate = newGate()
        const { url, counter } = await serve(async () => {
          await gate.opened
          return { kind: 'json', status: 200, value: { ok: true } }
        })
        const key = newKey()
        const first = post(url, key, { a: 1 })
        await until(() => counter.runs === 1)
        const reused = await post(url, key, { a: 2 })
        const running = await post(url, key, { a: 1 })
        gate.open()
        expect(reused.status).toBe(422)
        expect(problemOf(reused).error).toBe('IDEMPOTENCY_KEY_REUSED')
        expect(running.status).toBe(409)
        expect(problemOf(running).error).toBe('REQUEST_IN_PROGRESS')
        expect(Number(running.header('retry-after'))).toBeGreaterThanOrEqual(1)
        expect((await first).status).toBe(200)
        expect(counter.runs).toBe(1)
      })

      it('answers 503 with Retry-After in time and does not run the route when the store hangs', async () => {
        const { url, counter } = await serve(() => ({ kind: 'json', status: 200, value: {} }), {
          store: hangingStore(new MemoryStore()),
          engineOptions: { beginTimeoutMs: 200 },
        })
        const started = performance.now()
        const response = await post(url, newKey())
        // Generous: the point is "bounded by the begin deadline", not a speed.
        expect(performance.now() - started).toBeLessThan(5_000)
        expect(response.status).toBe(503)
        expect(Number(response.header('retry-after'))).toBeGreaterThanOrEqual(1)
        expect(problemOf(response).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
        expect(counter.runs).toBe(0)
      })
    })

    describe('scope, lease and commit point', () => {
      it('scopes keys by tenant: the same key in two scopes runs twice, and replays within each', async () => {
        const { url, counter } = await serve((_context, runs) => ({ kind: 'json', status: 200, value: { runs } }))
        const key = newKey()
        const a1 = await post(url, key, { a: 1 }, [['x-tenant', 'acme']])
        const b1 = await post(url, key, { a: 1 }, [['x-tenant', 'globex']])
        const a2 = await post(url, key, { a: 1 }, [['x-tenant', 'acme']])
        expect(counter.runs).toBe(2)
        expect(a1.json()).toEqual({ runs: 1 })
        expect(b1.json()).toEqual({ runs: 2 })
        expect(b1.header('idempotent-replayed')).toBeUndefined()
        expect(a2.header('idempotent-replayed')).toBe('true')
        expect(Buffer.compare(a2.body, a1.body)).toBe(0)
      })

      it('keeps the key through a handler longer than the lease: duplicates get 409, one run', async () => {
        const { url, counter } = await serve(
          async (_context, runs) => {
            await sleep(2500)
            return { kind: 'json', status: 200, value: { runs } }
          },
          { engineOptions: { leaseMs: 1000 } },
        )
        const key = newKey()
        const started = performance.now()
        const first = post(url, key)
        await sleep(1200 - (performance.now() - started))
        const at1200 = await post(url, key)
        await sleep(Math.max(0, 2000 - (performance.now() - started)))
        const at2000 = await post(url, key)
        expect(at1200.status).toBe(409)
        expect(at2000.status).toBe(409)
        expect((await first).status).toBe(200)
        expect((await post(url, key)).header('idempotent-replayed')).toBe('true')
        expect(counter.runs).toBe(1)
      })

      it("waits for the running request and replays its result with the route option onConflict: 'wait'", async () => {
        const gate = newGate()
        const { url, counter } = await serve(
          async (_context, runs) => {
            await gate.opened
            return { kind: 'json', status: 201, value: { runs } }
          },
          { routeOptions: { onConflict: 'wait' } },
        )
        const key = newKey()
        const first = post(url, key)
        await until(() => counter.runs === 1)
        let settled = false
        const pending = post(url, key).finally(() => (settled = true))
        await sleep(300)
        // Without wait mode it would have had its 409 by now.
        expect(settled).toBe(false)
        gate.open()
        const waited = await pending
        expect(waited.status).toBe(201)
        expect(waited.header('idempotent-replayed')).toBe('true')
        expect(Buffer.compare(waited.body, (await first).body)).toBe(0)
        expect(counter.runs).toBe(1)
      })

      it('releases a 5xx before commit (the retry runs) and stores one after commit (the retry replays)', async () => {
        const { url, counter } = await serve((context, runs) => {
          if ((context.body as { commit?: boolean }).commit) context.lease?.commit()
          return { kind: 'json', status: 502, value: { error: 'upstream', runs } }
        })
        const released = newKey()
        await post(url, released, { commit: false })
        const rerun = await post(url, released, { commit: false })
        expect(counter.runs).toBe(2)
        expect(rerun.header('idempotent-replayed')).toBeUndefined()
        const stored = newKey()
        const first = await post(url, stored, { commit: true })
        const replay = await post(url, stored, { commit: true })
        expect(counter.runs).toBe(3)
        expect(replay.status).toBe(502)
        expect(replay.header('idempotent-replayed')).toBe('true')
        expect(Buffer.compare(replay.body, first.body)).toBe(0)
      })
    })

    describe('delivery', () => {
      it('stores, then sends: the record is completed when the client gets the first byte', async () => {
        const memory = new MemoryStore()
        const { url, counter } = await serve((_context, runs) => ({ kind: 'json', status: 201, value: { runs } }), {
          store: slowCompleteStore(memory, 300),
        })
        const states = await new Promise<Array<string | undefined>>((resolve, reject) => {
          const req = httpRequest(url, { method: 'POST', agent: false }, (res) => {
            // The status line and headers are here: read the store before anything else happens.
            const key = counter.leaseKeys[0]
            const read = key === undefined ? Promise.resolve(null) : memory.get(key)
            read.then((record) => {
              res.resume()
              res.on('end', () => resolve([record?.state, String(res.statusCode)]))
            }, reject)
          })
          req.on('error', reject)
          req.setHeader('content-type', 'application/json')
          req.setHeader('idempotency-key', newKey())
          req.end('{"a":1}')
        })
        expect(states).toEqual(['completed', '201'])
        expect(counter.runs).toBe(1)
      })

      it('runs to the end when the client disconnects mid-request: the result is stored and the retry replays', async () => {
        const memory = new MemoryStore()
        const gate = newGate()
        const { url, counter } = await serve(
          async (_context, runs) => {
            await gate.opened
            return { kind: 'json', status: 201, value: { runs } }
          },
          { store: memory },
        )
        const key = newKey()
        // The connection goes away while the handler is still awaiting.
        const outcome = await request(url, {
          method: 'POST',
          headers: [
            ['content-type', 'application/json'],
            ['idempotency-key', key],
          ],
          body: '{"a":1}',
          onSocket: (socket) => void until(() => counter.runs === 1).then(() => socket.destroy()),
        }).then(
          () => 'answered',
          () => 'aborted',
        )
        expect(outcome).toBe('aborted')
        // Give the server a moment to see the connection close before the route answers.
        await sleep(100)
        gate.open()
        const leaseKey = counter.leaseKeys[0]
        expect(leaseKey).toBeDefined()
        await eventually(memory, leaseKey ?? '', 'completed')
        const retry = await post(url, key, { a: 1 })
        expect(retry.status).toBe(201)
        expect(retry.header('idempotent-replayed')).toBe('true')
        expect(retry.json()).toEqual({ runs: 1 })
        expect(counter.runs).toBe(1)
      })

      it('never stores headers set before the adapter ran', async () => {
        const memory = new MemoryStore()
        const { url, counter } = await serve(
          () => ({ kind: 'json', status: 200, value: { ok: true }, headers: [['x-after', 'route']] }),
          { store: memory },
        )
        const key = newKey()
        const first = await post(url, key)
        const second = await post(url, key)
        expect(counter.runs).toBe(1)
        const record = await memory.get(counter.leaseKeys[0] ?? '')
        const stored = (record?.response?.headers ?? []).map(([name]) => name.toLowerCase())
        expect(stored).toContain('x-after')
        expect(stored).not.toContain('x-before')
        // Each response carries its own fresh value, never the first one's.
        expect(first.header('x-before')).toBeDefined()
        expect(second.header('x-before')).toBeDefined()
        expect(second.header('x-before')).not.toBe(first.header('x-before'))
        expect(second.header('x-after')).toBe('route')
      })
    })
  })
}
