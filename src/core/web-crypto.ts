/** The crypto provider for any Web-standard runtime: `crypto.getRandomValues` and the synchronous SHA-256. */
import type { CryptoProvider } from './options.js'
import { sha256 } from './sha256.js'

/** SHA-256 in plain TypeScript and randomness from the global Web Crypto; imports no `node:` module. */
export const webCrypto: CryptoProvider = {
  sha256,
  randomBytes(length) {
    const bytes = new Uint8Array(length)
    // getRandomValues refuses more than 65,536 bytes per call.
    for (let i = 0; i < length; i += 65_536) globalThis.crypto.getRandomValues(bytes.subarray(i, i + 65_536))
    return bytes
  },
}
