// A loopback TCP proxy that makes a real server slow, or makes it apply requests and lose the replies.
import { createConnection, createServer, type Server, type Socket } from 'node:net'

/**
 * What the proxy does to the server's replies (requests are always forwarded at once, so the server applies
 * every command it is sent):
 * - `forward`: passes them on;
 * - `delay`: passes each one on `ms` later, in order (a slow server or a congested link);
 * - `drop`: cuts both connections (RST) the moment a reply comes: the command was applied, its reply is lost.
 */
export type ReplyMode =
  | { readonly kind: 'forward' }
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'drop' }

export interface FaultProxy {
  readonly port: number
  /** Replies cut in `drop` mode so far: commands (or handshakes) applied whose answer nobody got. */
  readonly dropped: number
  /** Switches mode for every connection, open or new; replies already delayed still arrive, in order. */
  set(mode: ReplyMode): void
  close(): Promise<void>
}

/** Starts a proxy from a free loopback port to `127.0.0.1:targetPort`, forwarding. */
export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  let mode: ReplyMode = { kind: 'forward' }
  let dropped = 0
  const sockets = new Set<Socket>()
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }

  const server: Server = createServer((client) => {
    track(client)
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort })
    track(upstream)
    client.on('data', (chunk: Buffer) => upstream.write(chunk))
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    // Replies leave in arrival order: each waits for the one before it, and for its own delay.
    let previous = Promise.resolve()
    upstream.on('data', (chunk: Buffer) => {
      if (mode.kind === 'drop') {
        dropped++
        client.resetAndDestroy()
        upstream.resetAndDestroy()
        return
      }
      const releaseAt = Date.now() + (mode.kind === 'delay' ? mode.ms : 0)
      previous = previous.then(async () => {
        const wait = releaseAt - Date.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        if (!client.destroyed) client.write(chunk)
      })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    port,
    get dropped() {
      return dropped
    },
    set(next) {
      mode = next
    },
    async close() {
      for (const socket of sockets) socket.resetAndDestroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
