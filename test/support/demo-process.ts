// The payments demo (or any example server) as a real child process (node + tsx, no npm in between), stopped or
// killed by PID.
import { type ChildProcess, spawn } from 'node:child_process'
import { REPO_ROOT } from './http.js'

/** How `npm start` runs a server, without npm, so the PID we hold is the server's. */
const NODE_ARGS = ['--conditions=idempotency-kit-source', '--import', 'tsx']

/** Every example server prints this line once it listens. */
const LISTENING = /listening on (http:\/\/127\.0\.0\.1:(\d+))/

/** One running `examples/payments/server.ts`. */
export interface DemoProcess {
  /** `http://127.0.0.1:<port>`, read from the line the demo prints. */
  readonly url: string
  readonly pid: number
  /** Everything it printed so far, stdout and stderr interleaved. */
  output(): string
  /** Sends `signal` to this PID only (SIGKILL: a crash, nothing runs after it). */
  kill(signal: NodeJS.Signals): void
  /** SIGTERM (the demo's graceful shutdown), SIGKILL if it is still there after `graceMs`. */
  stop(graceMs?: number): Promise<void>
  /** Resolves with how it ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const running = new Set<ChildProcess>()

// A test worker that dies must not leave demos behind: kill what is still ours, synchronously, by PID.
process.once('exit', () => {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {}
    }
  }
})

/**
 * Spawns the demo with `env` on PORT=0 and resolves once it prints the port it listens on; rejects (and
 * kills it) if it exits first or prints nothing within `timeoutMs`.
 */
export function startDemoProcess(
  env: Readonly<Record<string, string>>,
  { timeoutMs = 20_000, script = 'examples/payments/server.ts' }: { timeoutMs?: number; script?: string } = {},
): Promise<DemoProcess> {
  const inherited: NodeJS.ProcessEnv = { ...process.env }
  // A STORE_URL or REDIS_URL of the test run must not leak into a demo that was given neither.
  delete inherited.STORE_URL
  delete inherited.REDIS_URL
  const child = spawn(process.execPath, [...NODE_ARGS, script], {
    cwd: REPO_ROOT,
    env: { ...inherited, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const { pid } = child
  if (pid === undefined) return Promise.reject(new Error('the demo process did not spawn'))
  running.add(child)
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    }),
  )
  const alive = () => child.exitCode === null && child.signalCode === null

  const kill = (signal: NodeJS.Signals) => {
    if (alive()) process.kill(pid, signal)
  }
  const stop = async (graceMs = 3_000) => {
    if (!alive()) return
    kill('SIGTERM')
    const timer = setTimeout(() => kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      kill('SIGKILL')
      reject(new Error(`the demo printed no "listening on" line within ${timeoutMs} ms:\n${output}`))
    }, timeoutMs)
    const onData = () => {
      const match = LISTENING.exec(output)
      if (match === null) return
      clearTimeout(timer)
      child.stdout.off('data', onData)
      resolve({ url: match[1] as string, pid, output: () => output, kill, stop, exited })
    }
    child.stdout.on('data', onData)
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`the demo exited (${code ?? signal}) before listening:\n${output}`))
    })
  })
}

/** Stops every demo this worker started that is still running (for `afterAll`, also after a failure). */
export async function stopAllDemoProcesses(): Promise<void> {
  await Promise.all(
    [...running].map(async (child) => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
      await exited
      clearTimeout(timer)
    }),
  )
}
