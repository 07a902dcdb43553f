// Reading what the demo left in a store: the storage key of a client key, and polling until a record changes.
import { createHash } from 'node:crypto'

/** The engine's storage key (and `lease.key`) for a key in `scope`; the demo's scope is '' without Authorization. */
export function storageKey(key: string, scope = ''): string {
  return createHash('sha256').update(`${scope}\0${key}`).digest('hex')
}

/** Reads until `done` holds, every 20 ms; fails with the last value read after `timeoutMs`. */
export async function until<T>(
  what: string,
  read: () => T | Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
