/** Which rendered outcomes are stored, released, or never stored (DESIGN §4.7). */

/** `store`: complete and replay it; `release`: tombstone, a retry runs again; `never`: release, and never replay it. */
export type StorageDecision = 'store' | 'release' | 'never'

/** Decides on the rendered status; `committed` is whether the handler called `lease.commit()`. */
export type StoragePolicy = (status: number, committed: boolean) => StorageDecision

// Answers that say "not now" rather than "no": freezing them for the retention would refuse a
// corrected retry for a day (a token refreshed after 401, a rate limit that passed).
const TRANSIENT = new Set([401, 403, 407, 408, 409, 423, 425, 429])

/** The default: before `commit()` transient 4xx and 5xx release; after it everything is stored; 304 and 206 never. */
export const defaultStoragePolicy: StoragePolicy = (status, committed) => {
  // 304 and 206 depend on conditional and Range headers the fingerprint does not cover.
  if (status === 304 || status === 206) return 'never'
  if (committed) return 'store'
  if (status >= 500 || TRANSIENT.has(status)) return 'release'
  return 'store'
}
