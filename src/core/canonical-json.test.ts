// Unit tests for RFC 8785 canonicalization from raw text and from parsed values.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalizeJson, canonicalizeValue, canonicalNumber } from './canonical-json.js'

const options = { maxDepth: 64 }
const canon = (text: string) => {
  const result = canonicalizeJson(text, options)
  return result.kind === 'ok' ? result.text : result.kind
}
const canonValue = (value: unknown) => {
  const result = canonicalizeValue(value, options)
  return result.kind === 'ok' ? result.text : result.kind
}

describe('canonicalizeJson', () => {
  it('sorts members by UTF-16 code units, not UTF-8 bytes, and keeps duplicates in order, at every level', () => {
    // U+1F600 is D83D DE00 in UTF-16, before U+E000; in UTF-8 (F0… and EE…) it would come after.
    expect(canon('{"\ue000":1,"😀":2,"é":3,"z":4}')).toBe('{"z":4,"é":3,"😀":2,"\ue000":1}')
    expect(canon('{"b":{"y":[{"d":1,"c":2}],"x":0},"a":1,"b":2}')).toBe('{"a":1,"b":{"x":0,"y":[{"c":2,"d":1}]},"b":2}')
    // Names written with escapes sort by what they spell.
    expect(canon('{"\\u0062":1,"a":2,"\\n":3}')).toBe('{"\\n":3,"a":2,"b":1}')
    const members = Array.from({ length: 40 }, (_, i) => `"k${(i * 17) % 40}":${i}`)
    const sorted = Array.from({ length: 40 }, (_, i) => `k${i}`).sort()
    const expected = `{${sorted.map((k) => `"${k}":${members.findIndex((m) => m.startsWith(`"${k}":`))}`).join(',')}}`
    expect(canon(` { ${members.join(' , ')} } `)).toBe(expected)
  })

  it('gives the same text as canonicalizeValue of the parsed value, whatever the spacing and order', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), fc.constantFrom('', ' ', '\n\t '), (value, space) => {
        const text = JSON.stringify(value, null, space)
        // At 2^53 and beyond the raw text keeps what the double lost (see canonicalNumber): not compared here.
        if (/\d{16}|e\+/.test(JSON.stringify(value))) return
        expect(canon(text)).toBe(canonValue(JSON.parse(text)))
      }),
      { numRuns: 500 },
    )
  })

  it('reproduces the RFC 8785 §3.2.3 sample', () => {
    const input = `{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\"\\/",
      "literals": [null, true, false]
    }`
    // RFC 8785 writes 1e+30; 1E30 is no double, so it is kept in exact form (see canonicalNumber).
    expect(canon(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1E30,4.5,0.002,1e-27],' +
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    )
  })

  it('serializes numbers as ECMAScript Number::toString (RFC 8785 §3.2.2.3)', () => {
    const vectors: Array<[string, string]> = [
      ['1e21', '1e+21'],
      ['1e-7', '1e-7'],
      ['333333333.33333329', '333333333.3333333'],
      ['-0', '0'],
      ['-0.0e-5', '0'],
      ['4.50', '4.5'],
      ['2e-3', '0.002'],
      ['0.000001', '0.000001'],
      ['1.0', '1'],
      ['1E2', '100'],
      ['1e+2', '100'],
      ['100e-2', '1'],
      ['-12.5e0', '-12.5'],
      ['9007199254740992', '9007199254740992'],
      ['-9007199254740992', '-9007199254740992'],
      ['5e-324', '5e-324'],
      ['0.1000000000000000055511151231257827', '0.1'],
      ['999999999999999.9', '999999999999999.9'],
      ['123456789', '123456789'],
    ]
    for (const [input, expected] of vectors) {
      expect(canon(input), input).toBe(expected)
      expect(canon(`[${input}]`), input).toBe(`[${expected}]`)
    }
  })

  it('keeps a number no double can stand for, in one exact form per value', () => {
    const same = ['9007199254740993', '9007199254740993.0', '9.007199254740993e15', '90071992547409930e-1']
    const texts = new Set(same.map(canon))
    expect(texts.size).toBe(1)
    expect(canon('9007199254740993')).not.toBe(canon('9007199254740992'))
    expect(canon('123456789012345678901234567890')).not.toBe(canon('123456789012345678901234567891'))
    expect(canon('1e400')).not.toBe(canon('null'))
    expect(canon('1e400')).not.toBe(canon('1e401'))
    expect(canon('-1e400')).not.toBe(canon('1e400'))
    expect(canon('1e-400')).not.toBe(canon('0'))
    expect(canon('9007199254740993.5')).not.toBe(canon('9007199254740994'))
    // 1e30 (no double) and 1000000000000000019884624838656 (the double's exact value) differ.
    expect(canon('1e30')).not.toBe(canon('1000000000000000019884624838656'))
    expect(canon('1000000000000000019884624838656')).toBe('1e+30')
  })

  it('writes the exact form with an uppercase E, which Number::toString never writes', () => {
    expect(canonicalNumber('9007199254740993')).toBe('9.007199254740993E15')
    expect(canonicalNumber('123456789012345678901234567890')).toBe('1.2345678901234567890123456789E29')
    expect(canonicalNumber('1e400')).toBe('1E400')
    expect(canonicalNumber('-1e-400')).toBe('-1E-400')
    expect(canonicalNumber('0e999999999999999999')).toBe('0')
    // Number::toString gives 1.7976931348623157e+308, but that double is a different integer.
    expect(canonicalNumber('1.7976931348623157e308')).toBe('1.7976931348623157E308')
  })

  it('sorts members by UTF-16 code units of their unescaped names', () => {
    expect(canon('{"b":1,"a":2,"":3}')).toBe('{"":3,"a":2,"b":1}')
    // U+1F600 is D83D DE00 in UTF-16 and sorts before U+FB33, unlike by code point.
    expect(canon('{"\uFB33":1,"\u{1F600}":2}')).toBe('{"\u{1F600}":2,"\uFB33":1}')
    expect(canon('{"\\u0062":1,"a":2}')).toBe('{"a":2,"b":1}')
    // localeCompare would put "B" after "a".
    expect(canon('{"a":1,"B":2}')).toBe('{"B":2,"a":1}')
    // RFC 8785 §3.2.3 sorting example.
    const sorted = canon(
      '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh",' +
        '"1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}',
    )
    expect(sorted).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis",' +
        '"€":"Euro Sign","😀":"Emoji: Grinning Face","\uFB33":"Hebrew Letter Dalet With Dagesh"}',
    )
  })

  it('keeps duplicate names in order of appearance and __proto__ like any name', () => {
    expect(canon('{"b":0,"a":1,"a":2,"a":1}')).toBe('{"a":1,"a":2,"a":1,"b":0}')
    expect(canon('{"__proto__":{"x":1},"a":1}')).toBe('{"__proto__":{"x":1},"a":1}')
    expect(canon('{"__proto__":1}')).not.toBe(canon('{}'))
  })

  it('escapes strings per RFC 8785 §3.2.2.2, lone surrogates as lowercase \\u', () => {
    expect(canon('"\\u0000\\u001F\\b\\f\\n\\r\\t\\/\\u007f\\u00e9"')).toBe('"\\u0000\\u001f\\b\\f\\n\\r\\t/\u007fé"')
    expect(canon('"\\uD800"')).toBe('"\\ud800"')
    expect(canon('"\\uDC00x\\uD83D"')).toBe('"\\udc00x\\ud83d"')
    expect(canon('"\\uD83D\\uDE00"')).toBe('"😀"')
    // A lone surrogate in the text itself (not escaped) is also escaped, never thrown on.
    expect(canon('"a\uD800b"')).toBe('"a\\ud800b"')
    expect(canon('{"\uDFFF":1}')).toBe('{"\\udfff":1}')
  })

  it('ignores insignificant whitespace', () => {
    expect(canon(' \n\t\r{ "a" : [ 1 , 2 ] , "b" : { } , "c" : [ ] } \n')).toBe('{"a":[1,2],"b":{},"c":[]}')
  })

  it('rejects invalid JSON', () => {
    const bad = [
      '',
      ' ',
      '{',
      '}',
      '[1,]',
      '[,1]',
      '{"a":1,}',
      '{"a"}',
      '{a:1}',
      "{'a':1}",
      '01',
      '1.',
      '.1',
      '+1',
      '1e',
      '1e+',
      '-',
      '--1',
      'NaN',
      'Infinity',
      'tru',
      'nul',
      'true false',
      '[1] [2]',
      '"abc',
      '"a\nb"',
      '"\\x41"',
      '"\\u00g1"',
      '"\\u12"',
      '{"a" 1}',
      '[1 2]',
      '{"a":1 "b":2}',
      '\u00a0 1',
      '[1}',
      '{"a":1]',
      '"\\"',
    ]
    for (const text of bad) expect(canon(text), JSON.stringify(text)).toBe('invalid')
  })

  it('answers too_deep beyond maxDepth, counting containers', () => {
    expect(canonicalizeJson('[[1]]', { maxDepth: 2 }).kind).toBe('ok')
    expect(canonicalizeJson('[[[1]]]', { maxDepth: 2 }).kind).toBe('too_deep')
    expect(canonicalizeJson('{"a":{"b":{}}}', { maxDepth: 2 }).kind).toBe('too_deep')
    expect(canonicalizeJson('1', { maxDepth: 0 }).kind).toBe('ok')
    expect(canonicalizeJson('[]', { maxDepth: 0 }).kind).toBe('too_deep')
  })

  it('answers too_deep for 200,000 levels without overflowing the stack', () => {
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`
    expect(canonicalizeJson(deep, options).kind).toBe('too_deep')
    const deepObject = `${'{"a":'.repeat(200_000)}1${'}'.repeat(200_000)}`
    expect(canonicalizeJson(deepObject, options).kind).toBe('too_deep')
  })

  it('canonicalizes 200,000 levels when allowed, iteratively', () => {
    const deep = `${'[ '.repeat(200_000)}${' ]'.repeat(200_000)}`
    const result = canonicalizeJson(deep, { maxDepth: 200_000 })
    expect(result).toEqual({ kind: 'ok', text: `${'['.repeat(200_000)}${']'.repeat(200_000)}` })
  })

  it('rejects a bad maxDepth as misconfiguration', () => {
    expect(() => canonicalizeJson('1', { maxDepth: -1 })).toThrow(RangeError)
    expect(() => canonicalizeJson('1', { maxDepth: Number.POSITIVE_INFINITY })).toThrow(RangeError)
  })
})

describe('canonicalizeValue', () => {
  it('gives the same text as canonicalizeJson for ordinary JSON', () => {
    const texts = [
      '{"b":[1,2.5,-0,1e21,1e-7,"x",null,true,false],"a":{"z":{},"y":[]},"\\u00e9":"\\u0000"}',
      '[]',
      '"\\ud800"',
      '4.50',
      '{"__proto__":{"polluted":true},"constructor":1}',
    ]
    for (const text of texts) expect(canonValue(JSON.parse(text)), text).toBe(canon(text))
  })

  it('keeps an own __proto__ key from JSON.parse', () => {
    const value: unknown = JSON.parse('{"__proto__":{"x":1},"a":1}')
    expect(canonValue(value)).toBe('{"__proto__":{"x":1},"a":1}')
  })

  it('rejects non-finite numbers and values JSON has not', () => {
    expect(canonValue({ a: Number.POSITIVE_INFINITY })).toBe('invalid')
    expect(canonValue([Number.NaN])).toBe('invalid')
    expect(canonValue({ a: undefined })).toBe('invalid')
    expect(canonValue([1n])).toBe('invalid')
    expect(canonValue(() => 1)).toBe('invalid')
  })

  it('answers too_deep beyond maxDepth, also for a cycle', () => {
    expect(canonicalizeValue([[1]], { maxDepth: 2 }).kind).toBe('ok')
    expect(canonicalizeValue([[[1]]], { maxDepth: 2 }).kind).toBe('too_deep')
    const cycle: unknown[] = []
    cycle.push(cycle)
    expect(canonicalizeValue(cycle, options).kind).toBe('too_deep')
  })

  it('handles 200,000 levels without overflowing the stack', () => {
    let value: unknown = 1
    for (let i = 0; i < 200_000; i++) value = { a: [value] }
    expect(canonicalizeValue(value, options).kind).toBe('too_deep')
    let arrays: unknown = []
    for (let i = 0; i < 199_999; i++) arrays = [arrays]
    expect(canonicalizeValue(arrays, { maxDepth: 200_000 })).toEqual({
      kind: 'ok',
      text: `${'['.repeat(200_000)}${']'.repeat(200_000)}`,
    })
  })
})
