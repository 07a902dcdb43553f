// Private redis-server processes for tests: free loopback ports, a temp dir each, stopped by PID.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

const START_HINT = 'redis-server (Redis >= 7) must be on PATH; on Debian: apt-get install -y redis-server'

/** One redis-server this process started; `stop()` kills it by PID and removes its directory. */
export interface RedisServer {
  readonly host: '127.0.0.1'
  readonly port: number
  readonly pid: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Runs `redis-cli -p <port> <args>` and returns its trimmed output. */
  cli(...args: string[]): Promise<string>
  stop(): Promise<void>
}

/** A cluster of private masters (no replicas), every slot assigned and `cluster_state:ok`. */
export interface RedisCluster {
  readonly nodes: readonly RedisServer[]
  stop(): Promise<void>
}

export interface StartRedisServerOptions {
  /** Extra `redis-server` arguments, e.g. `['--maxmemory-policy', 'allkeys-lru']`. */
  readonly args?: readonly string[]
  /** Make this a cluster node (its bus port, port + 10000, is checked free too). */
  readonly cluster?: boolean
}

const running = new Set<ChildProcess>()

// A test worker that dies must not leave servers behind: kill what is still ours, synchronously.
process.once('exit', () => {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {}
    }
  }
})

/** Starts one redis-server on a free loopback port; resolves once it answers PING. */
export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<RedisServer> {
  let lastError: unknown
  // A port found free can be taken before redis-server binds it: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort(options.cluster === true)
    try {
      return await launch(port, options)
    } catch (error) {
      lastError = error
    }
  }
  throw new Error(`could not start redis-server: ${String(lastError)}. ${START_HINT}`, {
    cause: lastError,
  })
}

/** Starts `masters` cluster nodes and joins them with `redis-cli --cluster create`. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = []
  const stop = () => stopRedisServers(nodes)
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedisServer({ cluster: true }))
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((node) => `127.0.0.1:${node.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ])
    await waitFor(async () => {
      for (const node of nodes) {
        const info = await node.cli('CLUSTER', 'INFO')
        if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${masters}`)) {
          return false
        }
      }
      return true
    }, 'cluster_state:ok on every node')
    return { nodes, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/** Stops servers by PID (SIGTERM, then SIGKILL after 2 s) and removes their directories. */
export async function stopRedisServers(servers: readonly RedisServer[]): Promise<void> {
  await Promise.all(servers.map((server) => server.stop()))
}

async function launch(port: number, options: StartRedisServerOptions): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), `redis-${port}-`))
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--logfile',
    join(dir, 'redis.log'),
  ]
  if (options.cluster === true) {
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'))
    args.push('--cluster-node-timeout', '5000')
  }
  args.push(...(options.args ?? []))
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  running.add(child)
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve())
    child.once('error', () => resolve())
  })
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`redis-server exited early with code ${code}`)))
  })
  spawnError.catch(() => {})

  const stop = async (): Promise<void> => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
      await exited
      clearTimeout(timer)
    }
    running.delete(child)
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    await Promise.race([spawnError, waitFor(() => answersPing(port), `PING on port ${port}`)])
  } catch (error) {
    await stop()
    throw error
  }
  const pid = child.pid
  if (pid === undefined) throw new Error('redis-server has no PID')
  return {
    host: '127.0.0.1',
    port,
    pid,
    url: `redis://127.0.0.1:${port}`,
    cli: async (...cliArgs) => {
      const { stdout } = await run('redis-cli', ['-p', String(port), ...cliArgs])
      return stdout.trim()
    },
    stop,
  }
}

async function answersPing(port: number): Promise<boolean> {
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

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function freePort(withBusPort: boolean): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Cluster nodes also bind port + 10000, so stay below 55536 and check both.
    const port = 20_000 + Math.floor(Math.random() * 30_000)
    if ((await isFree(port)) && (!withBusPort || (await isFree(port + 10_000)))) return port
  }
  throw new Error('no free loopback port found')
}

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true))
    })
  })
}
