// The subjects a bench run compares: who guards the demo route, on which store, behind which framework.

/** One server configuration the harness spawns and loads. */
export interface Subject {
  /** Stable id, passed to the server process as BENCH_SUBJECT. */
  readonly id: string
  /** Who makes the route idempotent: `baseline` (nobody), `idempotency-kit`, `seed-design`, or a peer's name. */
  readonly subject: string
  /** The store it keeps records in, or `none`. */
  readonly store: 'none' | 'memory' | 'sqlite' | 'redis' | 'postgres'
  readonly framework: 'express' | 'fastify'
  /** The subject whose throughput this one is divided by (the same framework with no idempotency). */
  readonly baseline: string
}

/** Every subject, in the order a run measures them. */
export const SUBJECTS: readonly Subject[] = [
  { id: 'baseline', subject: 'baseline', store: 'none', framework: 'express', baseline: 'baseline' },
  // The same route with idempotency-kit's json() as its body parser and no idempotency: what every other Express
  // subject reads its body with, so their ratios measure the guard alone, not the parser (see docs/BENCHMARKS.md).
  {
    id: 'baseline-kit-json',
    subject: 'baseline (kit json())',
    store: 'none',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  {
    id: 'kit-memory',
    subject: 'idempotency-kit',
    store: 'memory',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  {
    id: 'kit-sqlite',
    subject: 'idempotency-kit',
    store: 'sqlite',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  { id: 'kit-redis', subject: 'idempotency-kit', store: 'redis', framework: 'express', baseline: 'baseline-kit-json' },
  // The same without ioredis's auto-pipelining (its default): what the README's advice to turn it on is worth.
  {
    id: 'kit-redis-plain',
    subject: 'idempotency-kit (no auto-pipelining)',
    store: 'redis',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  {
    id: 'kit-postgres',
    subject: 'idempotency-kit',
    store: 'postgres',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  { id: 'seed-redis', subject: 'seed-design', store: 'redis', framework: 'express', baseline: 'baseline-kit-json' },
  {
    id: 'node-idempotency-redis',
    subject: '@node-idempotency/core',
    store: 'redis',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  {
    id: 'powertools-redis',
    subject: '@aws-lambda-powertools/idempotency',
    store: 'redis',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  {
    id: 'express-idempotency-redis',
    subject: 'express-idempotency',
    store: 'redis',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
  { id: 'fastify-baseline', subject: 'baseline', store: 'none', framework: 'fastify', baseline: 'fastify-baseline' },
  {
    id: 'fastify-kit-memory',
    subject: 'idempotency-kit',
    store: 'memory',
    framework: 'fastify',
    baseline: 'fastify-baseline',
  },
]

/** Subjects the harness knows of but cannot measure here, with the reason (reported, never silently dropped). */
export const NOT_MEASURED: ReadonlyArray<{ readonly subject: string; readonly store: string; readonly why: string }> =
  []

/**
 * The kit taken apart, for `bench/ab.ts` only (a full run does not measure them): what each layer of a first request
 * costs on Express, measured against the layer below it.
 */
export const PROBES: readonly Subject[] = [
  // The adapter's capture and store-then-send with no engine: each request is captured, "stored" by a promise
  // that resolves at once, then sent. What the design's shape costs before any key is read.
  { id: 'probe-capture', subject: 'capture only', store: 'none', framework: 'express', baseline: 'baseline-kit-json' },
  // The whole kit on a store that keeps nothing: the engine (key, fingerprint, token, lease, deadlines) without
  // the memory store's map, heap and slabs.
  {
    id: 'probe-null-store',
    subject: 'idempotency-kit on a store that keeps nothing',
    store: 'none',
    framework: 'express',
    baseline: 'baseline-kit-json',
  },
]
