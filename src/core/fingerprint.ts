// The versioned request fingerprint: SHA-256 over method, URL, media type, canonical body and headers.

import { canonicalizeJson, canonicalizeValue } from './canonical-json.js'

/** A synchronous SHA-256, injected so the core needs no `node:` module. */
export type Sha256 = (data: Uint8Array) => Uint8Array

/** Bumped whenever the encoding below changes: a new version never equals an old fingerprint. */
export const FINGERPRINT_VERSION = 'v1'

/** The request body as the adapter has it: absent, its raw bytes, or only a parsed value. */
export type FingerprintBody =
  | { readonly kind: 'none' }
  | { readonly kind: 'raw'; readonly bytes: Uint8Array }
  | { readonly kind: 'parsed'; readonly value: unknown }

/** What a fingerprint covers. */
export interface FingerprintInput {
  readonly method: string
  /** Path with query, as received (Express `originalUrl`, not the router-relative `url`). */
  readonly url: string
  /** Lower-cased `type/subtype` without parameters, or null when there is no body. */
  readonly mediaType: string | null
  readonly body: FingerprintBody
  /** Configured headers as `[name, value]`; names are compared lower-cased. */
  readonly headers: ReadonlyArray<readonly [string, string]>
}

/** Limits applied while fingerprinting. */
export interface FingerprintOptions {
  readonly maxDepth: number
}

/** The fingerprint, or why the body cannot have one. */
export type FingerprintResult =
  | { readonly kind: 'ok'; readonly fingerprint: string }
  | { readonly kind: 'too_deep' }
  | { readonly kind: 'invalid' }

/** The default cap on JSON nesting depth when fingerprinting. */
export const DEFAULT_MAX_JSON_DEPTH = 128

const encoder = new TextEncoder()

/** Lower-case hexadecimal of some bytes. */
export function toHex(bytes: Uint8Array): string {
  let hex = ''
  for (const byte of bytes) hex += HEX[byte]
  return hex
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'))
/** Fatal: bytes that are not UTF-8 are hashed as they are rather than read with replacement characters. */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The lower-cased `type/subtype` of a Content-Type value, without parameters; null when absent or empty. */
export function mediaTypeOf(contentType: string | undefined): string | null {
  if (contentType === undefined) return null
  const semicolon = contentType.indexOf(';')
  const type = (semicolon < 0 ? contentType : contentType.slice(0, semicolon))
    .replace(/^[ \t]+|[ \t]+$/g, '')
    .toLowerCase()
  return type === '' ? null : type
}

/** Whether a media type is JSON: `application/json` or any `type/subtype+json` (RFC 6839). */
export function isJsonMediaType(mediaType: string | null): boolean {
  if (mediaType === null) return false
  if (mediaType === 'application/json') return true
  const slash = mediaType.indexOf('/')
  return slash > 0 && mediaType.endsWith('+json') && mediaType.length - slash > '/+json'.length
}

/**
 * Fingerprints a request: every field is length-prefixed, so no split of bytes between method, URL,
 * media type, body and headers can collide with another.
 *
 * @example
 * fingerprintRequest(input, (data) => createHash('sha256').update(data).digest(), { maxDepth: 128 })
 */
export function fingerprintRequest(
  input: FingerprintInput,
  sha256: Sha256,
  options: FingerprintOptions = { maxDepth: DEFAULT_MAX_JSON_DEPTH },
): FingerprintResult {
  const body = encodeBody(input.body, input.mediaType, options)
  if (body.kind !== 'ok') return body

  const headers = input.headers
    .map(([name, value]) => [name.toLowerCase(), value] as const)
    // Stable sort by name, so the order headers are configured in does not matter.
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))

  const fields: Uint8Array[] = [
    encoder.encode(`idempotency-kit fingerprint ${FINGERPRINT_VERSION}`),
    encoder.encode(input.method),
    encoder.encode(input.url),
    encoder.encode(input.mediaType === null ? 'none' : `type:${input.mediaType}`),
    encoder.encode(body.tag),
    body.bytes,
    encoder.encode(String(headers.length)),
  ]
  for (const [name, value] of headers) fields.push(encoder.encode(name), encoder.encode(value))
  return { kind: 'ok', fingerprint: `${FINGERPRINT_VERSION}:${toHex(sha256(lengthPrefixed(fields)))}` }
}

type EncodedBody =
  | { readonly kind: 'ok'; readonly tag: string; readonly bytes: Uint8Array }
  | { readonly kind: 'too_deep' }
  | { readonly kind: 'invalid' }

const NO_BYTES = new Uint8Array(0)

function encodeBody(body: FingerprintBody, mediaType: string | null, options: FingerprintOptions): EncodedBody {
  switch (body.kind) {
    case 'none':
      return { kind: 'ok', tag: 'none', bytes: NO_BYTES }
    case 'parsed': {
      const canonical = canonicalizeValue(body.value, options)
      if (canonical.kind !== 'ok') return canonical
      return { kind: 'ok', tag: 'json', bytes: encoder.encode(canonical.text) }
    }
    case 'raw': {
      if (!isJsonMediaType(mediaType)) return { kind: 'ok', tag: 'raw', bytes: body.bytes }
      let text: string
      try {
        text = utf8.decode(body.bytes)
      } catch {
        // The body parser already judged these bytes; they are hashed as they are, not rejected.
        return { kind: 'ok', tag: 'raw', bytes: body.bytes }
      }
      const canonical = canonicalizeJson(text, options)
      switch (canonical.kind) {
        case 'ok':
          return { kind: 'ok', tag: 'json', bytes: encoder.encode(canonical.text) }
        case 'invalid':
          return { kind: 'ok', tag: 'raw', bytes: body.bytes }
        case 'too_deep':
          return canonical
        default: {
          const unknown: never = canonical
          throw new TypeError(`unknown canonical result ${String(unknown)}`)
        }
      }
    }
    default: {
      const unknown: never = body
      throw new TypeError(`unknown body kind ${String(unknown)}`)
    }
  }
}

/** Concatenates fields, each preceded by its byte length as a 4-byte big-endian integer. */
function lengthPrefixed(fields: readonly Uint8Array[]): Uint8Array {
  let total = 0
  for (const field of fields) {
    if (field.length > 0xffffffff) throw new RangeError('a fingerprint field is larger than 4 GiB')
    total += 4 + field.length
  }
  const out = new Uint8Array(total)
  const view = new DataView(out.buffer)
  let offset = 0
  for (const field of fields) {
    view.setUint32(offset, field.length)
    out.set(field, offset + 4)
    offset += 4 + field.length
  }
  return out
}
