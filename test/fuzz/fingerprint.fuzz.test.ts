// Randomised tests of canonicalization, fingerprinting and key parsing; the seed is printed to replay.
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalizeJson, canonicalizeValue } from '../../src/core/canonical-json.js'
import { type FingerprintInput, fingerprintRequest, type Sha256 } from '../../src/core/fingerprint.js'
import { parseIdempotencyKey } from '../../src/core/key.js'

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
console.log(`fingerprint fuzz seed: ${seed} (rerun with FUZZ_SEED=${seed})`)
const params = { seed, numRuns: 300 }

const sha256: Sha256 = (data) => createHash('sha256').update(data).digest()

/** A JSON value as the model the serializer writes many ways; numbers are digits × 10^exponent. */
type Model =
  | { readonly t: 'null' }
  | { readonly t: 'bool'; readonly v: boolean }
  | { readonly t: 'num'; readonly negative: boolean; readonly digits: string; readonly exponent: number }
  | { readonly t: 'str'; readonly v: string }
  | { readonly t: 'arr'; readonly items: readonly Model[] }
  | { readonly t: 'obj'; readonly members: ReadonlyArray<readonly [string, Model]> }

const loneSurrogateString = fc
  .array(fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff })), {
    maxLength: 6,
  })
  .map((units) => String.fromCharCode(...units))
const anyString = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 4 }),
  loneSurrogateString,
)
// Few distinct names, so duplicates are common.
const name = fc.oneof(fc.constantFrom('a', 'b', 'B', '__proto__', '', '\ud800', '\u{1f600}', '\ufb33'), anyString)

const number = fc.oneof(
  fc.record({
    negative: fc.boolean(),
    digits: fc.stringMatching(/^[1-9][0-9]{0,39}$/),
    exponent: fc.integer({ min: -400, max: 400 }),
  }),
  fc.record({
    negative: fc.boolean(),
    digits: fc.stringMatching(/^[1-9][0-9]{0,5}$/),
    exponent: fc.integer({ min: -8, max: 4 }),
  }),
  fc.record({ negative: fc.boolean(), digits: fc.constant('0'), exponent: fc.integer({ min: -5, max: 5 }) }),
)

const { model } = fc.letrec<{ model: Model }>((tie) => ({
  model: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant<Model>({ t: 'null' }),
    fc.boolean().map((v): Model => ({ t: 'bool', v })),
    number.map((n): Model => ({ t: 'num', ...n })),
    anyString.map((v): Model => ({ t: 'str', v })),
    fc.array(tie('model'), { maxLength: 5 }).map((items): Model => ({ t: 'arr', items })),
    fc.array(fc.tuple(name, tie('model')), { maxLength: 6 }).map((members): Model => ({ t: 'obj', members })),
  ),
}))

/** Wraps a value in up to 300 levels of arrays and objects. */
const deepModel = fc
  .tuple(model, fc.array(fc.boolean(), { maxLength: 300 }))
  .map(([inner, levels]) =>
    levels.reduce<Model>(
      (acc, isArray) => (isArray ? { t: 'arr', items: [acc] } : { t: 'obj', members: [['k', acc]] }),
      inner,
    ),
  )

/** A small seeded generator, so one fast-check integer drives a whole serialization. */
function prng(initial: number): (n: number) => number {
  let state = initial >>> 0 || 1
  return (n) => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) % n
  }
}

const WHITESPACE = ['', '', ' ', '\n', '\t', '\r\n  ']

function writeNumber(n: Extract<Model, { t: 'num' }>, rand: (n: number) => number): string {
  const zeros = rand(3)
  const digits = n.digits === '0' ? '0'.repeat(1 + zeros) : n.digits + '0'.repeat(zeros)
  const exponent = n.exponent - (n.digits === '0' ? 0 : zeros)
  // Place the decimal point anywhere after the first digit; the exponent makes up the difference.
  const point = n.digits === '0' ? 1 : 1 + rand(digits.length)
  const intPart = digits.slice(0, point)
  const fracPart = digits.slice(point)
  const writtenExponent = exponent + fracPart.length
  let text = (n.negative ? '-' : '') + intPart + (fracPart === '' ? '' : `.${fracPart}`)
  if (writtenExponent !== 0 || rand(3) === 0) {
    const sign = writtenExponent < 0 ? '-' : rand(2) === 0 ? '+' : ''
    text += `${rand(2) === 0 ? 'e' : 'E'}${sign}${Math.abs(writtenExponent)}`
  }
  return text
}

function writeString(value: string, rand: (n: number) => number): string {
  const escapeUnit = (unit: number) => {
    const hex = unit.toString(16).padStart(4, '0')
    return `\\u${rand(2) === 0 ? hex : hex.toUpperCase()}`
  }
  let text = '"'
  for (const char of value) {
    const c = char.charCodeAt(0)
    if (c === 0x22) text += rand(2) === 0 ? '\\"' : '\\u0022'
    else if (c === 0x5c) text += '\\\\'
    else if (c === 0x2f && rand(2) === 0) text += '\\/'
    // A lone surrogate must be escaped: the body travels as UTF-8, which cannot carry one.
    else if (c < 0x20 || (char.length === 1 && c >= 0xd800 && c <= 0xdfff) || rand(4) === 0) {
      for (let i = 0; i < char.length; i++) text += escapeUnit(char.charCodeAt(i))
    } else text += char
  }
  return `${text}"`
}

/** Writes a model as JSON text with random whitespace, number spelling, escapes and member order. */
function serialize(root: Model, seedValue: number): string {
  const rand = prng(seedValue)
  const ws = () => WHITESPACE[rand(WHITESPACE.length)] ?? ''
  // Iterative, like the code under test, so deep models do not overflow the test either.
  const out: string[] = []
  const work: Array<Model | string> = [root]
  while (work.length > 0) {
    const item = work.pop() as Model | string
    if (typeof item === 'string') {
      out.push(item)
      continue
    }
    out.push(ws())
    switch (item.t) {
      case 'null':
        out.push('null')
        break
      case 'bool':
        out.push(String(item.v))
        break
      case 'num':
        out.push(writeNumber(item, rand))
        break
      case 'str':
        out.push(writeString(item.v, rand))
        break
      case 'arr': {
        const parts: Array<Model | string> = ['[']
        item.items.forEach((child, i) => {
          if (i > 0) parts.push(`${ws()},`)
          parts.push(child)
        })
        parts.push(`${ws()}]`)
        work.push(...parts.reverse())
        break
      }
      case 'obj': {
        // A random merge of the groups of equal names keeps duplicates in their relative order.
        const groups = new Map<string, Array<readonly [string, Model]>>()
        for (const member of item.members) {
          const group = groups.get(member[0]) ?? []
          group.push(member)
          groups.set(member[0], group)
        }
        const queues = [...groups.values()]
        const parts: Array<Model | string> = ['{']
        let first = true
        while (queues.length > 0) {
          const index = rand(queues.length)
          const queue = queues[index] as Array<readonly [string, Model]>
          const [memberName, child] = queue.shift() as readonly [string, Model]
          if (queue.length === 0) queues.splice(index, 1)
          parts.push(`${first ? '' : `${ws()},`}${ws()}${writeString(memberName, rand)}${ws()}:`, child)
          first = false
        }
        parts.push(`${ws()}}`)
        work.push(...parts.reverse())
        break
      }
    }
    out.push(ws())
  }
  return out.join('')
}

/** Changes one place in the model so that its JSON value is certainly different. */
function mutate(root: Model, choice: number): Model {
  const rand = prng(choice)
  const change = (m: Model): Model => {
    switch (m.t) {
      case 'null':
        return { t: 'bool', v: false }
      case 'bool':
        return { t: 'bool', v: !m.v }
      case 'num':
        return m.digits === '0' ? { ...m, digits: '1' } : { ...m, negative: !m.negative }
      case 'str':
        return { t: 'str', v: `${m.v}x` }
      case 'arr': {
        const index = rand(m.items.length + 1)
        if (index === m.items.length) return { t: 'arr', items: [...m.items, { t: 'null' }] }
        return { t: 'arr', items: m.items.map((child, i) => (i === index ? change(child) : child)) }
      }
      case 'obj': {
        const index = rand(m.members.length + 1)
        if (index === m.members.length) return { t: 'obj', members: [...m.members, ['\u0000new', { t: 'null' }]] }
        return {
          t: 'obj',
          members: m.members.map(([n, child], i) => [n, i === index ? change(child) : child] as const),
        }
      }
    }
  }
  return change(root)
}

const fingerprintOf = (text: string): string => {
  const input: FingerprintInput = {
    method: 'POST',
    url: '/fuzz',
    mediaType: 'application/json',
    body: { kind: 'raw', bytes: new TextEncoder().encode(text) },
    headers: [],
  }
  const result = fingerprintRequest(input, sha256, { maxDepth: 1000 })
  if (result.kind !== 'ok') throw new Error(`no fingerprint: ${result.kind}`)
  return result.fingerprint
}

describe('fingerprint fuzz', () => {
  it('canonicalizeJson never throws, and accepts every serialized model', () => {
    fc.assert(
      fc.property(fc.oneof(model, deepModel), fc.integer(), (m, s) => {
        const text = serialize(m, s)
        expect(canonicalizeJson(text, { maxDepth: 1000 }).kind).toBe('ok')
        expect(['ok', 'too_deep']).toContain(canonicalizeJson(text, { maxDepth: 8 }).kind)
      }),
      params,
    )
  })

  it('canonicalizeJson never throws on arbitrary text or mangled JSON', () => {
    fc.assert(
      fc.property(model, fc.integer(), fc.nat(), fc.string({ unit: 'binary', maxLength: 3 }), (m, s, at, junk) => {
        const text = serialize(m, s)
        const cut = at % (text.length + 1)
        canonicalizeJson(text.slice(0, cut) + junk + text.slice(cut), { maxDepth: 50 })
        canonicalizeJson(junk, { maxDepth: 50 })
      }),
      params,
    )
  })

  it('gives the same fingerprint to any member order, spelling and whitespace', () => {
    fc.assert(
      fc.property(fc.oneof(model, deepModel), fc.integer(), fc.integer(), (m, s1, s2) => {
        expect(fingerprintOf(serialize(m, s1))).toBe(fingerprintOf(serialize(m, s2)))
      }),
      params,
    )
  })

  it('gives a different fingerprint to a changed value', () => {
    fc.assert(
      fc.property(model, fc.integer(), fc.integer(), fc.integer(), (m, choice, s1, s2) => {
        expect(fingerprintOf(serialize(mutate(m, choice), s1))).not.toBe(fingerprintOf(serialize(m, s2)))
      }),
      params,
    )
  })

  it('agrees between raw text and the parsed value for doubles below 2^53', () => {
    // Doubles below 2^53 only: above it Number::toString may write an integer the double is not.
    const { value } = fc.letrec<{ value: unknown }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.constant(null),
        fc.boolean(),
        fc.double({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1, noNaN: true }),
        fc.integer(),
        anyString,
        fc.array(tie('value'), { maxLength: 4 }),
        fc.dictionary(name, tie('value'), { maxKeys: 4 }),
      ),
    }))
    fc.assert(
      fc.property(value, (v) => {
        const text = JSON.stringify(v)
        expect(canonicalizeValue(v, { maxDepth: 50 })).toEqual(canonicalizeJson(text, { maxDepth: 50 }))
      }),
      params,
    )
  })

  it('parseIdempotencyKey never throws and only accepts 1 to 255 visible ASCII characters', () => {
    const header = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.string({ maxLength: 300 }),
      fc.string({
        unit: fc.constantFrom('"', '\\', ';', '=', 'a', ' ', '?', '1', '.', ':', '%', '*', '@'),
        maxLength: 20,
      }),
    )
    fc.assert(
      fc.property(header, (value) => {
        const result = parseIdempotencyKey(value)
        if (result.kind === 'ok') {
          expect(result.key).toMatch(/^[\x21-\x7e]{1,255}$/)
        } else {
          expect(result.kind).toBe('invalid')
        }
      }),
      params,
    )
  })
})
