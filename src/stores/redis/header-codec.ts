// Binary-safe encoding of a response's ordered header pairs: length-prefixed latin1 bytes, no JSON.

/** Encodes `[name, value]` pairs as (u32 BE length, latin1 bytes) twice per pair, in order. */
export function encodeHeaders(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of headers) {
    for (const text of [name, value]) {
      // latin1 would silently keep only the low byte of a wider char: refuse instead of garbling.
      if (!isLatin1(text)) throw new RangeError(`header ${JSON.stringify(name)} is not latin1`)
      const bytes = Buffer.from(text, 'latin1')
      const length = Buffer.allocUnsafe(4)
      length.writeUInt32BE(bytes.length)
      parts.push(length, bytes)
    }
  }
  return Buffer.concat(parts)
}

/** Decodes what `encodeHeaders` wrote; null when the bytes are not such an encoding. */
export function decodeHeaders(bytes: Buffer): Array<[string, string]> | null {
  const pairs: Array<[string, string]> = []
  let at = 0
  const next = (): string | null => {
    if (at + 4 > bytes.length) return null
    const length = bytes.readUInt32BE(at)
    at += 4
    if (at + length > bytes.length) return null
    const text = bytes.toString('latin1', at, at + length)
    at += length
    return text
  }
  while (at < bytes.length) {
    const name = next()
    const value = next()
    if (name === null || value === null) return null
    pairs.push([name, value])
  }
  return pairs
}

function isLatin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false
  return true
}
