// Unit tests for the request fingerprint: what it covers, what it ignores, and its encoding.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  FINGERPRINT_VERSION,
  type FingerprintBody,
  type FingerprintInput,
  fingerprintRequest,
  isJsonMediaType,
  mediaTypeOf,
  type Sha256,
  toHex,
} from './fingerprint.js'

const sha256: Sha256 = (data) => createHash('sha256').update(data).digest()
const utf8 = (text: string) => new TextEncoder().encode(text)

const base: FingerprintInput = {
  method: 'POST',
  url: '/api/payments/charge?x=1',
  mediaType: 'application/json',
  body: { kind: 'raw', bytes: utf8('{"amount":100,"customerId":"cus_1"}') },
  headers: [],
}

const fingerprint = (input: Partial<FingerprintInput>, maxDepth = 64): string => {
  const result = fingerprintRequest({ ...base, ...input }, sha256, { maxDepth })
  if (result.kind !== 'ok') throw new Error(`expected a fingerprint, got ${result.kind}`)
  return result.fingerprint
}
const raw = (text: string): FingerprintBody => ({ kind: 'raw', bytes: utf8(text) })
const parsed = (text: string): FingerprintBody => ({ kind: 'parsed', value: JSON.parse(text) })

describe('fingerprintRequest', () => {
  it('is versioned, deterministic hex SHA-256', () => {
    const value = fingerprint({})
    expect(FINGERPRINT_VERSION).toBe('v1')
    expect(value).toMatch(/^v1:[0-9a-f]{64}$/)
    expect(fingerprint({})).toBe(value)
  })

  it('gives raw and parsed bodies of ordinary JSON the same fingerprint', () => {
    const texts = [
      '{"amount":100,"customerId":"cus_1","currency":"usd"}',
      '{ "b": [1, 2.50, -0, 1e21, 0.000001, "\\u00e9\\ud800"], "a": {"__proto__": null}, "c": true }',
      '[]',
      '"text"',
      '12.5',
      'null',
    ]
    for (const text of texts) {
      expect(fingerprint({ body: parsed(text) }), text).toBe(fingerprint({ body: raw(text) }))
    }
  })

  it('ignores member order and whitespace', () => {
    expect(fingerprint({ body: raw('{"a":1,"b":[1,2]}') })).toBe(
      fingerprint({ body: raw(' {\n "b" : [ 1 , 2 ] ,\t"a":1.0 }\r\n') }),
    )
  })

  it('changes with the method, url, query, media type, body and headers', () => {
    const reference = fingerprint({})
    const variants: Array<Partial<FingerprintInput>> = [
      { method: 'PUT' },
      { url: '/api/refunds/charge?x=1' },
      { url: '/api/payments/charge?x=2' },
      { url: '/api/payments/charge' },
      { mediaType: 'application/merge-patch+json' },
      { body: raw('{"amount":101,"customerId":"cus_1"}') },
      { body: raw('{"amount":100,"customerId":"cus_1","extra":null}') },
      { body: { kind: 'none' }, mediaType: null },
      { headers: [['x-tenant', 'a']] },
    ]
    const seen = new Set([reference])
    for (const variant of variants) {
      const value = fingerprint(variant)
      expect(seen.has(value), JSON.stringify(variant)).toBe(false)
      seen.add(value)
    }
  })

  it('distinguishes the configured header values and ignores their configured order', () => {
    const a = fingerprint({
      headers: [
        ['x-a', '1'],
        ['x-b', '2'],
      ],
    })
    expect(
      fingerprint({
        headers: [
          ['x-b', '2'],
          ['x-a', '1'],
        ],
      }),
    ).toBe(a)
    expect(
      fingerprint({
        headers: [
          ['X-A', '1'],
          ['X-B', '2'],
        ],
      }),
    ).toBe(a)
    expect(
      fingerprint({
        headers: [
          ['x-a', '2'],
          ['x-b', '1'],
        ],
      }),
    ).not.toBe(a)
    expect(
      fingerprint({
        headers: [
          ['x-a', '1'],
          ['x-b', ''],
        ],
      }),
    ).not.toBe(a)
  })

  it('cannot be collided by moving bytes between fields', () => {
    const body = { kind: 'none' } as const
    const a = fingerprint({ method: 'POST', url: '/ab', body, mediaType: null })
    expect(fingerprint({ method: 'POST/', url: 'ab', body, mediaType: null })).not.toBe(a)
    expect(fingerprint({ method: 'POS', url: 'T/ab', body, mediaType: null })).not.toBe(a)
    const h = fingerprint({ headers: [['x-a', 'bc']] })
    expect(fingerprint({ headers: [['x-ab', 'c']] })).not.toBe(h)
    expect(
      fingerprint({
        headers: [
          ['x-a', ''],
          ['bc', ''],
        ],
      }),
    ).not.toBe(h)
  })

  it('keeps integers beyond 2^53 apart in raw bodies', () => {
    expect(fingerprint({ body: raw('{"amount":9007199254740993}') })).not.toBe(
      fingerprint({ body: raw('{"amount":9007199254740992}') }),
    )
    expect(fingerprint({ body: raw('{"a":1e400}') })).not.toBe(fingerprint({ body: raw('{"a":null}') }))
  })

  it('hashes non-JSON media types as raw bytes', () => {
    const text = { mediaType: 'text/plain' }
    expect(fingerprint({ ...text, body: raw('{"a":1,"b":2}') })).not.toBe(
      fingerprint({ ...text, body: raw('{"b":2,"a":1}') }),
    )
    expect(fingerprint({ ...text, body: raw('abc') })).not.toBe(fingerprint({ ...text, body: raw('abd') }))
  })

  it('hashes JSON-typed bytes that are not UTF-8 or not JSON as raw bytes, not rejected', () => {
    const notUtf8: FingerprintBody = { kind: 'raw', bytes: new Uint8Array([0x7b, 0xff, 0x7d]) }
    expect(fingerprintRequest({ ...base, body: notUtf8 }, sha256, { maxDepth: 8 }).kind).toBe('ok')
    expect(fingerprint({ body: raw('{"a":1,') })).not.toBe(fingerprint({ body: raw('{"a":1, ') }))
    // The raw tag keeps a malformed body apart from a canonical one with the same bytes.
    expect(fingerprint({ body: raw('{"a":1') })).not.toBe(fingerprint({ body: raw('{"a":1}') }))
  })

  it('canonicalizes parsed values whatever the media type', () => {
    expect(fingerprint({ mediaType: 'text/plain', body: parsed('{"b":1,"a":2}') })).toBe(
      fingerprint({ mediaType: 'text/plain', body: parsed('{"a":2,"b":1}') }),
    )
  })

  it('answers too_deep for a body nested beyond maxDepth, raw or parsed', () => {
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`
    expect(fingerprintRequest({ ...base, body: raw(deep) }, sha256, { maxDepth: 64 }).kind).toBe('too_deep')
    let value: unknown = 1
    for (let i = 0; i < 100; i++) value = [value]
    expect(fingerprintRequest({ ...base, body: { kind: 'parsed', value } }, sha256, { maxDepth: 64 }).kind).toBe(
      'too_deep',
    )
  })

  it('answers invalid for a parsed value that is not JSON', () => {
    const body: FingerprintBody = { kind: 'parsed', value: { a: Number.NaN } }
    expect(fingerprintRequest({ ...base, body }, sha256, { maxDepth: 8 }).kind).toBe('invalid')
  })
})

describe('mediaTypeOf and isJsonMediaType', () => {
  it('lower-cases type/subtype and drops parameters', () => {
    expect(mediaTypeOf(undefined)).toBeNull()
    expect(mediaTypeOf('')).toBeNull()
    expect(mediaTypeOf(' ; charset=utf-8')).toBeNull()
    expect(mediaTypeOf('Application/JSON; charset=UTF-8')).toBe('application/json')
    expect(mediaTypeOf(' text/plain ')).toBe('text/plain')
  })

  it('knows JSON and +json types', () => {
    expect(isJsonMediaType('application/json')).toBe(true)
    expect(isJsonMediaType('application/problem+json')).toBe(true)
    expect(isJsonMediaType('application/vnd.api+json')).toBe(true)
    expect(isJsonMediaType('application/+json')).toBe(false)
    expect(isJsonMediaType('text/plain')).toBe(false)
    expect(isJsonMediaType('application/jsonx')).toBe(false)
    expect(isJsonMediaType(null)).toBe(false)
  })
})

describe('toHex', () => {
  it('writes two lower-case digits per byte', () => {
    expect(toHex(new Uint8Array([0, 1, 15, 16, 171, 255]))).toBe('00010f10abff')
    expect(toHex(sha256(utf8('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})
