// Unit tests for Idempotency-Key parsing: bare and RFC 9651 sf-string forms.
import { describe, expect, it } from 'vitest'
import { MAX_IDEMPOTENCY_KEY_LENGTH, parseIdempotencyKey } from './key.js'

const ok = (key: string) => ({ kind: 'ok', key })
const kindOf = (value: string | undefined) => parseIdempotencyKey(value).kind

describe('parseIdempotencyKey', () => {
  it('reads a missing header as missing and an empty one as invalid', () => {
    expect(parseIdempotencyKey(undefined)).toEqual({ kind: 'missing' })
    expect(kindOf('')).toBe('invalid')
  })

  it('accepts the bare form of visible ASCII', () => {
    expect(parseIdempotencyKey('abc')).toEqual(ok('abc'))
    expect(parseIdempotencyKey('8e03978e-40d5-43e8-bc93-6894a57f9324')).toEqual(
      ok('8e03978e-40d5-43e8-bc93-6894a57f9324'),
    )
    const visible = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))
      .join('')
      .replace('"', '')
    expect(parseIdempotencyKey(visible)).toEqual(ok(visible))
    // A quote that does not open the value is an ordinary character of the bare form.
    expect(parseIdempotencyKey('ab"c')).toEqual(ok('ab"c'))
  })

  it('rejects spaces, controls and non-ASCII in the bare form', () => {
    for (const value of ['a b', ' abc', 'abc ', 'a\tb', 'a\u0000b', 'a\u007fb', 'caf\u00e9', 'k\u{1f600}']) {
      expect(kindOf(value), JSON.stringify(value)).toBe('invalid')
    }
  })

  it('rejects two header lines joined by Node as `a, b`', () => {
    expect(kindOf('abc, def')).toBe('invalid')
    expect(kindOf('"abc", "def"')).toBe('invalid')
    expect(kindOf('abc,def')).toEqual('ok') // no space: one key of visible ASCII
  })

  it('accepts 255 characters and rejects 256, in both forms', () => {
    expect(MAX_IDEMPOTENCY_KEY_LENGTH).toBe(255)
    const max = 'k'.repeat(255)
    expect(parseIdempotencyKey(max)).toEqual(ok(max))
    expect(parseIdempotencyKey(`"${max}"`)).toEqual(ok(max))
    expect(kindOf('k'.repeat(256))).toBe('invalid')
    expect(kindOf(`"${'k'.repeat(256)}"`)).toBe('invalid')
    // The limit is on the unescaped content: 254 + one escaped quote is 255 characters.
    expect(parseIdempotencyKey(`"${'k'.repeat(254)}\\""`)).toEqual(ok(`${'k'.repeat(254)}"`))
  })

  it('gives the same key for "abc" and abc', () => {
    expect(parseIdempotencyKey('"abc"')).toEqual(parseIdempotencyKey('abc'))
  })

  it('unescapes \\" and \\\\ in the sf-string form', () => {
    expect(parseIdempotencyKey('"a\\"b"')).toEqual(ok('a"b'))
    expect(parseIdempotencyKey('"a\\\\b"')).toEqual(ok('a\\b'))
    expect(parseIdempotencyKey('"\\\\\\""')).toEqual(ok('\\"'))
  })

  it('rejects any other escape, an unterminated string and characters outside %x20-7E', () => {
    for (const value of [
      '"a\\nb"',
      '"a\\tb"',
      '"a\\u0041"',
      '"a\\',
      '"abc',
      '"abc\\"',
      '"a\tb"',
      '"caf\u00e9"',
      '"a\u007fb"',
    ]) {
      expect(kindOf(value), JSON.stringify(value)).toBe('invalid')
    }
  })

  it('rejects an empty or space-holding quoted key', () => {
    expect(kindOf('""')).toBe('invalid')
    expect(kindOf('"a b"')).toBe('invalid')
    expect(kindOf('" "')).toBe('invalid')
  })

  it('ignores parameters of valid sf syntax', () => {
    for (const value of [
      '"abc";v=1',
      '"abc";a=1;b',
      '"abc"; a=1',
      '"abc";a=-1.5;b=?0;c=tok/en:x;d="s\\"q";e=:cHJldGVuZA==:;f=@1659578233;g=%"f%c3%bc"',
      '"abc";*x_y.z-1=*',
    ]) {
      expect(parseIdempotencyKey(value), value).toEqual(ok('abc'))
    }
  })

  it('rejects malformed parameters', () => {
    for (const value of [
      '"abc";',
      '"abc";A=1',
      '"abc";1a=1',
      '"abc";a=',
      '"abc";a=?2',
      '"abc";a="x',
      '"abc";a=1.2345',
      '"abc";a=1234567890123456',
      '"abc";a=1.',
      '"abc";a=:abc',
      '"abc";a=%"%C3%BC"',
      '"abc";a=%"%ff"',
      '"abc";a=@1.5',
      '"abc" ;a=1',
    ]) {
      expect(kindOf(value), value).toBe('invalid')
    }
  })

  it('allows leading and trailing SP around an sf item, nothing else after it', () => {
    expect(parseIdempotencyKey('  "abc"  ')).toEqual(ok('abc'))
    expect(parseIdempotencyKey(' "abc";v=1 ')).toEqual(ok('abc'))
    for (const value of ['"abc"x', '"abc"\t', '"abc" x', '"abc","def"', '"abc"""']) {
      expect(kindOf(value), value).toBe('invalid')
    }
  })

  it('never echoes the key in its reason', () => {
    const secret = 'sk_live_secret value'
    const result = parseIdempotencyKey(secret)
    expect(result.kind).toBe('invalid')
    if (result.kind === 'invalid') {
      expect(result.reason).not.toContain('sk_live')
      expect(result.reason).toMatch(/^[A-Z].*\.$/)
    }
  })
})
