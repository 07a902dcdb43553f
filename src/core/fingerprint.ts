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
  // The body first: a body that cannot be fingerprinted ends here, before anything is written.
  let tag: string
  let text: string | undefined
  let bytes: Uint8Array | undefined
  const body = input.body
  switch (body.kind) {
    case 'none':
      tag = 'none'
      break
    case 'parsed': {
      const canonical = canonicalizeValue(body.value, options)
      if (canonical.kind !== 'ok') return canonical.kind === 'too_deep' ? TOO_DEEP : INVALID
      tag = 'json'
      text = canonical.text
      break
    }
    case 'raw': {
      tag = 'raw'
      bytes = body.bytes
      if (!isJsonMediaType(input.mediaType)) break
      const decoded = decodeUtf8(body.bytes)
      // Not UTF-8: the body parser already judged these bytes; they are hashed as they are, not rejected.
      if (decoded === undefined) break
      const canonical = canonicalizeJson(decoded, options)
      if (canonical.kind === 'too_deep') return TOO_DEEP
      if (canonical.kind === 'ok') {
        tag = 'json'
        text = canonical.text
        bytes = undefined
      }
      break
    }
    default: {
      const unknown: never = body
      throw new TypeError(`unknown body kind ${String(unknown)}`)
    }
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
    w.field(tag)
    if (text !== undefined) w.field(text)
    else w.rawField(bytes ?? NO_BYTES)
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

/**
 * Writes length-prefixed fields into one growing buffer: one encode into place per string instead of a new
 * array per field and another for their concatenation. The same bytes as `TextEncoder.encode` (a lone
 * surrogate becomes U+FFFD either way).
 */
class FieldWriter {
  bytes: Uint8Array
  at = 0

  constructor(size: number) {
    this.bytes = new Uint8Array(size)
  }

  reserve(extra: number): void {
    const needed = this.at + extra
    if (needed <= this.bytes.length) return
    const grown = new Uint8Array(Math.max(needed, this.bytes.length * 2))
    grown.set(this.bytes.subarray(0, this.at))
    this.bytes = grown
  }

  /** Leaves room for a field's length; `close` fills it in. */
  open(): number {
    this.reserve(4)
    const start = this.at
    this.at += 4
    return start
  }

  /** Writes the field's byte length, a 4-byte big-endian integer, before it. */
  close(start: number): void {
    const length = this.at - start - 4
    if (length > 0xffffffff) throw new RangeError('a fingerprint field is larger than 4 GiB')
    const b = this.bytes
    b[start] = length >>> 24
    b[start + 1] = (length >>> 16) & 0xff
    b[start + 2] = (length >>> 8) & 0xff
    b[start + 3] = length & 0xff
  }

  /** Appends the UTF-8 bytes of `text`: short ASCII by hand, the rest by `encodeInto`. */
  string(text: string): void {
    // A UTF-16 code unit never takes more than 3 bytes (a pair: 4 bytes for 2 units).
    this.reserve(text.length * 3)
    let rest = text
    // Below this, a loop beats encodeInto's fixed cost (a view and a result object per call).
    if (text.length <= 16) {
      const b = this.bytes
      let at = this.at
      let i = 0
      for (; i < text.length; i++) {
        const c = text.charCodeAt(i)
        if (c >= 0x80) break
        b[at++] = c
      }
      this.at = at
      if (i === text.length) return
      rest = text.slice(i)
    }
    this.at += encoder.encodeInto(rest, this.bytes.subarray(this.at)).written
  }

  field(text: string): void {
    const start = this.open()
    this.string(text)
    this.close(start)
  }

  rawField(bytes: Uint8Array): void {
    if (bytes.length > 0xffffffff) throw new RangeError('a fingerprint field is larger than 4 GiB')
    const start = this.open()
    this.raw(bytes)
    this.close(start)
  }

  /** Appends bytes as they are (a field already length-prefixed, or a field's content). */
  raw(bytes: Uint8Array): void {
    const length = bytes.length
    this.reserve(length)
    if (length <= 64) {
      const b = this.bytes
      let at = this.at
      for (let i = 0; i < length; i++) b[at++] = bytes[i] as number
    } else {
      this.bytes.set(bytes, this.at)
    }
    this.at += length
  }
}

/** Kept between requests up to this size; a larger one (a big body) is dropped after use. */
const KEEP_BYTES = 1024 * 1024
let spare: FieldWriter | undefined = new FieldWriter(4096)

/** The reused writer, or a new one should a digest ever call back into fingerprinting while it is in use. */
function takeWriter(): FieldWriter {
  const w = spare ?? new FieldWriter(4096)
  spare = undefined
  w.at = 0
  return w
}

function giveBack(w: FieldWriter): void {
  if (w.bytes.length <= KEEP_BYTES) spare = w
}
