// The pure-TypeScript SHA-256 against node:crypto: FIPS vectors, every length around the padding edges, random inputs.
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { toHex } from './fingerprint.js'
import { sha256 } from './sha256.js'
import { webCrypto } from './web-crypto.js'

const reference = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')
const ascii = (text: string) => new TextEncoder().encode(text)

describe('sha256', () => {
  it('matches the FIPS 180-4 examples', () => {
    expect(toHex(sha256(ascii('')))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(toHex(sha256(ascii('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(toHex(sha256(ascii('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    )
  })

  it('matches node:crypto for every length from 0 to 300 bytes (all padding cases)', () => {
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff)
    for (let n = 0; n <= 300; n++)
      expect(toHex(sha256(bytes.subarray(0, n))), `length ${n}`).toBe(reference(bytes.subarray(0, n)))
  })

  it('matches node:crypto on random inputs, including views into a larger buffer', () => {
    const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
    // biome-ignore lint/suspicious/noConsole: a randomised test prints its seed
    console.log(`sha256 property seed: ${seed} (rerun with FUZZ_SEED=${seed})`)
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat(16), (data, skip) => {
        const padded = new Uint8Array(data.byteLength + skip + 3)
        padded.set(data, skip)
        const view = padded.subarray(skip, skip + data.byteLength)
        expect(toHex(sha256(view))).toBe(reference(data))
      }),
      { seed, numRuns: 300 },
    )
  })

  it('matches node:crypto on a 3 MiB input', () => {
    const big = webCrypto.randomBytes(3 * 1024 * 1024 - 17)
    expect(toHex(sha256(big))).toBe(reference(big))
  })
})

describe('webCrypto', () => {
  it('gives fresh random bytes of the asked length', () => {
    const a = webCrypto.randomBytes(16)
    const b = webCrypto.randomBytes(16)
    expect(a.byteLength).toBe(16)
    expect(toHex(a)).not.toBe(toHex(b))
    // Beyond getRandomValues' 65,536-byte limit, and not left zero at the end.
    const big = webCrypto.randomBytes(200_000)
    expect(big.byteLength).toBe(200_000)
    expect(big.subarray(150_000).some((byte) => byte !== 0)).toBe(true)
  })
})
