// A loopback HTTP/1.1 proxy that can lose a response after the server did the work, or rewrite response heads.
import { createConnection, createServer, type Socket } from 'node:net'

/** A proxy in front of a real server; the client's requests always reach it. */
export interface LossyProxy {
  readonly url: string
  /** Connections accepted so far. */
  readonly connections: number
  /** Every `Idempotency-Key` value that went through, in order: one per request forwarded. */
  keysSeen(): string[]
  /**
   * Loses the responses to the next `n` requests: each is forwarded, and the client's connection is reset
   * as soon as the server starts answering, so the work is done and the answer never arrives.
   */
  loseNextResponses(n: number): void
  /** Rewrites the head (status line and headers) of every response from now on; undefined to stop. */
  rewriteHeads(rewrite: ((head: string) => string) | undefined): void
  close(): Promise<void>
}

const REQUEST_LINE = /^[A-Z]+ \S+ HTTP\/1\.[01]\r\n/gm
const KEY_LINE = /^idempotency-key:[ \t]*(.*?)[ \t]*\r$/gim

/** Starts a proxy from a free loopback port to `127.0.0.1:targetPort`. */
export async function startLossyProxy(targetPort: number): Promise<LossyProxy> {
  const sockets = new Set<Socket>()
  const sent: string[] = []
  let toLose = 0
  let rewrite: ((head: string) => string) | undefined
  let connections = 0

  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }

  const server = createServer((client) => {
    connections++
    const index = connections - 1
    sent[index] = ''
    track(client)
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort })
    track(upstream)
    let loseThisResponse = false
    client.on('data', (chunk: Buffer) => {
      sent[index] += chunk.toString('latin1')
      // Decided when the request arrives, so a later loseNextResponses() never reaches back to it.
      const requests = chunk.toString('latin1').match(REQUEST_LINE)?.length ?? 0
      if (requests > 0 && toLose > 0) {
        toLose--
        loseThisResponse = true
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (loseThisResponse) {
        // The engine stores before it sends, so the first byte back means the outcome is kept.
        client.resetAndDestroy()
        upstream.destroy()
        return
      }
      const text = chunk.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (rewrite !== undefined && text.startsWith('HTTP/1.') && end !== -1) {
        client.write(Buffer.from(rewrite(text.slice(0, end)) + text.slice(end), 'latin1'))
      } else {
        client.write(chunk)
      }
    })
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0

  return {
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return connections
    },
    keysSeen: () => sent.flatMap((text) => [...text.matchAll(KEY_LINE)].map((match) => match[1] as string)),
    loseNextResponses(n) {
      toLose = n
    },
    rewriteHeads(next) {
      rewrite = next
    },
    close() {
      for (const socket of sockets) socket.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
