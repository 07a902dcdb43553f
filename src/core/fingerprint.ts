// The versioned request fingerprint: SHA-256 over method, URL, media type, canonical body and headers.

import { giveBack, takeWriter } from './byte-writer.js'
import { canonicalizeJsonInto, canonicalizeValue } from './canonical-json.js'

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
  for (let i = 0; i < bytes.length; i++) hex += HEX[bytes[i] as number]
  return hex
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'))
/** Fatal: bytes that are not UTF-8 are hashed as they are rather than read with replacement characters. */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The lower-cased `type/subtype` of a Content-Type value, without parameters; null when absent or empty. */
export function mediaTypeOf(contentType: string | undefined): string | null {
  if (contentType === undefined) return null
  if (contentType === lastContentType) return lastMediaType
  const type = parseMediaType(contentType)
  lastContentType = contentType
  lastMediaType = type
  return type
}

// Nearly every request of a route sends the same Content-Type: the last answer is kept.
let lastContentType: string | undefined
let lastMediaType: string | null = null

function parseMediaType(contentType: string): string | null {
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
  options: FingerprintOptions = DEFAULT_OPTIONS,
): FingerprintResult {
  return fingerprintRequestHex(input, (data) => toHex(sha256(data)), options)
}

/** A synchronous SHA-256 that answers lower-case hex (node:crypto's one-shot `hash` does, without a Buffer). */
export type Sha256Hex = (data: Uint8Array) => string

const DEFAULT_OPTIONS: FingerprintOptions = { maxDepth: DEFAULT_MAX_JSON_DEPTH }
const TOO_DEEP: FingerprintResult = { kind: 'too_deep' }
const INVALID: FingerprintResult = { kind: 'invalid' }

/** `fingerprintRequest` with a digest that answers hex: the same fingerprint, the engine's hot path. */
export function fingerprintRequestHex(
  input: FingerprintInput,
  sha256Hex: Sha256Hex,
  options: FingerprintOptions = DEFAULT_OPTIONS,
): FingerprintResult {
  // A parsed body first: one that cannot be fingerprinted ends here, before anything is written.
  const body = input.body
  let parsedText: string | undefined
  if (body.kind === 'parsed') {
    const canonical = canonicalizeValue(body.value, options)
    if (canonical.kind !== 'ok') return canonical.kind === 'too_deep' ? TOO_DEEP : INVALID
    parsedText = canonical.text
  }

  const w = takeWriter()
  try {
    w.raw(PREFIX_FIELD)
    w.field(input.method)
    w.field(input.url)
    if (input.mediaType === null) w.field('none')
    else {
      const start = w.open()
      w.string('type:')
      w.string(input.mediaType)
      w.close(start)
    }
    switch (body.kind) {
      case 'none':
        w.field('none')
        w.rawField(NO_BYTES)
        break
      case 'parsed':
        w.field('json')
        w.field(parsedText as string)
        break
      case 'raw': {
        const decoded = isJsonMediaType(input.mediaType) ? decodeUtf8(body.bytes) : undefined
        // Not JSON, or not UTF-8 (the body parser already judged these bytes): hashed as they are, not rejected.
        if (decoded !== undefined) {
          const tagAt = w.at
          w.field('json')
          const start = w.open()
          // The canonical bytes go straight into the field; a body that is no JSON after all is rewound.
          const outcome = canonicalizeJsonInto(decoded, options, w)
          if (outcome === 'too_deep') return TOO_DEEP
          if (outcome === 'ok') {
            w.close(start)
            break
          }
          w.at = tagAt
        }
        w.field('raw')
        w.rawField(body.bytes)
        break
      }
      default: {
        const unknown: never = body
        throw new TypeError(`unknown body kind ${String(unknown)}`)
      }
    }
    const count = input.headers.length
    w.field(count === 0 ? '0' : String(count))
    if (count > 0) {
      const headers = input.headers
        .map(([name, value]) => [name.toLowerCase(), value] as const)
        // Stable sort by name, so the order headers are configured in does not matter.
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      for (const [name, value] of headers) {
        w.field(name)
        w.field(value)
      }
    }
    return { kind: 'ok', fingerprint: `${FINGERPRINT_VERSION}:${sha256Hex(w.bytes.subarray(0, w.at))}` }
  } finally {
    giveBack(w)
  }
}

/** Hex SHA-256 of a string's UTF-8 bytes (the bytes `TextEncoder` gives), encoded into the reused buffer. */
export function sha256HexOfText(text: string, sha256Hex: Sha256Hex): string {
  const w = takeWriter()
  try {
    w.string(text)
    return sha256Hex(w.bytes.subarray(0, w.at))
  } finally {
    giveBack(w)
  }
}

/**
 * `sha256HexOfText(`${first}\0${second}`)` without building that string: the same bytes, written part by part
 * (the engine's storage key, scope then key, once per request).
 */
export function sha256HexOfPair(first: string, second: string, sha256Hex: Sha256Hex): string {
  const w = takeWriter()
  try {
    w.string(first)
    w.byte(0)
    w.string(second)
    return sha256Hex(w.bytes.subarray(0, w.at))
  } finally {
    giveBack(w)
  }
}

const NO_BYTES = new Uint8Array(0)
const PREFIX = encoder.encode(`idempotency-kit fingerprint ${FINGERPRINT_VERSION}`)
/** The first field, its length included: the same for every request. */
const PREFIX_FIELD = new Uint8Array(4 + PREFIX.length)
new DataView(PREFIX_FIELD.buffer).setUint32(0, PREFIX.length)
PREFIX_FIELD.set(PREFIX, 4)

/** The UTF-8 text of `bytes`, or undefined when they are not UTF-8. */
function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes)
  } catch {
    return undefined
  }
}
