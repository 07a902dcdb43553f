// The return-value codec: what it keeps, what it refuses, and a randomised round trip (seed printed).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeValue, type EncodeOptions, encodeValue, ValueDecodeError } from './value-codec.js'

const VALUE: EncodeOptions = { maxDepth: 128, mode: 'value' }

/** Encodes to JSON text and back, as a store round trip does. */
function roundTrip(value: unknown): unknown {
  const encoded = encodeValue(value, VALUE)
  if (encoded.kind !== 'ok') throw new Error(`refused: ${encoded.detail}`)
  return decodeValue(JSON.parse(JSON.stringify(encoded.tree)))
}

function refusal(value: unknown, options: EncodeOptions = VALUE) {
  const encoded = encodeValue(value, options)
  if (encoded.kind !== 'refused') throw new Error('expected a refusal')
  return encoded
}

describe('encodeValue / decodeValue', () => {
  it('keeps what JSON loses, with its types', () => {
    const value = {
      when: new Date('2024-02-29T12:34:56.789Z'),
      invalid: new Date(Number.NaN),
      big: -12345678901234567890123n,
      missing: undefined,
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      ninf: Number.NEGATIVE_INFINITY,
      negZero: -0,
      buffer: Buffer.from([0, 1, 254, 255]),
      bytes: new Uint8Array([9, 8, 7]),
      floats: new Float64Array([1.5, -0, Number.NaN]),
      arrayBuffer: new Uint8Array([1, 2, 3]).buffer,
      map: new Map<unknown, unknown>([
        [1n, new Set([new Date(0)])],
        ['k', { nested: [undefined, null] }],
      ]),
      set: new Set(['a', 1, undefined]),
      list: [1, 'two', [3, [4]]],
    }
    const back = roundTrip(value) as typeof value
    expect(back).toStrictEqual(value)
    expect(back.when).toBeInstanceOf(Date)
    expect(back.when.getTime()).toBe(value.when.getTime())
    expect(Number.isNaN(back.invalid.getTime())).toBe(true)
    expect(typeof back.big).toBe('bigint')
    expect(back.big).toBe(value.big)
    expect(Object.hasOwn(back, 'missing')).toBe(true)
    expect(Object.is(back.negZero, -0)).toBe(true)
    expect(Number.isNaN(back.nan)).toBe(true)
    expect(back.inf).toBe(Number.POSITIVE_INFINITY)
    expect(back.ninf).toBe(Number.NEGATIVE_INFINITY)
    expect(Buffer.isBuffer(back.buffer)).toBe(true)
    expect([...back.buffer]).toEqual([0, 1, 254, 255])
    expect(Buffer.isBuffer(back.bytes)).toBe(false)
    expect(Object.getPrototypeOf(back.bytes)).toBe(Uint8Array.prototype)
    expect(back.floats).toBeInstanceOf(Float64Array)
    expect(Object.is(back.floats[1], -0)).toBe(true)
    expect(back.arrayBuffer).toBeInstanceOf(ArrayBuffer)
    expect([...new Uint8Array(back.arrayBuffer)]).toEqual([1, 2, 3])
    expect([...back.map.keys()]).toEqual([1n, 'k'])
    expect([...(back.map.get(1n) as Set<Date>)][0]).toBeInstanceOf(Date)
  })

  it('round-trips top-level scalars, undefined included', () => {
    for (const value of [undefined, null, 0, -0, 'x', true, 10n, Number.NaN]) {
      expect(Object.is(roundTrip(value), value)).toBe(true)
    }
  })

  it('keeps member order, a `$t` member and an own `__proto__` member as data', () => {
    const value = JSON.parse('{"z":1,"$t":"date","__proto__":{"polluted":true},"a":{"$t":"undefined"}}')
    const back = roundTrip(value) as Record<string, unknown>
    expect(Object.keys(back)).toEqual(['z', '$t', '__proto__', 'a'])
    expect(back.$t).toBe('date')
    expect(back.a).toEqual({ $t: 'undefined' })
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ polluted: true })
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('turns a null-prototype object and a shared (not cyclic) reference into plain copies', () => {
    const shared = { n: 1 }
    const bare = Object.assign(Object.create(null) as object, { a: shared, b: shared })
    const back = roundTrip(bare) as { a: unknown; b: unknown }
    expect(back).toEqual({ a: { n: 1 }, b: { n: 1 } })
    expect(back.a).not.toBe(back.b)
  })

  it('refuses functions, symbols, class instances and cycles, naming where', () => {
    expect(refusal({ list: [1, () => 0] })).toMatchObject({ reason: 'unsupported', path: '$.list[1]' })
    expect(refusal({ s: Symbol('x') })).toMatchObject({ reason: 'unsupported', path: '$.s' })
    expect(refusal({ [Symbol('k')]: 1 })).toMatchObject({ reason: 'unsupported', path: '$' })
    class Money {
      constructor(readonly cents: number) {}
    }
    const money = refusal({ 'total price': new Money(5) })
    expect(money).toMatchObject({ reason: 'unsupported', path: '$["total price"]' })
    expect(money.detail).toContain('Money')
    expect(refusal(new Error('boom')).detail).toContain('Error')
    expect(refusal(/re/).reason).toBe('unsupported')
    expect(refusal(new (class extends Map {})()).reason).toBe('unsupported')
    expect(refusal(new DataView(new ArrayBuffer(1))).reason).toBe('unsupported')
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = { back: cyclic }
    expect(refusal(cyclic)).toMatchObject({ reason: 'cycle', path: '$.self.back' })
    const map = new Map<string, unknown>()
    map.set('me', map)
    expect(refusal(map)).toMatchObject({ reason: 'cycle', path: '$.<value 0>' })
  })

  it('refuses nesting deeper than maxDepth', () => {
    let deep: unknown = 1
    for (let i = 0; i < 5; i++) deep = [deep]
    expect(encodeValue(deep, { maxDepth: 5, mode: 'value' }).kind).toBe('ok')
    expect(refusal(deep, { maxDepth: 4, mode: 'value' }).reason).toBe('too_deep')
  })

  it('accepts toJSON instances as arguments only', () => {
    class Id {
      constructor(readonly hex: string) {}
      toJSON() {
        return this.hex
      }
    }
    expect(refusal(new Id('ab')).reason).toBe('unsupported')
    const asArgument = encodeValue([new Id('ab')], { maxDepth: 8, mode: 'arguments' })
    expect(asArgument).toEqual({ kind: 'ok', tree: [{ $t: 'json', c: 'Id', v: 'ab' }] })
  })

  it('refuses to decode what it did not write', () => {
    for (const tree of [
      { $t: 'nope' },
      { $t: 'bigint', v: '1.5' },
      { $t: 'date', v: 'yesterday' },
      { $t: 'map', v: [[1]] },
      { $t: 'typed', c: 'constructor', v: '' },
      { $t: 'typed', c: 'Uint32Array', v: 'AAE=' },
      { $t: 'buffer', v: '%%%' },
    ]) {
      expect(() => decodeValue(tree), JSON.stringify(tree)).toThrow(ValueDecodeError)
    }
  })

  it('round-trips random values exactly (encoding the decoded value gives the same text)', () => {
    const seed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 0x7fffffff))
    // biome-ignore lint/suspicious/noConsole: a randomised test prints its seed
    console.log(`value codec property seed ${seed} (FC_SEED=${seed} to replay)`)
    const leaf = fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.double(),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.bigInt(),
      fc.date({ noInvalidDate: false }),
      fc.uint8Array({ maxLength: 8 }),
      fc.uint8Array({ maxLength: 8 }).map((bytes) => Buffer.from(bytes)),
      fc.float64Array({ maxLength: 4 }),
    )
    const name = fc.oneof(fc.constantFrom('$t', '__proto__', 'v', 'a', ''), fc.string({ maxLength: 4 }))
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        tie('array'),
        tie('object'),
        tie('map'),
        tie('set'),
      ),
      array: fc.array(tie('value'), { maxLength: 4 }),
      object: fc.array(fc.tuple(name, tie('value')), { maxLength: 4 }).map((members) => {
        const out: Record<string, unknown> = {}
        for (const [k, v] of members)
          Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
        return out
      }),
      map: fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 3 }).map((entries) => new Map(entries)),
      set: fc.array(tie('value'), { maxLength: 3 }).map((items) => new Set(items)),
    }))
    fc.assert(
      fc.property(value, (v) => {
        const first = encodeValue(v, VALUE)
        if (first.kind !== 'ok') return false
        const text = JSON.stringify(first.tree)
        const again = encodeValue(decodeValue(JSON.parse(text)), VALUE)
        return again.kind === 'ok' && JSON.stringify(again.tree) === text
      }),
      { seed, numRuns: 300 },
    )
  })
})
