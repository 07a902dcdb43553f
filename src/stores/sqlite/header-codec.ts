// Response headers as one BLOB of ordered latin1 pairs: order, repeats and bytes ≥ 0x80 survive.

/** Header pairs as the Store contract carries them: latin1 strings, one char per byte. */
export type HeaderPairs = ReadonlyArray<readonly [name: string, value: string]>

/**
 * Each header is `u32 name length, name bytes, u32 value length, value bytes` (big-endian), in
 * order. Lengths make any byte legal inside a value, which a separator-based format could not.
 */
export function encodeHeaders(headers: HeaderPairs): Uint8Array {
  let size = 0
  for (const [name, value] of headers) size += 8 + name.length + value.length
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer)
  let offset = 0
  const put = (text: string): void => {
    view.setUint32(offset, text.length)
    offset += 4
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i)
      // A char above 0xFF is not a byte: storing it truncated would replay different bytes.
      if (code > 0xff) throw new RangeError(`Header text is not latin1 at index ${i}: ${text}`)
      bytes[offset++] = code
    }
  }
  for (const [name, value] of headers) {
    put(name)
    put(value)
  }
  return bytes
}

/** Inverse of `encodeHeaders`; null when the bytes are not a whole number of well-formed pairs. */
export function decodeHeaders(bytes: Uint8Array): Array<[string, string]> | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const headers: Array<[string, string]> = []
  let offset = 0
  const take = (): string | null => {
    if (offset + 4 > bytes.length) return null
    const length = view.getUint32(offset)
    offset += 4
    if (offset + length > bytes.length) return null
    let text = ''
    // Chunked so a long value never overflows the argument list of fromCharCode.
    for (let start = offset; start < offset + length; start += 8192) {
      const end = Math.min(start + 8192, offset + length)
      text += String.fromCharCode(...bytes.subarray(start, end))
    }
    offset += length
    return text
  }
  while (offset < bytes.length) {
    const name = take()
    const value = name === null ? null : take()
    if (name === null || value === null) return null
    headers.push([name, value])
  }
  return headers
}
