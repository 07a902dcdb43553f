/** Keeps the request bytes Fastify's own body parser reads, so the fingerprint is taken from what the client sent. */
import { pipeline, Transform } from 'node:stream'

/** The bytes seen so far; `complete` once the parser read the body to its end. */
export interface TappedBody {
  readonly chunks: Buffer[]
  complete: boolean
}

/**
 * Returns a stream to hand back from a `preParsing` hook: it passes every chunk on unchanged to the parser the
 * app configured (its limits, its errors, its JSON security) and keeps a copy in `tapped`.
 */
export function tapRawBody(payload: NodeJS.ReadableStream, tapped: TappedBody): Transform {
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      tapped.chunks.push(chunk)
      callback(null, chunk)
    },
    flush(callback) {
      tapped.complete = true
      callback()
    },
  })
  // An earlier hook that decompressed the body reports the encoded length; Fastify checks its limit on that.
  Object.defineProperty(tap, 'receivedEncodedLength', {
    get: () => (payload as { receivedEncodedLength?: number }).receivedEncodedLength,
  })
  // pipeline, not pipe: a client that aborts mid-body must error the tap, or the parser waits forever.
  pipeline(payload, tap, () => {})
  return tap
}
