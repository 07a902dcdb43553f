// The Node crypto provider: its hex digest is node:crypto's SHA-256, and its pooled randomness never repeats a draw.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { toHex } from './core/fingerprint.js'
import { nodeCrypto } from './node-crypto.js'

describe('nodeCrypto', () => {
  it('answers the same SHA-256 as bytes and as hex, for views into larger buffers too', () => {
    const whole = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff)
    for (const data of [new Uint8Array(0), whole, whole.subarray(3, 200), new TextEncoder().encode('abc')]) {
      const expected = createHash('sha256').update(data).digest('hex')
      expect(nodeCrypto.sha256Hex?.(data)).toBe(expected)
      expect(toHex(nodeCrypto.sha256(data))).toBe(expected)
    }
  })

  it('draws fresh bytes every time, across many refills of the pool, as hex or bytes', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 2_000; i++) {
      const hex = nodeCrypto.randomHex?.(16) as string
      expect(hex).toMatch(/^[0-9a-f]{32}$/)
      const bytes = nodeCrypto.randomBytes(16)
      expect(bytes).toHaveLength(16)
      seen.add(hex)
      seen.add(toHex(bytes))
    }
    expect(seen.size).toBe(4_000)
  })

  it('hands out bytes the caller owns: changing them changes no later draw', () => {
    const first = nodeCrypto.randomBytes(16)
    const copy = Uint8Array.from(first)
    first.fill(0)
    const later = Array.from({ length: 300 }, () => toHex(nodeCrypto.randomBytes(16)))
    expect(later).not.toContain('0'.repeat(32))
    expect(first.byteLength).toBe(16)
    expect(copy).not.toEqual(first)
  })

  it('serves large requests directly, at their full length', () => {
    expect(nodeCrypto.randomBytes(100_000)).toHaveLength(100_000)
    expect(nodeCrypto.randomHex?.(1_000)).toMatch(/^[0-9a-f]{2000}$/)
  })
})
