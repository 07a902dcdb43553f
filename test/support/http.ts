// A bare node:http client and demo launchers, so tests see raw header pairs and compare body bytes.
import { type ChildProcess, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { MemoryStore } from 'idempotency-kit'
import { createPaymentsApp, type PaymentsAppOptions } from '../../examples/payments/app.js'
import { type Charge, FakeGateway } from '../../examples/payments/gateway.js'

/** The repository root, where `npm start` runs. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** A response as it came off the socket. */
export interface RawResponse {
  readonly status: number
  /** Header lines in order, names as sent (`res.rawHeaders` paired up). */
  readonly rawHeaders: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  /** Every value of a header (case-insensitive), in order. */
  all(name: string): string[]
  /** The single value of a header; throws if it came more than once. */
  header(name: string): string | undefined
  /** The body parsed as JSON. */
  json(): unknown
}

/** Request headers: a record, or pairs (a name may repeat: each pair is its own header line). */
export type RequestHeaders = Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>

export interface RequestOptions {
  readonly method?: string
  readonly headers?: RequestHeaders
  readonly body?: string | Buffer
  /** Called with the socket once the request is written, to simulate a client that goes away. */
  readonly onSocket?: (socket: Socket) => void
  /** Send the headers at once but hold the body until this resolves (see `simultaneously`). */
  readonly holdBodyUntil?: Promise<void>
  /** Called once the connection is up and the headers are sent. */
  readonly onConnected?: () => void
}

function toResponse(res: IncomingMessage, body: Buffer): RawResponse {
  const rawHeaders: Array<readonly [string, string]> = []
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    rawHeaders.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string])
  }
  const all = (name: string) => rawHeaders.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v)
  return {
    status: res.statusCode ?? 0,
    rawHeaders,
    body,
    all,
    header(name) {
      const values = all(name)
      if (values.length > 1) throw new Error(`header ${name} came ${values.length} times: ${values.join(' | ')}`)
      return values[0]
    },
    json: () => JSON.parse(body.toString('utf8')) as unknown,
  }
}

/** One request on its own connection (no keep-alive pool), resolved with the whole response. */
export function request(url: string, options: RequestOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve(toResponse(res, Buffer.concat(chunks))))
      res.on('error', reject)
    })
    req.on('error', reject)
    const headers = options.headers ?? {}
    const pairs: ReadonlyArray<readonly [string, string]> = Array.isArray(headers)
      ? (headers as ReadonlyArray<readonly [string, string]>)
      : Object.entries(headers)
    // setHeader with an array value writes one header line per value: how a repeated header is sent.
    const grouped = new Map<string, string[]>()
    for (const [name, value] of pairs) grouped.set(name, [...(grouped.get(name) ?? []), value])
    for (const [name, values] of grouped) req.setHeader(name, values.length === 1 ? (values[0] as string) : values)
    if (options.body !== undefined) req.setHeader('content-length', Buffer.byteLength(options.body))
    if (options.onSocket !== undefined) {
      const onSocket = options.onSocket
      req.on('socket', (socket) => onSocket(socket))
    }
    if (options.onConnected !== undefined) {
      const onConnected = options.onConnected
      req.on('socket', (socket) => socket.once('connect', () => onConnected()))
    }
    if (options.holdBodyUntil === undefined) {
      req.end(options.body)
    } else {
      req.flushHeaders()
      options.holdBodyUntil.then(() => req.end(options.body), reject)
    }
  })
}

/**
 * Sends `n` requests so that they reach the server together: every connection is opened and its headers
 * sent first, then all bodies are released at once. Without this, on a busy machine the last requests may
 * only arrive after the first one finished, and be replays rather than conflicts.
 */
export async function simultaneously(
  n: number,
  send: (gate: Pick<RequestOptions, 'holdBodyUntil' | 'onConnected'>) => Promise<RawResponse>,
): Promise<RawResponse[]> {
  let open!: () => void
  const holdBodyUntil = new Promise<void>((resolve) => (open = resolve))
  let connected = 0
  let allConnected!: () => void
  const everyoneConnected = new Promise<void>((resolve) => (allConnected = resolve))
  const onConnected = () => {
    if (++connected === n) allConnected()
  }
  const responses = Array.from({ length: n }, () => send({ holdBodyUntil, onConnected }))
  await Promise.race([everyoneConnected, Promise.all(responses)])
  open()
  return Promise.all(responses)
}

/** The seed's payload. */
export const SEED_PAYLOAD = { amount: 5000, customerId: 'cus_123', currency: 'usd' } as const

/** POST a JSON body (an object is stringified; a string is sent verbatim) to the charge route. */
export function charge(
  baseUrl: string,
  key: string | undefined,
  body: object | string = SEED_PAYLOAD,
  headers: ReadonlyArray<readonly [string, string]> = [],
  options: Pick<RequestOptions, 'onSocket' | 'holdBodyUntil' | 'onConnected'> = {},
): Promise<RawResponse> {
  return request(`${baseUrl}/api/payments/charge`, {
    method: 'POST',
    headers: [
      ['Content-Type', 'application/json'],
      ...(key === undefined ? [] : [['Idempotency-Key', key] as const]),
      ...headers,
    ],
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...options,
  })
}

/** What the demo's gateway did, read over the socket: `GET /api/payments/charges`. */
export async function charges(baseUrl: string): Promise<{ charges: Charge[]; attempts: number }> {
  const res = await request(`${baseUrl}/api/payments/charges`)
  if (res.status !== 200) throw new Error(`GET /api/payments/charges answered ${res.status}`)
  return res.json() as { charges: Charge[]; attempts: number }
}

/** Listens on 127.0.0.1:0 and answers the base URL. */
export async function listen(server: Server): Promise<string> {
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
  }
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Closes a server and every connection it still has. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

/** The demo app running in this process. */
export interface InProcessDemo {
  readonly url: string
  readonly gateway: FakeGateway
  readonly store: PaymentsAppOptions['store']
  close(): Promise<void>
}

/** Starts the payments demo in-process on a free port, over a fresh MemoryStore unless one is given. */
export async function startDemo(
  options: Partial<PaymentsAppOptions> & { readonly gatewayLatencyMs?: number } = {},
): Promise<InProcessDemo> {
  const { gatewayLatencyMs, ...rest } = options
  const store = rest.store ?? new MemoryStore()
  const gateway = rest.gateway ?? new FakeGateway(gatewayLatencyMs ?? 0)
  const { app } = createPaymentsApp({ ...rest, store, gateway })
  const server = app.listen(0, '127.0.0.1')
  const url = await listen(server)
  return { url, gateway, store, close: () => closeServer(server) }
}

/** `npm start` running as a child process. */
export interface SpawnedDemo {
  readonly url: string
  readonly pid: number
  /** Everything it printed so far. */
  output(): string
  /** The node process running examples/payments/server.ts under npm (Linux: read from /proc). */
  serverPid(): number | undefined
  /** SIGTERM to its process group (npm, the shell and node), SIGKILL if it lingers. */
  stop(): Promise<void>
  /** Resolves when npm start has exited. */
  readonly exited: Promise<void>
}

/** Processes of process group `pgid` whose argv[0] is node and whose arguments include `script`. */
function findNodeInGroup(pgid: number, script: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Fields after the parenthesised command name: state, ppid, pgrp, …
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
      if (pgrp !== pgid) continue
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (/(^|\/)node$/.test(argv[0] ?? '') && argv.includes(script)) return Number(entry)
    } catch {
      // The process went away while we looked.
    }
  }
  return undefined
}

const LISTENING = /listening on (http:\/\/127\.0\.0\.1:\d+)/

/** Spawns `npm start` with `env` on PORT=0 and reads the port it prints. */
export function spawnDemo(env: Readonly<Record<string, string>>, timeoutMs = 20_000): Promise<SpawnedDemo> {
  const child: ChildProcess = spawn('npm', ['start'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '0', ...env },
    // Its own process group, so stopping it reaches node under npm and sh, and nothing else.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const spawnedPid = child.pid
  if (spawnedPid === undefined) return Promise.reject(new Error('npm start did not spawn'))
  const pid: number = spawnedPid
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))

  async function stop(): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return
    try {
      process.kill(-pid, 'SIGTERM')
    } catch {
      return
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }, 5_000)
    await exited
    clearTimeout(timer)
  }

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`npm start printed no "listening on" line within ${timeoutMs} ms:\n${output}`))
    }, timeoutMs)
    const onData = () => {
      const match = LISTENING.exec(output)
      if (match === null) return
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      resolve({
        url: match[1] as string,
        pid,
        output: () => output,
        serverPid: () => findNodeInGroup(pid, 'examples/payments/server.ts'),
        stop,
        exited,
      })
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`npm start exited (${code ?? signal}) before listening:\n${output}`))
    })
  })
}

/** Runs a Node script to completion and answers its exit code and output. */
export function runNode(
  script: string,
  env: Readonly<Record<string, string>>,
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${script} did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`))
    }, timeoutMs)
    child.once('error', reject)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** The media type of a response, without parameters. */
export function mediaType(res: RawResponse): string | undefined {
  return res.header('content-type')?.split(';')[0]?.trim().toLowerCase()
}

/** A problem+json body with the seed's `error` and `message`, or a thrown description of what came instead. */
export function problemOf(res: RawResponse): { error: string; message: string; [member: string]: unknown } {
  if (mediaType(res) !== 'application/problem+json') {
    throw new Error(`expected application/problem+json, got ${res.header('content-type')}: ${res.body.toString()}`)
  }
  const body = res.json() as Record<string, unknown>
  if (typeof body.error !== 'string' || typeof body.message !== 'string' || body.message.length === 0) {
    throw new Error(`problem without the seed's error and message: ${res.body.toString()}`)
  }
  return body as { error: string; message: string }
}

/** A JSON POST with an optional Idempotency-Key, as raw bytes and header pairs. */
export function postJson(
  url: string,
  key: string | undefined,
  body: string | object = { a: 1 },
  headers: ReadonlyArray<readonly [string, string]> = [],
): Promise<RawResponse> {
  return request(url, {
    method: 'POST',
    headers: [
      ['content-type', 'application/json'],
      ...(key === undefined ? [] : [['idempotency-key', key] as const]),
      ...headers,
    ],
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** The same JSON POST through `fetch`, for tests that read a Web `Response`. */
export function fetchJson(
  url: string,
  key: string | undefined,
  body: unknown = { a: 1 },
  headers: Readonly<Record<string, string>> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key === undefined ? {} : { 'idempotency-key': key }),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** A fetched response's status, headers and body bytes, for byte-for-byte comparison. */
export async function snapshot(response: Response) {
  return {
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: Buffer.from(await response.arrayBuffer()),
  }
}
