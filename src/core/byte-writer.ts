/** One growing byte buffer, reused between requests: the fingerprint's fields and the canonical JSON go into it. */

const encoder = new TextEncoder()

/**
 * Writes bytes and length-prefixed fields into one growing buffer: one encode into place per string instead of a
 * new array per field and another for their concatenation. The same bytes as `TextEncoder.encode` (a lone
 * surrogate becomes U+FFFD either way).
 */
export class ByteWriter {
  bytes: Uint8Array
  at = 0
  /** Set by writers that report how much they wrote (canonicalizeJsonInto). */
  written = 0

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
    // ASCII by hand: keys, names and short values are ASCII, and a loop beats encodeInto's fixed cost (a view and
    // a result object per call) well past the length of a 64-character hex key.
    if (text.length <= 256) {
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

  /** Appends one byte (an ASCII character code). */
  byte(c: number): void {
    this.reserve(1)
    this.bytes[this.at++] = c
  }

  /** Appends `text[from, end)`, which the caller knows to be ASCII. */
  ascii(text: string, from: number, end: number): void {
    this.reserve(end - from)
    const b = this.bytes
    let at = this.at
    for (let i = from; i < end; i++) b[at++] = text.charCodeAt(i)
    this.at = at
  }

  /** Appends the UTF-8 bytes of `text[from, end)`, which holds no surrogate code unit. */
  noSurrogates(text: string, from: number, end: number): void {
    if (end - from > 64) {
      this.string(text.slice(from, end))
      return
    }
    this.reserve((end - from) * 3)
    const b = this.bytes
    let at = this.at
    for (let i = from; i < end; i++) {
      const c = text.charCodeAt(i)
      if (c < 0x80) {
        b[at++] = c
      } else if (c < 0x800) {
        b[at++] = 0xc0 | (c >> 6)
        b[at++] = 0x80 | (c & 0x3f)
      } else {
        b[at++] = 0xe0 | (c >> 12)
        b[at++] = 0x80 | ((c >> 6) & 0x3f)
        b[at++] = 0x80 | (c & 0x3f)
      }
    }
    this.at = at
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
    this.bytes.set(bytes, this.at)
    this.at += length
  }
}

/** Kept between requests up to this size; a larger one (a big body) is dropped after use. */
const KEEP_BYTES = 1024 * 1024
let spare: ByteWriter | undefined = new ByteWriter(4096)

/** The reused writer, or a new one should a digest ever call back into fingerprinting while it is in use. */
export function takeWriter(): ByteWriter {
  const w = spare ?? new ByteWriter(4096)
  spare = undefined
  w.at = 0
  return w
}

export function giveBack(w: ByteWriter): void {
  if (w.bytes.length <= KEEP_BYTES) spare = w
}
