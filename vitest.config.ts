import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // Tests and the demo import the package by its own name, like a user; this condition maps the
    // subpath exports to the TypeScript sources so no build is needed first.
    conditions: ['idempotency-kit-source'],
  },
  ssr: {
    resolve: {
      conditions: ['idempotency-kit-source'],
      externalConditions: ['idempotency-kit-source'],
    },
  },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
})
