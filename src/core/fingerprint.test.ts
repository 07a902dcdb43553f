// Unit tests for the request fingerprint: what it covers, what it ignores, and its encoding.
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalizeJson, canonicalizeValue } from './canonical-json.js'
import {
  FINGERPRINT_VERSION,
  type FingerprintBody,
  type FingerprintInput,
  fingerprintRequest,
  fingerprintRequestHex,
  isJsonMediaType,
  mediaTypeOf,
  type Sha256,
  sha256HexOfPair,
  sha256HexOfText,
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

/**
 * The v1 encoding written the plain way (a new array per field, then one concatenation): the reused buffer
 * of `fingerprintRequest` must give exactly these bytes, or every stored fingerprint would stop matching.
 */
function referenceFingerprint(input: FingerprintInput, maxDepth: number): string {
  const encode = (text: string) => new TextEncoder().encode(text)
  let tag = 'raw'
  let body: Uint8Array
  if (input.body.kind === 'none') {
    tag = 'none'
    body = new Uint8Array(0)
  } else if (input.body.kind === 'parsed') {
    const canonical = canonicalizeValue(input.body.value, { maxDepth })
    if (canonical.kind !== 'ok') return canonical.kind
    tag = 'json'
    body = encode(canonical.text)
  } else {
    body = input.body.bytes
    if (isJsonMediaType(input.mediaType)) {
      let text: string | undefined
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(input.body.bytes)
      } catch {
        text = undefined
      }
      const canonical = text === undefined ? undefined : canonicalizeJson(text, { maxDepth })
      if (canonical?.kind === 'too_deep') return 'too_deep'
      if (canonical?.kind === 'ok') {
        tag = 'json'
        body = encode(canonical.text)
      }
    }
  }
  const headers = input.headers
    .map(([name, value]) => [name.toLowerCase(), value] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const fields = [
    encode('idempotency-kit fingerprint v1'),
    encode(input.method),
    encode(input.url),
    encode(input.mediaType === null ? 'none' : `type:${input.mediaType}`),
    encode(tag),
    body,
    encode(String(headers.length)),
    ...headers.flatMap(([name, value]) => [encode(name), encode(value)]),
  ]
  const out = new Uint8Array(fields.reduce((n, f) => n + 4 + f.length, 0))
  const view = new DataView(out.buffer)
  let at = 0
  for (const field of fields) {
    view.setUint32(at, field.length)
    out.set(field, at + 4)
    at += 4 + field.length
  }
  return `v1:${createHash('sha256').update(out).digest('hex')}`
}

describe('the v1 encoding', () => {
  it('keeps these fingerprints (computed before the encoding was rewritten to reuse one buffer)', () => {
    const hashed = (input: FingerprintInput) => {
      const result = fingerprintRequest(input, sha256)
      return result.kind === 'ok' ? result.fingerprint : result.kind
    }
    expect(
      hashed({
        method: 'POST',
        url: '/api/payments/charge',
        mediaType: 'application/json',
        body: raw('{"amount":5000,"customerId":"cus_123","currency":"usd"}'),
        headers: [],
      }),
    ).toBe('v1:ff7f421c2888a1e42a314247f5e26660c2d0c34617c01cca3c80252036720568')
    expect(
      hashed({
        method: 'PUT',
        url: '/x?é=1',
        mediaType: 'text/plain',
        body: raw('héllo'),
        headers: [
          ['X-B', 'ü'],
          ['x-a', '1'],
        ],
      }),
    ).toBe('v1:fb052be90d29ce08af1d8df7273997ef8d9e9aa154da2f8a649826025d7bfb6d')
    expect(hashed({ method: 'PATCH', url: '/y', mediaType: null, body: { kind: 'none' }, headers: [] })).toBe(
      'v1:a4fa72f677cd3866f2005fec7b06197d76a8e2dcd9b454d077167b3cb949f17f',
    )
    expect(
      hashed({
        method: 'POST',
        url: '/z',
        mediaType: 'application/merge-patch+json',
        body: { kind: 'parsed', value: { b: [1, 2.5, 'x\u2028'], a: { '€': null, é: true } } },
        headers: [],
      }),
    ).toBe('v1:d1bd38f4814f8d98fcc2e39b59104e9842da531daf8b5c5e067edddf6943e691')
  })

  it('matches the plain encoding on random requests, long and short, ASCII or not, lone surrogates too', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      // Around the length where the writer stops copying ASCII by hand.
      fc.string({ minLength: 60, maxLength: 70 }).map((s) => `${s}é`),
      fc.constantFrom('\ud800', 'a\udc00b', '\ud83d\ude00'),
    )
    const json = fc.json({ maxDepth: 4 })
    const body = fc.oneof(
      fc.constant<FingerprintBody>({ kind: 'none' }),
      json.map((t): FingerprintBody => raw(t)),
      text.map((t): FingerprintBody => raw(t)),
      fc.uint8Array({ maxLength: 300 }).map((bytes): FingerprintBody => ({ kind: 'raw', bytes })),
      json.map((t): FingerprintBody => ({ kind: 'parsed', value: JSON.parse(t) })),
    )
    const input = fc.record({
      method: text,
      url: text,
      mediaType: fc.constantFrom(null, 'application/json', 'text/plain', 'application/x+json', 'é/ü'),
      body,
      headers: fc.array(fc.tuple(text, text), { maxLength: 4 }),
    })
    fc.assert(
      fc.property(input, fc.integer({ min: 1, max: 6 }), (request, maxDepth) => {
        const expected = referenceFingerprint(request, maxDepth)
        const actual = fingerprintRequest(request, sha256, { maxDepth })
        const hex = fingerprintRequestHex(request, (d) => createHash('sha256').update(d).digest('hex'), { maxDepth })
        expect(actual.kind === 'ok' ? actual.fingerprint : actual.kind).toBe(expected)
        expect(hex).toEqual(actual)
      }),
      { numRuns: 2_000 },
    )
  })

  it('fingerprints a body larger than the reused buffer, and a small one after it, the plain way', () => {
    const big = raw(JSON.stringify({ items: Array.from({ length: 15_000 }, (_, i) => ({ i, s: `é${i}` })) }))
    const small = raw('{"b":1,"a":"x"}')
    for (const body of [big, small, big, small]) {
      const request = { ...base, body }
      const result = fingerprintRequest(request, sha256, { maxDepth: 8 })
      expect(result.kind === 'ok' ? result.fingerprint : result.kind).toBe(referenceFingerprint(request, 8))
    }
  })
})

describe('sha256HexOfText', () => {
  it('hashes the UTF-8 bytes TextEncoder gives, short or long, lone surrogates as U+FFFD', () => {
    const hex = (d: Uint8Array) => createHash('sha256').update(d).digest('hex')
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ maxLength: 200 })), (text) => {
        expect(sha256HexOfText(text, hex)).toBe(hex(new TextEncoder().encode(text)))
      }),
    )
    const long = 'tenant\u0000é'.repeat(100_000)
    expect(sha256HexOfText(long, hex)).toBe(hex(new TextEncoder().encode(long)))
  })

  it('hashes a pair written part by part exactly as first, a NUL, then second, in one text', () => {
    const hex = (d: Uint8Array) => createHash('sha256').update(d).digest('hex')
    // Past 256 units as well: the writer copies ASCII by hand up to there and hands the rest to encodeInto.
    const text = () => fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 300 }))
    fc.assert(
      fc.property(text(), text(), (first, second) => {
        expect(sha256HexOfPair(first, second, hex)).toBe(hex(new TextEncoder().encode(`${first}\0${second}`)))
      }),
    )
  })
})

describe('mediaTypeOf and isJsonMediaType', () => {
  it('lower-cases type/subtype and drops parameters', () => {
    expect(mediaTypeOf(undefined)).toBeNull()
    expect(mediaTypeOf('')).toBeNull()
    expect(mediaTypeOf(' ; charset=utf-8')).toBeNull()
    expect(mediaTypeOf('Application/JSON; charset=UTF-8')).toBe('application/json')
    expect(mediaTypeOf(' text/plain ')).toBe('text/plain')
    // The same value twice (the second from the kept answer), then another.
    expect(mediaTypeOf('Application/JSON; charset=UTF-8')).toBe('application/json')
    expect(mediaTypeOf('Application/JSON; charset=UTF-8')).toBe('application/json')
    expect(mediaTypeOf('text/csv')).toBe('text/csv')
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
