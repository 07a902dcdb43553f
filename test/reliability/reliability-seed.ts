// The reliability suite's randomness: one printed seed per file, replayed with RELIABILITY_SEED.

/** A 32-bit seed from `RELIABILITY_SEED`, or a fresh one; printed so a failing run can be replayed. */
export function reliabilitySeed(suite: string): number {
  const fromEnv = process.env.RELIABILITY_SEED
  const seed =
    fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0
  if (fromEnv !== undefined && fromEnv !== '' && !/^\d+$/.test(fromEnv)) {
    throw new Error(`RELIABILITY_SEED must be a non-negative integer, got ${fromEnv}`)
  }
  console.log(`[${suite}] seed ${seed}: replay with RELIABILITY_SEED=${seed}`)
  return seed
}

/** A deterministic generator of floats in [0, 1) (mulberry32): the same seed, the same plan. */
export function randomFrom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}
