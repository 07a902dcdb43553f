// Random identifiers shaped like the engine's: 64-hex storage keys and 128-bit owner tokens.

/** A random 64-hex storage key, as the engine makes (SHA-256 of scope and key). */
export function randomStorageKey(): string {
  return randomHex(32)
}

/** A random 128-bit owner token in hex, as the engine makes. */
export function randomToken(): string {
  return randomHex(16)
}

function randomHex(bytes: number): string {
  const buffer = crypto.getRandomValues(new Uint8Array(bytes))
  return Array.from(buffer, (byte) => byte.toString(16).padStart(2, '0')).join('')
}
