// @Idempotent() and IdempotencyModule over a real socket, on NestJS's Express and Fastify platforms.
//
// The project's tsconfig has no experimentalDecorators, so the test app applies Nest's decorators as plain
// calls (what `@X()` compiles to); no constructor injection, so no emitDecoratorMetadata either.
import 'reflect-metadata'
import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { gzipSync } from 'node:zlib'
import {
  type ArgumentsHost,
  BadRequestException,
  Body,
  Controller,
  Delete,
  type ExceptionFilter,
  type ExecutionContext,
  HttpCode,
  HttpException,
  type HttpServer,
  Module,
  type NestInterceptor,
  type PipeTransform,
  Post,
  Res,
  StreamableFile,
  UseGuards,
} from '@nestjs/common'
import { APP_INTERCEPTOR, NestFactory } from '@nestjs/core'
import { ExpressAdapter } from '@nestjs/platform-express'
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify'
import {
  defaultStoragePolicy,
  type Idempotency,
  type IdempotencyOptions,
  type Lease,
  MemoryStore,
  type StoragePolicy,
  type Store,
} from 'idempotency-kit'
import { IDEMPOTENCY_ENGINE, IdempotencyLease, IdempotencyModule, Idempotent } from 'idempotency-kit/nestjs'
import { Observable, timeout } from 'rxjs'
import { afterEach, describe, expect, it } from 'vitest'
import { fetchJson as send, snapshot } from '../support/http.js'

interface App {
  close(): Promise<void>
}
const apps: App[] = []

afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()))
})

/** Applies method decorators the way `@A() @B() method()` does: bottom-up. */
function decorate(cls: { prototype: object }, method: string, ...decorators: MethodDecorator[]) {
  const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, method) as PropertyDescriptor
  for (const d of [...decorators].reverse()) d(cls.prototype, method, descriptor)
}

function param(cls: { prototype: object }, method: string, index: number, decorator: ParameterDecorator) {
  decorator(cls.prototype, method, index)
}

interface EchoBody {
  readonly commit?: boolean
  readonly throw?: number
  readonly fail?: boolean
  readonly waitMs?: number
  readonly size?: number
}

/** Renders every error its own way, with a header: the bytes the capture must store or release. */
class RenderingFilter implements ExceptionFilter {
  constructor(private readonly http: HttpServer) {}
  catch(error: unknown, host: ArgumentsHost) {
    const res = host.switchToHttp().getResponse()
    const status = error instanceof HttpException ? error.getStatus() : 500
    this.http.setHeader(res, 'x-filter', 'rendered')
    this.http.reply(res, { filtered: true, status, at: Date.now() }, status)
  }
}

type Platform = 'express' | 'fastify'

/** What a ValidationPipe does: refuse a body without a positive amount. */
const amountPipe: PipeTransform = {
  transform(value: { amount?: unknown }) {
    if (typeof value.amount !== 'number' || value.amount <= 0) throw new BadRequestException('amount is required')
    return value
  },
}

/** Express `Response` or Fastify `FastifyReply`: both reach the Node response. */
type PlatformResponse = { header(name: string, value: string): unknown; raw?: ServerResponse } & Partial<ServerResponse>

const rawOf = (res: PlatformResponse) => (res.raw ?? res) as ServerResponse

/** Sets the tenant as an authentication guard would; a controller guard runs after global interceptors' setup. */
const tenantGuard = {
  canActivate(context: ExecutionContext) {
    const req = context.switchToHttp().getRequest()
    const tenant = req.headers['x-tenant']
    if (typeof tenant === 'string') req.user = { id: tenant }
    return true
  },
}

async function start(
  platform: Platform,
  extra: Partial<IdempotencyOptions> = {},
  factory = false,
  outer: NestInterceptor[] = [],
) {
  /** `logged`: Fastify's warnings and above; `finished`: the status each response had when it finished. */
  const state = { runs: 0, plain: 0, proceed: () => {}, logged: [] as string[], finished: [] as number[] }
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

  class Routes {
    async echo(body: EchoBody, res: PlatformResponse, lease: Lease | undefined) {
      state.runs++
      res.header('x-custom', `run-${state.runs}`)
      if (body.waitMs !== undefined) await sleep(body.waitMs)
      if (body.commit) lease?.commit()
      if (body.throw !== undefined) throw new HttpException({ reason: 'thrown' }, body.throw)
      if (body.fail) throw new Error('boom')
      if (body.size !== undefined) return 'x'.repeat(body.size)
      return { runs: state.runs, at: Date.now(), lease: lease && { key: lease.key, fence: lease.fence }, body }
    }
    plain() {
      state.plain++
      return { plain: state.plain }
    }
    remove() {
      state.runs++
      return { removed: state.runs }
    }
    /** Library-specific mode: the handler writes the Node response itself, Nest renders nothing. */
    bytes(res: PlatformResponse) {
      state.runs++
      const raw = rawOf(res)
      raw.setHeader('x-custom', ['one', 'two'])
      raw.writeHead(201, { location: '/things/1', 'content-type': 'application/octet-stream' })
      raw.write(bytes.subarray(0, 100))
      raw.end(bytes.subarray(100))
    }
    /** An Observable Nest tears down when the client goes away: it renders nothing then. */
    observed() {
      return new Observable((subscriber) => {
        state.runs++
        const timer = setTimeout(() => {
          subscriber.next({ runs: state.runs })
          subscriber.complete()
        }, 300)
        return () => clearTimeout(timer)
      })
    }
    validated(body: { amount: number }) {
      state.runs++
      return { charged: body.amount }
    }
    /** A StreamableFile: piped into the response by Express, sent as a stream by Fastify. */
    file() {
      state.runs++
      return new StreamableFile(bytes, { type: 'application/x-bytes', disposition: 'attachment; filename="b.bin"' })
    }
    /** Streams: a captured route would hold the first chunk until the end. */
    async stream(res: PlatformResponse) {
      state.plain++
      const raw = rawOf(res)
      raw.writeHead(200, { 'content-type': 'text/plain' })
      raw.write('first;')
      await new Promise<void>((resolve) => (state.proceed = resolve))
      raw.end('second')
    }
  }
  Controller('r')(Routes)
  UseGuards(tenantGuard)(Routes)
  decorate(Routes, 'echo', Post('echo'), HttpCode(201), Idempotent())
  param(Routes, 'echo', 0, Body())
  param(Routes, 'echo', 1, Res({ passthrough: true }))
  param(Routes, 'echo', 2, IdempotencyLease())
  decorate(Routes, 'plain', Post('plain'))
  decorate(Routes, 'remove', Delete('thing'), Idempotent({ required: true }))
  decorate(Routes, 'bytes', Post('bytes'), Idempotent())
  param(Routes, 'bytes', 0, Res())
  decorate(Routes, 'observed', Post('observed'), Idempotent())
  decorate(Routes, 'file', Post('file'), Idempotent())
  // Pipes run after the decision: a refusal of theirs is an outcome, released here so the client may fix its body.
  const releaseRefusals: StoragePolicy = (status, committed) =>
    status === 400 && !committed ? 'release' : defaultStoragePolicy(status, committed)
  decorate(Routes, 'validated', Post('validated'), Idempotent({ storagePolicy: releaseRefusals }))
  param(Routes, 'validated', 0, Body(amountPipe))
  decorate(Routes, 'stream', Post('stream'))
  param(Routes, 'stream', 0, Res())

  /** Every route of this controller is idempotent, with the controller's options. */
  class Waiting {
    async slow() {
      state.runs++
      await sleep(300)
      return { runs: state.runs, at: Date.now() }
    }
  }
  Controller('w')(Waiting)
  Idempotent({ onConflict: 'wait' })(Waiting)
  decorate(Waiting, 'slow', Post('slow'))

  class AppModule {}
  const moduleOptions = {
    store: new MemoryStore(),
    ...extra,
    // Set by the guard below: the scope is read after every guard ran.
    scope: (req: { user?: { id: string } }) => req.user?.id,
  }
  Module({
    imports: [
      factory
        ? IdempotencyModule.forRootAsync({ useFactory: async () => moduleOptions })
        : IdempotencyModule.forRoot(moduleOptions),
    ],
    controllers: [Routes, Waiting],
    // Registered by the app module: they wrap the idempotency interceptor.
    providers: outer.map((useValue) => ({ provide: APP_INTERCEPTOR, useValue })),
  })(AppModule)

  const options = { rawBody: true, logger: false as const }
  const app =
    platform === 'express'
      ? await NestFactory.create(AppModule, new ExpressAdapter(), options)
      : await NestFactory.create(
          AppModule,
          new FastifyAdapter({
            logger: { level: 'warn', stream: { write: (line: string) => state.logged.push(line) } },
          }),
          options,
        )
  // A request id set before the routes belongs to each response: never stored, fresh on a replay.
  if (platform === 'fastify') {
    const fastify = (app as NestFastifyApplication).getHttpAdapter().getInstance()
    fastify.addHook('onRequest', async (_req, reply) => void reply.header('x-request-id', crypto.randomUUID()))
    fastify.addHook('onResponse', async (_req, reply) => void state.finished.push(reply.statusCode))
    // A compressor in onSend, as @fastify/compress is: it runs before the raw response the capture wraps.
    fastify.addHook('onSend', async (request, reply, payload) => {
      if (request.headers['x-gzip'] === undefined || typeof payload !== 'string') return payload
      reply.header('content-encoding', 'gzip')
      return gzipSync(payload)
    })
  } else {
    app.use((_req: unknown, res: ServerResponse, next: () => void) => {
      res.setHeader('x-request-id', crypto.randomUUID())
      res.once('finish', () => state.finished.push(res.statusCode))
      next()
    })
  }
  app.useGlobalFilters(new RenderingFilter(app.getHttpAdapter()))
  await app.listen(0, '127.0.0.1')
  apps.push(app)
  return { url: (await app.getUrl()).replace('[::1]', '127.0.0.1'), state, app }
}

const key = () => crypto.randomUUID()

for (const platform of ['express', 'fastify'] as const) {
  describe(`NestJS on ${platform}`, () => {
    it('replays status, headers and body byte for byte, running the handler once; the lease reaches it', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const first = await snapshot(await send(`${url}/r/echo`, k, { a: 1 }))
      const second = await snapshot(await send(`${url}/r/echo`, k, { a: 1 }))
      expect(state.runs).toBe(1)
      expect(first.status).toBe(201)
      expect(second.status).toBe(201)
      expect(second.body.equals(first.body)).toBe(true)
      expect(second.headers['content-type']).toBe(first.headers['content-type'])
      expect(second.headers['x-custom']).toBe('run-1')
      expect(second.headers['idempotent-replayed']).toBe('true')
      expect(first.headers['idempotent-replayed']).toBeUndefined()
      expect(second.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
      expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id'])
      const lease = JSON.parse(first.body.toString('utf8')).lease
      expect(lease.key).toMatch(/^[0-9a-f]{64}$/)
      expect(lease.fence).toBe(1)
    })

    it('replays what a @Res() handler wrote through writeHead, write and end, byte for byte', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const first = await snapshot(await send(`${url}/r/bytes`, k))
      const second = await snapshot(await send(`${url}/r/bytes`, k))
      expect(state.runs).toBe(1)
      expect([first.status, second.status]).toEqual([201, 201])
      expect(first.body.equals(Buffer.from(Array.from({ length: 256 }, (_, i) => i)))).toBe(true)
      expect(second.body.equals(first.body)).toBe(true)
      expect(second.headers.location).toBe('/things/1')
      expect(second.headers['content-type']).toBe('application/octet-stream')
      expect(second.headers['x-custom']).toBe('one, two')
      expect(second.headers['idempotent-replayed']).toBe('true')
    })

    it('replays a StreamableFile byte for byte with its content type and disposition', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const first = await snapshot(await send(`${url}/r/file`, k))
      const second = await snapshot(await send(`${url}/r/file`, k))
      expect(state.runs).toBe(1)
      expect(first.body.equals(Buffer.from(Array.from({ length: 256 }, (_, i) => i)))).toBe(true)
      expect(second.body.equals(first.body)).toBe(true)
      expect(second.status).toBe(first.status)
      expect(second.headers['content-type']).toBe('application/x-bytes')
      expect(second.headers['content-disposition']).toBe('attachment; filename="b.bin"')
      expect(second.headers['idempotent-replayed']).toBe('true')
    })

    it('answers 422 for another body (raw bytes: integers past 2^53 differ) before 409, and 409 while running', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const body = '{"amount":9007199254740993,"waitMs":400}'
      const first = send(`${url}/r/echo`, k, body)
      await sleep(150)
      const reused = await send(`${url}/r/echo`, k, '{"amount":9007199254740992,"waitMs":400}')
      expect(reused.status).toBe(422)
      expect(reused.headers.get('content-type')).toBe('application/problem+json')
      expect((await reused.json()).error).toBe('IDEMPOTENCY_KEY_REUSED')
      const running = await send(`${url}/r/echo`, k, body)
      expect(running.status).toBe(409)
      expect(Number(running.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect((await running.json()).error).toBe('REQUEST_IN_PROGRESS')
      expect((await first).status).toBe(201)
      expect(state.runs).toBe(1)
      // What access logs see: Nest's late rendering of a replay or rejection changes neither status nor logs.
      await sleep(50)
      expect(state.finished.toSorted()).toEqual([201, 409, 422])
      expect(state.logged).toEqual([])
    })

    it("stores an exception filter's rendered 4xx, releases its 5xx before commit and stores it after", async () => {
      const { url, state } = await start(platform)
      const declined = key()
      const a = await snapshot(await send(`${url}/r/echo`, declined, { throw: 402 }))
      const b = await snapshot(await send(`${url}/r/echo`, declined, { throw: 402 }))
      expect(state.runs).toBe(1)
      expect(a.status).toBe(402)
      expect(JSON.parse(a.body.toString('utf8'))).toMatchObject({ filtered: true, status: 402 })
      expect(b.status).toBe(402)
      expect(b.body.equals(a.body)).toBe(true)
      expect(b.headers['x-filter']).toBe('rendered')
      expect(b.headers['idempotent-replayed']).toBe('true')

      const down = key()
      const c = await snapshot(await send(`${url}/r/echo`, down, { throw: 503 }))
      const d = await snapshot(await send(`${url}/r/echo`, down, { throw: 503 }))
      expect(state.runs).toBe(3)
      expect([c.status, d.status]).toEqual([503, 503])
      expect(d.headers['idempotent-replayed']).toBeUndefined()
      expect(d.body.equals(c.body)).toBe(false)

      const committed = key()
      const e = await snapshot(await send(`${url}/r/echo`, committed, { commit: true, fail: true }))
      const f = await snapshot(await send(`${url}/r/echo`, committed, { commit: true, fail: true }))
      expect(state.runs).toBe(4)
      expect(e.status).toBe(500)
      expect(JSON.parse(e.body.toString('utf8'))).toMatchObject({ filtered: true, status: 500 })
      expect(f.status).toBe(500)
      expect(f.body.equals(e.body)).toBe(true)
      expect(f.headers['idempotent-replayed']).toBe('true')
    })

    it("applies a route's storagePolicy to a pipe's refusal: released, so the corrected body runs", async () => {
      const { url, state } = await start(platform)
      const k = key()
      const refused = await send(`${url}/r/validated`, k, {})
      expect(refused.status).toBe(400)
      expect(refused.headers.get('x-filter')).toBe('rendered')
      const corrected = await send(`${url}/r/validated`, k, { amount: 5 })
      expect(corrected.status).toBe(201)
      expect(await corrected.json()).toEqual({ charged: 5 })
      const replayed = await send(`${url}/r/validated`, k, { amount: 5 })
      expect(replayed.headers.get('idempotent-replayed')).toBe('true')
      expect(state.runs).toBe(1)
    })

    it('scopes keys by tenant: the same key in another tenant runs, in the same tenant replays', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const a1 = await snapshot(await send(`${url}/r/echo`, k, {}, { 'x-tenant': 'acme' }))
      const b1 = await snapshot(await send(`${url}/r/echo`, k, {}, { 'x-tenant': 'globex' }))
      const a2 = await snapshot(await send(`${url}/r/echo`, k, {}, { 'x-tenant': 'acme' }))
      expect(state.runs).toBe(2)
      expect(b1.headers['idempotent-replayed']).toBeUndefined()
      expect(b1.body.equals(a1.body)).toBe(false)
      expect(a2.headers['idempotent-replayed']).toBe('true')
      expect(a2.body.equals(a1.body)).toBe(true)
    })

    it('leaves a route without @Idempotent untouched, and applies a required DELETE route', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const first = await send(`${url}/r/plain`, k)
      const second = await send(`${url}/r/plain`, k)
      expect(state.plain).toBe(2)
      expect(await second.json()).toEqual({ plain: 2 })
      expect(first.headers.get('idempotent-replayed')).toBeNull()
      expect(second.headers.get('idempotent-replayed')).toBeNull()

      // Streamed as it is written: the first chunk arrives while the handler still waits.
      const streaming = send(`${url}/r/stream`, k).then((r) => (r.body as ReadableStream<Uint8Array>).getReader())
      const chunk = await Promise.race([streaming.then((r) => r.read()), sleep(3000).then(() => undefined)])
      state.proceed()
      expect(Buffer.from(chunk?.value ?? []).toString()).toBe('first;')
      const reader = await streaming
      while (!(await reader.read()).done) {}

      const missing = await fetch(`${url}/r/thing`, { method: 'DELETE' })
      expect(missing.status).toBe(400)
      expect((await missing.json()).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
      expect(state.runs).toBe(0)
      const d = key()
      const removed = await fetch(`${url}/r/thing`, { method: 'DELETE', headers: { 'idempotency-key': d } })
      const again = await fetch(`${url}/r/thing`, { method: 'DELETE', headers: { 'idempotency-key': d } })
      expect(await again.text()).toBe(await removed.text())
      expect(again.headers.get('idempotent-replayed')).toBe('true')
      expect(state.runs).toBe(1)
    })

    it("applies a controller's @Idempotent({ onConflict: 'wait' }): a duplicate waits and replays", async () => {
      const { url, state } = await start(platform)
      const k = key()
      const results = await Promise.all([send(`${url}/w/slow`, k), sleep(80).then(() => send(`${url}/w/slow`, k))])
      const bodies = await Promise.all(results.map((r) => r.text()))
      expect(results.map((r) => r.status)).toEqual([201, 201])
      expect(bodies[1]).toBe(bodies[0])
      expect(results[1]?.headers.get('idempotent-replayed')).toBe('true')
      expect(state.runs).toBe(1)
    })

    it('stores the result when the client disconnects mid-request, and the retry replays it', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const controller = new AbortController()
      const gone = fetch(`${url}/r/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': k },
        body: JSON.stringify({ waitMs: 300 }),
        signal: controller.signal,
      }).catch(() => 'aborted')
      await sleep(100)
      controller.abort()
      expect(await gone).toBe('aborted')
      await sleep(400)
      const retry = await send(`${url}/r/echo`, k, { waitMs: 300 })
      expect(retry.status).toBe(201)
      expect(retry.headers.get('idempotent-replayed')).toBe('true')
      expect(state.runs).toBe(1)
    })

    it('releases the key when Nest drops an Observable handler on disconnect, so the retry runs', async () => {
      const { url, state } = await start(platform)
      const k = key()
      const controller = new AbortController()
      const gone = fetch(`${url}/r/observed`, {
        method: 'POST',
        headers: { 'idempotency-key': k },
        signal: controller.signal,
      }).catch(() => 'aborted')
      await sleep(100)
      controller.abort()
      expect(await gone).toBe('aborted')
      await sleep(100)
      const retry = await fetch(`${url}/r/observed`, { method: 'POST', headers: { 'idempotency-key': k } })
      expect(retry.status).toBe(201)
      expect(retry.headers.get('idempotent-replayed')).toBeNull()
      expect(await retry.json()).toEqual({ runs: 2 })
      expect(state.runs).toBe(2)
    })

    if (platform === 'fastify') {
      it('keeps a body an onSend hook encoded as unreplayable: 410 on retry', async () => {
        const { url, state } = await start(platform)
        const k = key()
        const first = await send(`${url}/r/echo`, k, {}, { 'x-gzip': '1' })
        expect(first.status).toBe(201)
        expect(first.headers.get('content-encoding')).toBe('gzip')
        expect((await first.json()).runs).toBe(1)
        const retry = await send(`${url}/r/echo`, k, {})
        expect(retry.status).toBe(410)
        expect(await retry.json()).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
        expect(state.runs).toBe(1)
      })
    }

    it('passes a response larger than maxResponseBytes through whole and answers its retry 410', async () => {
      const { url, state } = await start(platform, { maxResponseBytes: 1000 })
      const k = key()
      const first = await send(`${url}/r/echo`, k, { size: 5000 })
      expect(first.status).toBe(201)
      expect(await first.text()).toBe('x'.repeat(5000))
      const retry = await send(`${url}/r/echo`, k, { size: 5000 })
      expect(retry.status).toBe(410)
      expect(await retry.json()).toMatchObject({ error: 'IDEMPOTENT_RESPONSE_NOT_STORED', originalStatus: 201 })
      expect(state.runs).toBe(1)
    })

    it('answers 503 with Retry-After and runs nothing when the store does not answer', async () => {
      const memory = new MemoryStore()
      const hanging: Store = {
        begin: () => new Promise(() => {}),
        complete: (i) => memory.complete(i),
        release: (i) => memory.release(i),
        extend: (i) => memory.extend(i),
        get: (k) => memory.get(k),
        delete: (k, o) => memory.delete(k, o),
      }
      const { url, state } = await start(platform, { store: hanging, beginTimeoutMs: 200 })
      const response = await send(`${url}/r/echo`, key())
      expect(response.status).toBe(503)
      expect(response.headers.get('content-type')).toBe('application/problem+json')
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect((await response.json()).error).toBe('IDEMPOTENCY_STORE_UNAVAILABLE')
      expect(state.runs).toBe(0)
    })

    it('frees the key when an outer timeout interceptor gave up before the key was acquired', async () => {
      const memory = new MemoryStore()
      const slow: Store = {
        begin: async (input) => {
          await sleep(300)
          return memory.begin(input)
        },
        complete: (i) => memory.complete(i),
        release: (i) => memory.release(i),
        extend: (i) => memory.extend(i),
        get: (k) => memory.get(k),
        delete: (k, o) => memory.delete(k, o),
      }
      const outer: NestInterceptor = { intercept: (_context, next) => next.handle().pipe(timeout(100)) }
      const { url, state } = await start(platform, { store: slow }, false, [outer])
      const k = key()
      const response = await send(`${url}/r/echo`, k)
      expect(response.status).toBe(500)
      expect(response.headers.get('x-filter')).toBe('rendered')
      await sleep(400)
      const record = await memory.get(createHash('sha256').update(`\0${k}`).digest('hex'))
      expect(record?.state).toBe('released')
      expect(state.runs).toBe(0)
    })

    it('takes its options from forRootAsync', async () => {
      const { url, state } = await start(platform, {}, true)
      const k = key()
      const first = await send(`${url}/r/echo`, k, {}, { 'x-tenant': 'acme' })
      const second = await send(`${url}/r/echo`, k, {}, { 'x-tenant': 'acme' })
      expect(await second.text()).toBe(await first.text())
      expect(second.headers.get('idempotent-replayed')).toBe('true')
      expect(state.runs).toBe(1)
    })

    it('closes the engine it made when the app closes: new keys are refused', async () => {
      const { app } = await start(platform)
      const engine = app.get<typeof IDEMPOTENCY_ENGINE, Idempotency>(IDEMPOTENCY_ENGINE)
      const request = {
        method: 'POST',
        url: '/r/echo',
        header: (name: string) => (name === 'idempotency-key' ? key() : undefined),
        body: { kind: 'none' } as const,
        contentType: undefined,
        scope: '',
      }
      const before = await engine.handle(request)
      if (before.kind !== 'execute') throw new Error(`expected execute, got ${before.kind}`)
      await before.execution.finish({ kind: 'response', status: 200, headers: [], body: new Uint8Array() })
      apps.splice(apps.indexOf(app), 1)
      await app.close()
      const after = await engine.handle(request)
      expect(after.kind === 'respond' && after.response.status).toBe(503)
    })
  })
}
