// Fuzzing response capture through Express over a real socket: whatever the route writes, replays are exact.
import type { Server } from 'node:http'
import express from 'express'
import fc from 'fast-check'
import { defaultStoragePolicy, MemoryStore } from 'idempotency-kit'
import { idempotency, json } from 'idempotency-kit/express'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closeServer, listen, type RawResponse, request } from '../support/http.js'

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const numRuns = Number(process.env.FUZZ_RUNS ?? 150)
console.log(`capture fuzz seed: ${seed} (rerun with FUZZ_SEED=${seed})`)

/** What the route does, step by step, as the fuzzer chose it. */
interface Scenario {
  readonly status: number
  readonly commit: boolean
  /** setHeader calls, in order; an array value sends one line per value. */
  readonly setHeaders: ReadonlyArray<readonly [string, string | string[]]>
  /** How the status (and more headers) is set: plain `statusCode`, or one of writeHead's forms. */
  readonly head:
    | { readonly form: 'statusCode' }
    | {
        readonly form: 'object' | 'flat' | 'pairs'
        readonly reason: string | null
        readonly headers: ReadonlyArray<readonly [string, string]>
      }
  /** Body pieces: all but the last through write(), the last through end() (or end() with nothing). */
  readonly chunks: ReadonlyArray<Uint8Array | string>
  readonly endWithLast: boolean
}

// A few names in several cases, so duplicates and case-insensitive collisions are common.
const HOP_NAMED = 'x-hop-named'
const kept = ['X-Fuzz', 'x-fuzz', 'X-FUZZ', 'x-other', 'Content-Type', 'link', 'etag', 'cache-control', 'location']
const neverStored = [
  'Set-Cookie',
  'set-cookie',
  'Keep-Alive',
  'Proxy-Authenticate',
  'Upgrade',
  'TE',
  'Vary',
  'Server',
  'Age',
  'Access-Control-Allow-Origin',
  'X-RateLimit-Limit',
  'RateLimit-Remaining',
  'Retry-After',
  'Server-Timing',
  'traceparent',
]
const latin1Value = fc
  .array(fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff })), { maxLength: 12 })
  .map((codes) => String.fromCharCode(...codes).trim())
const headerPair = fc.oneof(
  fc.tuple(fc.constantFrom(...kept), latin1Value),
  fc.tuple(
    fc.constantFrom(...neverStored),
    latin1Value.map((v) => `never-${v}`),
  ),
  // Connection names another header as hop-by-hop for this message only (RFC 9110 §7.6.1); stored when unnamed.
  fc.constant<[string, string]>(['Connection', `close, ${HOP_NAMED}`]),
  fc.tuple(
    fc.constant(HOP_NAMED),
    latin1Value.map((v) => `hop-${v}`),
  ),
)
const setHeader = fc.oneof(
  headerPair,
  fc.tuple(fc.constantFrom(...kept, 'Set-Cookie'), fc.array(latin1Value, { minLength: 1, maxLength: 3 })),
)
const status = fc.oneof(
  fc.constantFrom(200, 201, 202, 204, 206, 226, 301, 302, 304, 400, 401, 402, 404, 409, 410, 422, 429, 451, 500, 503),
  fc.integer({ min: 200, max: 599 }),
)
const chunk = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.string({ maxLength: 16 }), fc.constant(new Uint8Array(0)))
const scenario: fc.Arbitrary<Scenario> = fc.record({
  status,
  commit: fc.boolean(),
  setHeaders: fc.array(setHeader, { maxLength: 6 }),
  head: fc.oneof(
    fc.constant({ form: 'statusCode' as const }),
    fc.record({
      form: fc.constantFrom('object' as const, 'flat' as const, 'pairs' as const),
      reason: fc.option(fc.constantFrom('Custom Reason', 'OK', 'D\u00e9j\u00e0 vu'), { nil: null }),
      headers: fc.array(headerPair, { maxLength: 4 }),
    }),
  ),
  chunks: fc.array(chunk, { maxLength: 5 }),
  endWithLast: fc.boolean(),
})

/** A valid key in either form, or one of the invalid shapes; `valid` says which the engine must see. */
const key = fc.oneof(
  fc.stringMatching(/^[!-~]{1,255}$/).map((k) => ({ header: k, valid: !k.startsWith('"') })),
  fc.stringMatching(/^[!#-[\]-~]{1,40}$/).map((inner) => ({ header: `"${inner}"`, valid: true })),
  fc
    .stringMatching(/^[!-~]{1,20}$/)
    .map((k) => ({ header: `"${k.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}";p=1`, valid: true })),
  fc.constantFrom(
    { header: 'k'.repeat(256), valid: false },
    { header: 'a b', valid: false },
    { header: 'a, b', valid: false },
    { header: '"unterminated', valid: false },
    { header: '"bad\\nescape"', valid: false },
    { header: '""', valid: false },
    { header: '"x"junk', valid: false },
  ),
)

const NODE_MANAGED = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])
const NEVER = new Set([
  'set-cookie',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'content-encoding',
  'date',
  'server',
  'age',
  'vary',
  'retry-after',
  'traceparent',
  'tracestate',
  'server-timing',
  'idempotent-replayed',
])
const NEVER_PREFIXES = ['proxy-', 'access-control-', 'ratelimit-', 'x-ratelimit-']

/** The test's own oracle of DESIGN §4.9: may this header of this response be stored? */
function storable(name: string, connectionNamed: ReadonlySet<string>): boolean {
  const lower = name.toLowerCase()
  if (NEVER.has(lower) || connectionNamed.has(lower)) return false
  return !NEVER_PREFIXES.some((prefix) => lower.startsWith(prefix))
}

/** The headers that the stored set is about: route headers a replay must repeat, lower-cased, grouped by name. */
function replayable(res: RawResponse, connectionNamed: ReadonlySet<string>): Array<[string, string]> {
  const pairs = res.rawHeaders
    .map(([name, value]): [string, string] => [name.toLowerCase(), value])
    .filter(([name]) => !NODE_MANAGED.has(name) && storable(name, connectionNamed))
  // Stable by name: the order of one name's values is kept, the interleaving of names is not compared.
  return pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
}

function bytesOf(chunks: ReadonlyArray<Uint8Array | string>): Buffer {
  return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'utf8') : Buffer.from(c))))
}

describe('response capture fuzz (Express 5 over a real socket)', () => {
  const scenarios = new Map<string, Scenario>()
  const runs = new Map<string, number>()
  let url: string
  let server: Server

  beforeAll(async () => {
    const app = express()
    app.disable('x-powered-by')
    app.use(json())
    app.use(idempotency({ store: new MemoryStore(), scope: (req) => String(req.headers['x-run']) }))
    app.post('/fuzz', (req, res) => {
      const id = String(req.headers['x-run'])
      const s = scenarios.get(id)
      if (s === undefined) throw new Error(`no scenario ${id}`)
      runs.set(id, (runs.get(id) ?? 0) + 1)
      if (s.commit) req.idempotency?.commit()
      for (const [name, value] of s.setHeaders) res.setHeader(name, value)
      const head = s.head
      switch (head.form) {
        case 'statusCode':
          res.statusCode = s.status
          break
        case 'object': {
          const object: Record<string, string> = {}
          for (const [name, value] of head.headers) object[name] = value
          if (head.reason === null) res.writeHead(s.status, object)
          else res.writeHead(s.status, head.reason, object)
          break
        }
        case 'flat':
        case 'pairs': {
          const list = head.form === 'flat' ? head.headers.flat() : head.headers.map(([n, v]) => [n, v])
          const headers = list as unknown as string[]
          if (head.reason === null) res.writeHead(s.status, headers)
          else res.writeHead(s.status, head.reason, headers)
          break
        }
        default: {
          const unknown: never = head
          throw new Error(`unknown head ${String(unknown)}`)
        }
      }
      const pieces = [...s.chunks]
      const last = s.endWithLast ? pieces.pop() : undefined
      for (const piece of pieces) res.write(piece)
      if (last === undefined) res.end()
      else res.end(last)
    })
    server = app.listen(0, '127.0.0.1')
    url = await listen(server)
  })
  afterAll(() => closeServer(server))

  it('never answers 500 itself, replays stored bodies and header sets exactly, and never replays what it must not store', async () => {
    let counter = 0
    let replays = 0
    await fc.assert(
      fc.asyncProperty(scenario, key, async (s, k) => {
        const id = `run-${counter++}`
        scenarios.set(id, s)
        const send = () =>
          request(`${url}/fuzz`, {
            method: 'POST',
            headers: [
              ['content-type', 'application/json'],
              ['idempotency-key', k.header],
              ['x-run', id],
            ],
            body: JSON.stringify({ id }),
          })
        const first = await send()
        const second = await send()
        const label = `${id} ${JSON.stringify(k)} ${first.status}/${second.status} ${second.body.toString('latin1').slice(0, 200)}`

        if (!k.valid) {
          expect([first.status, second.status], label).toEqual([400, 400])
          expect(runs.get(id), label).toBeUndefined()
          return
        }
        const decision = defaultStoragePolicy(s.status, s.commit)
        expect(first.status, label).toBe(s.status)
        const noBody = s.status === 204 || s.status === 304
        const written = bytesOf(s.chunks)
        expect(first.body.equals(noBody ? Buffer.alloc(0) : written), `${label}: first body`).toBe(true)

        if (decision !== 'store') {
          // Released or never stored: the retry runs the route again, fresh.
          expect(second.header('idempotent-replayed'), label).toBeUndefined()
          expect(runs.get(id), label).toBe(2)
          expect(second.status, label).toBe(s.status)
          return
        }
        replays++
        expect(runs.get(id), label).toBe(1)
        expect(second.status, label).toBe(s.status)
        expect(second.header('idempotent-replayed'), label).toBe('true')
        expect(second.body.equals(first.body), `${label}: replayed body`).toBe(true)

        const named = new Set(
          first
            .all('connection')
            .flatMap((v) => v.split(','))
            .map((v) => v.trim().toLowerCase()),
        )
        expect(replayable(second, named), `${label}: stored header set`).toEqual(replayable(first, named))
        // What must never be stored never comes back: no route value of a never-stored header is replayed.
        for (const [name, value] of second.rawHeaders) {
          expect(value.startsWith('never-'), `${label}: ${name}: ${value} replayed`).toBe(false)
          if (named.has(HOP_NAMED)) expect(name.toLowerCase(), label).not.toBe(HOP_NAMED)
          expect(name.toLowerCase(), label).not.toBe('set-cookie')
        }
      }),
      { seed, numRuns },
    )
    // Not vacuous: most scenarios were stored and replayed.
    expect(replays).toBeGreaterThan(numRuns / 4)
  }, 60_000)
})

describe('framing headers a route sets itself', () => {
  // Found by this fuzzer: the adapter sends the buffered body with its own Content-Length, so it drops a
  // framing header the route set for a stream (Transfer-Encoding, Trailer); both together are malformed.
  it('a route that sets Transfer-Encoding still gets a well-formed first response', async () => {
    const app = express()
    app.use(json())
    app.use(idempotency({ store: new MemoryStore() }))
    app.post('/te', (_req, res) => {
      res.setHeader('transfer-encoding', 'chunked')
      res.status(201).json({ ok: true })
    })
    const server = app.listen(0, '127.0.0.1')
    const base = await listen(server)
    try {
      const res = await request(`${base}/te`, {
        method: 'POST',
        headers: [
          ['content-type', 'application/json'],
          ['idempotency-key', 'te'],
        ],
        body: '{}',
      })
      expect(res.status).toBe(201)
      expect(res.json()).toEqual({ ok: true })
    } finally {
      await closeServer(server)
    }
  })
})
