/** Keeps the request bytes Fastify's own body parser reads, so the fingerprint is taken from what the client sent. */

/** The bytes seen so far; `complete` once the parser read the body to its end. */
export interface TappedBody {
  /** The chunks in order; undefined once more than the limit arrived (the parser refuses such a body). */
  chunks: Buffer[] | undefined
  size: number
  complete: boolean
  /** Bytes kept at most: the route's body limit. */
  readonly limit: number
}

/** Where a tapped stream keeps its `TappedBody`: the listeners are shared, not a closure per request. */
const TAPPED = Symbol('idempotency-kit.tapped')

type Tapped = NodeJS.ReadableStream & { [TAPPED]?: TappedBody }

function onData(this: Tapped, chunk: Buffer | string): void {
  const tapped = this[TAPPED]
  if (tapped?.chunks === undefined) return
  const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
  tapped.size += buffer.byteLength
  if (tapped.size > tapped.limit) {
    // The parser answers 413; keeping the rest would buffer whatever a client chose to send.
    tapped.chunks = undefined
    untap(this)
    return
  }
  tapped.chunks.push(buffer)
}

function onEnd(this: Tapped): void {
  const tapped = this[TAPPED]
  if (tapped?.chunks !== undefined) tapped.complete = true
  untap(this)
}

function untap(stream: Tapped): void {
  stream.removeListener('data', onData)
  stream.removeListener('end', onEnd)
}

/**
 * Watches `payload` from a `preParsing` hook without replacing it: the parser the app configured (its limits,
 * its errors, its JSON security) reads the same stream, and each chunk it reads is kept in `tapped`.
 * `prependListener` is passive: unlike `on('data')` it does not start the flow, so no chunk can be emitted
 * before the parser listens (a read in paused mode emits 'data' too).
 */
export function tapRawBody(payload: NodeJS.ReadableStream, tapped: TappedBody): void {
  const stream = payload as Tapped
  stream[TAPPED] = tapped
  stream.prependListener('data', onData)
  stream.prependListener('end', onEnd)
}

/** The tapped bytes as one buffer, once the parser read them all; undefined otherwise. */
export function tappedBytes(tapped: TappedBody): Buffer | undefined {
  const { chunks } = tapped
  if (!tapped.complete || chunks === undefined) return undefined
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, tapped.size)
}
