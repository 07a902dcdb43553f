// A loopback TCP proxy in front of a real server, so a test can make that server unreachable and back.
import { createConnection, createServer, type Server, type Socket } from 'node:net'

/** A proxy on a fixed loopback port that forwards to `target`, or refuses, or swallows everything. */
export interface TcpProxy {
  readonly port: number
  /** Connections accepted so far (each one a new connection to the proxied server while forwarding). */
  readonly accepted: number
  /** Closes the listener and resets every connection, partitioned ones too: the port refuses. */
  stop(): Promise<void>
  /** Listens again on the same port and forwards. */
  start(): Promise<void>
  /**
   * Keeps accepting but forwards nothing, either way, on new and open connections: a hung server or
   * a silent network. `start()` after it resets the swallowed connections first.
   */
  blackhole(): void
  /**
   * Swallows the connections open now, forever, and forwards new ones: a failover to another address
   * that the old connections never learn about (no FIN, no RST), as after a DNS-based failover.
   */
  partition(): void
}

/** Starts a proxy from a free loopback port to `127.0.0.1:targetPort`. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  const abandoned = new Set<Socket>()
  let mode: 'forward' | 'blackhole' = 'forward'
  let accepted = 0
  let server: Server | undefined
  let port = 0

  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }
  const resetAll = () => {
    for (const socket of sockets) socket.resetAndDestroy()
    sockets.clear()
  }

  const swallow = (socket: Socket) => {
    // Read and drop: the peer's writes succeed and no answer ever comes.
    socket.unpipe()
    socket.removeAllListeners('data')
    socket.on('data', () => {})
  }

  const onConnection = (client: Socket) => {
    accepted++
    track(client)
    if (mode === 'blackhole') return swallow(client)
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort })
    track(upstream)
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  }

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const next = createServer(onConnection)
      next.once('error', reject)
      next.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        next.off('error', reject)
        server = next
        const address = next.address()
        if (typeof address === 'object' && address !== null) port = address.port
        resolve()
      })
    })

  await listen()
  return {
    get port() {
      return port
    },
    get accepted() {
      return accepted
    },
    async stop() {
      const closing = server
      server = undefined
      mode = 'forward'
      resetAll()
      for (const socket of abandoned) socket.resetAndDestroy()
      abandoned.clear()
      if (closing !== undefined) await new Promise<void>((resolve) => closing.close(() => resolve()))
    },
    async start() {
      // Swallowed connections never recover: reset them so their clients give up and reconnect.
      if (mode === 'blackhole') resetAll()
      mode = 'forward'
      if (server === undefined) await listen()
    },
    blackhole() {
      mode = 'blackhole'
      for (const socket of sockets) swallow(socket)
    },
    partition() {
      // Out of `sockets`, so start() does not reset them: they stay silent until stop().
      for (const socket of sockets) {
        swallow(socket)
        abandoned.add(socket)
      }
      sockets.clear()
    },
  }
}
