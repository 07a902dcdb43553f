// The published shape: the build succeeds, every subpath export loads from dist/ the way a user's Node resolves it,
// and the stores find their Lua and SQL files beside them.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

const root = new URL('../../', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { exports: Record<string, unknown> }

describe('the package', () => {
  it('builds and every subpath export loads from dist with no custom condition', () => {
    execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' })
    const subpaths = Object.keys(pkg.exports)
      .filter((s) => s !== './package.json')
      .map((s) => (s === '.' ? 'idempotency-kit' : `idempotency-kit/${s.slice(2)}`))
    const script = `
      const names = ${JSON.stringify(subpaths)}
      const out = {}
      for (const name of names) out[name] = Object.keys(await import(name)).sort()
      const { readFileSync } = await import('node:fs')
      const { fileURLToPath } = await import('node:url')
      out.lua = readFileSync(fileURLToPath(import.meta.resolve('idempotency-kit/redis').replace(/index\\.js$/, 'lua/begin.lua')), 'utf8').length > 0
      out.sql = readFileSync(fileURLToPath(import.meta.resolve('idempotency-kit/postgres').replace(/index\\.js$/, 'sql/begin.sql')), 'utf8').length > 0
      out.resolved = import.meta.resolve('idempotency-kit')
      console.log(JSON.stringify(out))
    `
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' }),
    ) as Record<string, unknown>
    expect(out.resolved).toMatch(/\/dist\/index\.js$/)
    expect(out['idempotency-kit']).toEqual(expect.arrayContaining(['createIdempotency', 'MemoryStore']))
    expect(out['idempotency-kit/express']).toEqual(['idempotency', 'json', 'keepRawBody'])
    expect(out['idempotency-kit/redis']).toEqual(
      expect.arrayContaining(['RedisStore', 'ioredisClient', 'nodeRedisClient']),
    )
    expect(out['idempotency-kit/postgres']).toEqual(expect.arrayContaining(['PostgresStore', 'migrate']))
    expect(out['idempotency-kit/sqlite']).toEqual(expect.arrayContaining(['SqliteStore', 'openSqliteStore']))
    expect(out['idempotency-kit/testing']).toEqual(expect.arrayContaining(['describeStoreContract']))
    expect(out['idempotency-kit/encryption']).toEqual(expect.arrayContaining(['encryptedStore']))
    expect(out['idempotency-kit/web']).toEqual(expect.arrayContaining(['createIdempotency', 'MemoryStore']))
    for (const adapter of ['fastify', 'hono', 'koa']) expect(out[`idempotency-kit/${adapter}`]).toContain('idempotency')
    expect(out['idempotency-kit/nestjs']).toEqual(expect.arrayContaining(['Idempotent', 'IdempotencyModule']))
    expect(out['idempotency-kit/client']).toEqual(expect.arrayContaining(['createIdempotentFetch']))
    expect(out['idempotency-kit'] as string[]).toContain('idempotent')
    expect(out.lua).toBe(true)
    expect(out.sql).toBe(true)
  }, 120_000)

  it('type-checks the sources, tests, demo and benchmarks under strict settings', () => {
    const result = (() => {
      try {
        execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], {
          cwd: root,
          encoding: 'utf8',
        })
        return ''
      } catch (error) {
        return String((error as { stdout?: string }).stdout ?? error)
      }
    })()
    expect(result).toBe('')
  }, 120_000)
})
