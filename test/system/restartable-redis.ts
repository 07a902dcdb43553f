// A private redis-server that a test can kill, freeze and start again on the same port (an outage).
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const START_HINT = 'redis-server (Redis >= 7) must be on PATH; on Debian: apt-get install -y redis-server'

/** One private redis-server; at most one process at a time, always on `port`. */
export interface RestartableRedis {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** The PID of the running redis-server, or undefined while it is down. */
  pid(): number | undefined
  /** Sends `signal` to the running server: SIGKILL for a crash, SIGSTOP/SIGCONT for a hung server. */
  signal(signal: NodeJS.Signals): void
  /** SIGKILL and wait until it is gone: the port refuses connections from now on. */
  kill(): Promise<void>
  /** Starts a new, empty redis-server on the same port; resolves once it answers PING. */
  start(): Promise<void>
  /** Stops the server (whatever state it is in) and removes its directory. */
  stop(): Promise<void>
}

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {}
    }
  }
})

/** Starts a private redis-server on a free loopback port. */
export async function startRestartableRedis(): Promise<RestartableRedis> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), `redis-outage-${port}-`))
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null

  async function start(): Promise<void> {
    if (alive()) throw new Error(`redis-server on ${port} is already running`)
    const launched = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: 'ignore' },
    )
    child = launched
    children.add(launched)
    exited = new Promise((resolve) => {
      launched.once('exit', () => {
        children.delete(launched)
        resolve()
      })
      launched.once('error', () => resolve())
    })
    const failed = new Promise<never>((_, reject) => {
      launched.once('error', (error) => reject(new Error(`${error.message}. ${START_HINT}`)))
      launched.once('exit', (code) => reject(new Error(`redis-server on ${port} exited with ${code}. ${START_HINT}`)))
    })
    failed.catch(() => {})
    await Promise.race([failed, waitForPong(port)])
  }

  async function kill(): Promise<void> {
    if (alive()) child?.kill('SIGKILL')
    await exited
  }

  const server: RestartableRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => (alive() ? child?.pid : undefined),
    signal(signal) {
      if (!alive()) throw new Error(`redis-server on ${port} is not running`)
      child?.kill(signal)
    },
    kill,
    start,
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    await start()
  } catch (error) {
    await server.stop()
    throw error
  }
  return server
}

async function waitForPong(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await answersPing(port)) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`redis-server on ${port} did not answer PING within ${timeoutMs} ms`)
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    socket.setTimeout(500)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) {
        socket.destroy()
        resolve(reply.startsWith('+PONG'))
      }
    })
    socket.on('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.on('error', () => resolve(false))
  })
}

/** A port the OS just handed out on loopback (free now; redis-server binds it a moment later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject()))
    })
  })
}
