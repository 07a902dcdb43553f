// Bad Idempotency-Key headers are refused with 400 problem+json before anything runs; both key forms are one key.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Charge } from '../../examples/payments/gateway.js'
import { charge, charges, type InProcessDemo, problemOf, startDemo } from '../support/http.js'

describe('bad idempotency keys', () => {
  let demo: InProcessDemo
  beforeAll(async () => {
    demo = await startDemo()
  })
  afterAll(() => demo.close())

  it('a missing key is 400 IDEMPOTENCY_KEY_REQUIRED and charges nothing', async () => {
    const before = await charges(demo.url)
    const res = await charge(demo.url, undefined)
    expect(res.status, res.body.toString()).toBe(400)
    expect(problemOf(res).error).toBe('IDEMPOTENCY_KEY_REQUIRED')
    expect((await charges(demo.url)).attempts).toBe(before.attempts)
  })

  const invalid: ReadonlyArray<readonly [string, ReadonlyArray<readonly [string, string]>]> = [
    ['256 characters', [['Idempotency-Key', 'k'.repeat(256)]]],
    ['256 characters, quoted', [['Idempotency-Key', `"${'k'.repeat(256)}"`]]],
    ['empty', [['Idempotency-Key', '']]],
    ['an empty quoted string', [['Idempotency-Key', '""']]],
    [
      'two header lines (joined "a, b")',
      [
        ['Idempotency-Key', `a-${randomUUID()}`],
        ['Idempotency-Key', `b-${randomUUID()}`],
      ],
    ],
    ['an escape other than \\" and \\\\', [['Idempotency-Key', '"ab\\ncd"']]],
    ['an unterminated quoted string', [['Idempotency-Key', '"abc']]],
    ['junk after the quoted string', [['Idempotency-Key', '"abc"def']]],
    ['a space inside the bare form', [['Idempotency-Key', 'ab cd']]],
    ['a non-ASCII character', [['Idempotency-Key', 'caf\u00e9']]],
  ]
  for (const [what, headers] of invalid) {
    it(`${what}: 400 INVALID_IDEMPOTENCY_KEY, the gateway not called`, async () => {
      const before = await charges(demo.url)
      // Sent without our own key: `charge(url, undefined, …)` adds only these header lines.
      const res = await charge(demo.url, undefined, undefined, headers)
      expect(res.status, res.body.toString()).toBe(400)
      expect(problemOf(res).error).toBe('INVALID_IDEMPOTENCY_KEY')
      expect(res.header('idempotency-cached')).toBeUndefined()
      expect((await charges(demo.url)).attempts).toBe(before.attempts)
    })
  }

  it('255 characters is the longest key accepted', async () => {
    const res = await charge(demo.url, randomUUID().replaceAll('-', '').padEnd(255, 'k'))
    expect(res.status, res.body.toString()).toBe(200)
  })

  it('a repeated header line is refused even when both lines carry the same key', async () => {
    const key = randomUUID()
    const res = await charge(demo.url, undefined, undefined, [
      ['Idempotency-Key', key],
      ['Idempotency-Key', key],
    ])
    expect(res.status).toBe(400)
    expect(problemOf(res).error).toBe('INVALID_IDEMPOTENCY_KEY')
  })

  const sameKey: ReadonlyArray<readonly [string, (k: string) => string, (k: string) => string]> = [
    ['"abc" and abc', (k) => `"${k}"`, (k) => k],
    ['abc and "abc";v=1 (parameters ignored)', (k) => k, (k) => `"${k}";v=1`],
    ['"a\\\\b" and a\\b (the escape unescaped)', (k) => `"${k}\\\\x"`, (k) => `${k}\\x`],
  ]
  for (const [what, first, second] of sameKey) {
    it(`${what} are one key: the second is a replay`, async () => {
      const key = randomUUID()
      const a = await charge(demo.url, first(key))
      expect(a.status, a.body.toString()).toBe(200)
      expect(a.header('idempotency-cached')).toBe('false')
      const before = await charges(demo.url)
      const b = await charge(demo.url, second(key))
      expect(b.status, b.body.toString()).toBe(200)
      expect(b.header('idempotent-replayed')).toBe('true')
      expect(b.body.equals(a.body)).toBe(true)
      expect((b.json() as Charge).id).toBe((a.json() as Charge).id)
      expect((await charges(demo.url)).attempts).toBe(before.attempts)
    })
  }
})
