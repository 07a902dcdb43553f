// RFC 8785 (JCS) canonical text of a JSON body, from its raw text or, as a fallback, a parsed value.

import { type ByteWriter, giveBack, takeWriter } from './byte-writer.js'

/** The outcome of canonicalizing: the canonical text, or why there is none. */
export type CanonicalJsonResult =
  | { readonly kind: 'ok'; readonly text: string }
  | { readonly kind: 'invalid' }
  | { readonly kind: 'too_deep' }

/** Limits for canonicalization: `maxDepth` counts nested arrays and objects (a scalar is depth 0). */
export interface CanonicalJsonOptions {
  readonly maxDepth: number
}

const INVALID: CanonicalJsonResult = { kind: 'invalid' }
const TOO_DEEP: CanonicalJsonResult = { kind: 'too_deep' }

function checkOptions(options: CanonicalJsonOptions): void {
  if (!Number.isInteger(options.maxDepth) || options.maxDepth < 0) {
    throw new RangeError(`maxDepth must be a non-negative integer, got ${String(options.maxDepth)}`)
  }
}

/**
 * Canonicalizes JSON text per RFC 8785 without building objects (so `__proto__` and duplicate names
 * survive) and without recursion, keeping a number literal verbatim (normalized) when the double lost
 * its integer part or overflowed.
 *
 * @example
 * canonicalizeJson('{"b":1.0,"a":[2e-3]}', { maxDepth: 64 }) // { kind: 'ok', text: '{"a":[0.002],"b":1}' }
 */
export function canonicalizeJson(text: string, options: CanonicalJsonOptions): CanonicalJsonResult {
  const w = takeWriter()
  try {
    const outcome = canonicalizeJsonInto(text, options, w)
    if (outcome !== 'ok') return outcome === 'invalid' ? INVALID : TOO_DEEP
    // Lossless: the canonical text holds no lone surrogate (JSON.stringify escapes them).
    return { kind: 'ok', text: utf8.decode(w.bytes.subarray(w.at - w.written, w.at)) }
  } finally {
    giveBack(w)
  }
}

const utf8 = new TextDecoder()

/**
 * An open array or object while its canonical bytes are written. An object keeps each member's name (unescaped,
 * the sort key) and the range of its `"name":value` bytes, to reorder them when it closes out of order.
 */
class Frame {
  isObject = false
  sorted = true
  /** Members so far; the lists below are written by index and never shrink, so reuse allocates nothing. */
  count = 0
  readonly names: string[] = []
  starts = new Int32Array(16)
  ends = new Int32Array(16)

  reset(isObject: boolean): this {
    this.isObject = isObject
    this.sorted = true
    this.count = 0
    return this
  }

  /** Starts member `count` at output position `at`. */
  add(name: string, at: number): void {
    const i = this.count
    if (i > 0 && (this.names[i - 1] as string) > name) this.sorted = false
    if (i === this.starts.length) {
      const starts = new Int32Array(i * 2)
      starts.set(this.starts)
      this.starts = starts
      const ends = new Int32Array(i * 2)
      ends.set(this.ends)
      this.ends = ends
    }
    this.names[i] = name
    this.starts[i] = at
  }

  /** Ends the current member at output position `at`. */
  end(at: number): void {
    this.ends[this.count++] = at
  }

  /** Lets go of the names (a slice can hold a whole body's text alive). */
  clear(): void {
    for (let i = 0; i < this.count; i++) this.names[i] = ''
  }
}

/** Frames reused between calls (the canonicalizer never calls out, so one set serves); deep ones are let go. */
const frames: Frame[] = []
const KEEP_FRAMES = 64

/**
 * Writes the RFC 8785 canonical UTF-8 bytes of JSON `text` into `w` at its end, the same bytes as
 * `TextEncoder.encode(canonicalizeJson(text).text)`; sets `w.written` to their length. On 'invalid' or
 * 'too_deep' what was written is garbage: the caller rewinds.
 */
export function canonicalizeJsonInto(
  text: string,
  options: CanonicalJsonOptions,
  w: ByteWriter,
): 'ok' | 'invalid' | 'too_deep' {
  checkOptions(options)
  const begin = w.at
  try {
    const outcome = writeCanonical(text, options.maxDepth, w)
    w.written = w.at - begin
    return outcome
  } finally {
    if (frames.length > KEEP_FRAMES) frames.length = KEEP_FRAMES
  }
}

function writeCanonical(text: string, maxDepth: number, w: ByteWriter): 'ok' | 'invalid' | 'too_deep' {
  let depth = 0
  let pos = skipWhitespace(text, 0)

  for (;;) {
    // Write one value; containers open a frame and go back to reading their first value.
    const c = text.charCodeAt(pos)
    if (c === 0x22 /* " */) {
      const end = scanString(text, pos)
      if (end < 0) return 'invalid'
      writeString(text, pos, end, w)
      pos = end
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const end = scanNumber(text, pos)
      if (end < 0) return 'invalid'
      // A plain integer of at most 15 digits is its own canonical form (JSON allows no leading zeros), but -0.
      const digits = end - pos - (c === 0x2d ? 1 : 0)
      if (scannedInteger && digits <= 15) {
        if (c === 0x2d && digits === 1 && text.charCodeAt(pos + 1) === 0x30) w.byte(0x30)
        else w.ascii(text, pos, end)
      } else {
        w.string(canonicalNumber(text.slice(pos, end)))
      }
      pos = end
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth >= maxDepth) return 'too_deep'
      pos = skipWhitespace(text, pos + 1)
      w.byte(c)
      if (c === 0x5b) {
        if (text.charCodeAt(pos) === 0x5d) {
          pos++
          w.byte(0x5d)
        } else {
          frameAt(depth++).reset(false)
          continue
        }
      } else if (text.charCodeAt(pos) === 0x7d) {
        pos++
        w.byte(0x7d)
      } else {
        pos = writeName(text, pos, frameAt(depth++).reset(true), w)
        if (pos < 0) return 'invalid'
        continue
      }
    } else if (text.startsWith('true', pos)) {
      w.ascii(text, pos, pos + 4)
      pos += 4
    } else if (text.startsWith('false', pos)) {
      w.ascii(text, pos, pos + 5)
      pos += 5
    } else if (text.startsWith('null', pos)) {
      w.ascii(text, pos, pos + 4)
      pos += 4
    } else {
      return 'invalid'
    }

    // The value is written: hand it to its container; close every container that ends here.
    for (;;) {
      pos = skipWhitespace(text, pos)
      if (depth === 0) return pos === text.length ? 'ok' : 'invalid'
      const frame = frames[depth - 1] as Frame
      const d = text.charCodeAt(pos)
      if (!frame.isObject) {
        if (d === 0x2c /* , */) {
          w.byte(0x2c)
          pos = skipWhitespace(text, pos + 1)
          break
        }
        if (d !== 0x5d /* ] */) return 'invalid'
        pos++
        depth--
        w.byte(0x5d)
      } else {
        frame.end(w.at)
        if (d === 0x2c /* , */) {
          w.byte(0x2c)
          pos = writeName(text, skipWhitespace(text, pos + 1), frame, w)
          if (pos < 0) return 'invalid'
          break
        }
        if (d !== 0x7d /* } */) return 'invalid'
        pos++
        depth--
        if (!frame.sorted) reorder(frame, w)
        frame.clear()
        w.byte(0x7d)
      }
    }
  }
}

function frameAt(depth: number): Frame {
  let frame = frames[depth]
  if (frame === undefined) {
    frame = new Frame()
    frames[depth] = frame
  }
  return frame
}

/**
 * Reads `"name"` then whitespace, `:` and whitespace, and writes the member's `"name":`; returns where its value
 * starts, or -1 if malformed.
 */
function writeName(text: string, from: number, frame: Frame, w: ByteWriter): number {
  if (text.charCodeAt(from) !== 0x22) return -1
  const end = scanString(text, from)
  if (end < 0) return -1
  const colon = skipWhitespace(text, end)
  if (text.charCodeAt(colon) !== 0x3a) return -1
  const plain = scannedPlain
  const name = plain ? text.slice(from + 1, end - 1) : (readString(text, from)?.value as string)
  frame.add(name, w.at)
  if (plain) w.noSurrogates(text, from, end)
  else w.string(JSON.stringify(name))
  w.byte(0x3a)
  return skipWhitespace(text, colon + 1)
}

/** Writes the string `scanString` just checked between `from` and `end` in its canonical form. */
function writeString(text: string, from: number, end: number, w: ByteWriter): void {
  if (scannedPlain) w.noSurrogates(text, from, end)
  else w.string(JSON.stringify(readString(text, from)?.value))
}

/** The order of a small object's members, reused. */
const smallOrder: number[] = Array.from({ length: 16 }, () => 0)
/** Scratch for reordering an object's members; kept up to this size. */
let scratch = new Uint8Array(1024)
const KEEP_SCRATCH = 64 * 1024

/**
 * Rewrites an object's members, written in order of appearance, sorted by name in UTF-16 code units as RFC 8785
 * §3.2.3 requires (`<` compares code units; localeCompare would not). Stable: duplicate names keep their order of
 * appearance. The bytes only move: the object's length does not change.
 */
function reorder(frame: Frame, w: ByteWriter): void {
  const { names, starts, ends } = frame
  const n = frame.count
  const order = n <= 16 ? smallOrder : new Array<number>(n)
  for (let i = 0; i < n; i++) order[i] = i
  if (n <= 16) {
    for (let i = 1; i < n; i++) {
      const at = order[i] as number
      const name = names[at] as string
      let j = i - 1
      while (j >= 0 && (names[order[j] as number] as string) > name) {
        order[j + 1] = order[j] as number
        j--
      }
      order[j + 1] = at
    }
  } else {
    order.sort((a, b) => {
      const x = names[a] as string
      const y = names[b] as string
      return x < y ? -1 : x > y ? 1 : a - b
    })
  }
  const base = starts[0] as number
  const length = (ends[n - 1] as number) - base
  if (scratch.length < length) scratch = new Uint8Array(Math.max(length, scratch.length * 2))
  const bytes = w.bytes
  const copy = scratch
  // Small ranges (most of them) by hand: a view per copy costs more than their bytes.
  if (length <= 256) for (let i = 0; i < length; i++) copy[i] = bytes[base + i] as number
  else copy.set(bytes.subarray(base, base + length))
  let at = base
  for (let i = 0; i < n; i++) {
    const m = order[i] as number
    if (i > 0) bytes[at++] = 0x2c
    const from = (starts[m] as number) - base
    const to = (ends[m] as number) - base
    if (to - from <= 64) for (let j = from; j < to; j++) bytes[at++] = copy[j] as number
    else {
      bytes.set(copy.subarray(from, to), at)
      at += to - from
    }
  }
  if (scratch.length > KEEP_SCRATCH) scratch = new Uint8Array(1024)
}

/** JSON whitespace (RFC 8259 §2): space, tab, line feed, carriage return. */
function skipWhitespace(text: string, from: number): number {
  let pos = from
  for (;;) {
    const c = text.charCodeAt(pos)
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return pos
    pos++
  }
}

/**
 * Set by `scanString`: the string had no escape and no surrogate code unit, so its text between the quotes
 * is its value and, quotes included, already its canonical form (JSON.stringify would change nothing).
 */
let scannedPlain = false
/** Set by `scanNumber`: the number had no fraction and no exponent. */
let scannedInteger = false

/** Checks the JSON string at `from` (its opening quote); returns the index after its closing quote, or -1. */
function scanString(text: string, from: number): number {
  let pos = from + 1
  let plain = true
  for (;;) {
    if (pos >= text.length) return -1
    const c = text.charCodeAt(pos)
    if (c === 0x22) {
      scannedPlain = plain
      return pos + 1
    }
    if (c < 0x20) return -1
    if (c === 0x5c) {
      plain = false
      const e = text.charCodeAt(pos + 1)
      if (e === 0x75 /* u */) {
        for (let i = pos + 2; i < pos + 6; i++) if (!isHexDigit(text.charCodeAt(i))) return -1
        pos += 6
      } else if (
        e === 0x22 ||
        e === 0x5c ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        pos += 2
      } else {
        return -1
      }
      continue
    }
    // A surrogate, paired or lone: the general path re-escapes a lone one as JSON.stringify does.
    if (c >= 0xd800 && c <= 0xdfff) plain = false
    pos++
  }
}

const isHexDigit = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
}

/** Reads a JSON string at `from` (its opening quote) into its unescaped UTF-16 content. */
function readString(text: string, from: number): { value: string; end: number } | undefined {
  let pos = from + 1
  let value = ''
  let runStart = pos
  for (;;) {
    if (pos >= text.length) return undefined
    const c = text.charCodeAt(pos)
    if (c === 0x22) {
      value += text.slice(runStart, pos)
      return { value, end: pos + 1 }
    }
    if (c < 0x20) return undefined
    if (c !== 0x5c) {
      pos++
      continue
    }
    value += text.slice(runStart, pos)
    const e = text.charAt(pos + 1)
    if (e === 'u') {
      const hex = text.slice(pos + 2, pos + 6)
      // A lone surrogate escape is kept as a lone code unit; it is re-escaped on output.
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) return undefined
      value += String.fromCharCode(Number.parseInt(hex, 16))
      pos += 6
    } else {
      const simple = SIMPLE_ESCAPES[e]
      if (simple === undefined) return undefined
      value += simple
      pos += 2
    }
    runStart = pos
  }
}

const isDigitAt = (text: string, pos: number): boolean => {
  const c = text.charCodeAt(pos)
  return c >= 0x30 && c <= 0x39
}

/** Scans a JSON number (RFC 8259 §6) at `from`; returns its end, or -1 if malformed. */
function scanNumber(text: string, from: number): number {
  let pos = from
  if (text.charCodeAt(pos) === 0x2d) pos++
  if (text.charCodeAt(pos) === 0x30) {
    pos++
  } else if (isDigitAt(text, pos)) {
    while (isDigitAt(text, pos)) pos++
  } else {
    return -1
  }
  scannedInteger = true
  if (text.charCodeAt(pos) === 0x2e) {
    scannedInteger = false
    pos++
    if (!isDigitAt(text, pos)) return -1
    while (isDigitAt(text, pos)) pos++
  }
  const e = text.charCodeAt(pos)
  if (e === 0x65 || e === 0x45) {
    scannedInteger = false
    pos++
    const sign = text.charCodeAt(pos)
    if (sign === 0x2b || sign === 0x2d) pos++
    if (!isDigitAt(text, pos)) return -1
    while (isDigitAt(text, pos)) pos++
  }
  return pos
}

/**
 * The canonical text of a valid JSON number literal: ECMAScript Number::toString of its double (RFC 8785
 * §3.2.2.3), unless the double cannot stand for it: it overflowed, underflowed to zero, or changed the
 * integer part (`9007199254740993`, `123456789012345678901234567890`, `1e400`). Such a literal is
 * written in exact form: `[-]d[.ddd]E<exponent>`, the uppercase `E` that Number::toString never writes,
 * so it cannot equal the canonical text of any other value. Digits lost below the units place round as
 * JCS does (`333333333.33333329` becomes `333333333.3333333`), since they are beyond a double's precision
 * and not a different amount, id or count.
 */
export function canonicalNumber(literal: string): string {
  const double = Number(literal)
  // Fast path: with no exponent and at most 15 digits, the literal is below 2^53 and a double's error
  // is far smaller than its last digit, so the integer part survives.
  if (literal.length <= 17 && !/[eE]/.test(literal)) {
    const digitCount = literal.length - (literal[0] === '-' ? 1 : 0) - (literal.includes('.') ? 1 : 0)
    if (digitCount <= 15) return String(double)
  }

  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal)
  if (match === null) throw new TypeError('canonicalNumber needs a valid JSON number literal')
  const negative = match[1] === '-'
  const intPart = match[2] ?? ''
  const fracPart = match[3] ?? ''
  const expText = match[4] ?? '0'

  // Significant digits and the exponent of their last digit: value = digits × 10^exponent.
  const all = intPart + fracPart
  let first = 0
  while (first < all.length && all.charCodeAt(first) === 0x30) first++
  if (first === all.length) return '0'
  let last = all.length
  while (all.charCodeAt(last - 1) === 0x30) last--
  const digits = all.slice(first, last)
  const exponent = BigInt(expText) - BigInt(fracPart.length) + BigInt(all.length - last)

  if (Number.isFinite(double) && double !== 0) {
    // Integer part of the literal, from its digits; compared exactly with the double's.
    const pointAt = BigInt(digits.length) + exponent
    let literalInt: bigint
    if (pointAt <= 0n) literalInt = 0n
    else if (exponent >= 0n) literalInt = BigInt(digits) * 10n ** exponent
    else literalInt = BigInt(digits.slice(0, Number(pointAt)))
    if (literalInt === BigInt(Math.trunc(Math.abs(double)))) return String(double)
  }

  const scientificExponent = exponent + BigInt(digits.length - 1)
  const mantissa = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`
  return `${negative ? '-' : ''}${mantissa}E${scientificExponent}`
}

type ValueFrame =
  | {
      readonly kind: 'array'
      readonly source: readonly unknown[]
      index: number
      readonly items: string[]
    }
  | {
      readonly kind: 'object'
      readonly source: Record<string, unknown>
      readonly names: string[]
      index: number
      readonly items: string[]
    }

/**
 * Canonicalizes an already parsed JSON value per RFC 8785, for when the raw body is gone: same output
 * as canonicalizeJson for the same value, own `__proto__` keys kept, non-finite numbers invalid.
 *
 * @example
 * canonicalizeValue(JSON.parse('{"b":1,"a":2}'), { maxDepth: 64 }) // { kind: 'ok', text: '{"a":2,"b":1}' }
 */
export function canonicalizeValue(value: unknown, options: CanonicalJsonOptions): CanonicalJsonResult {
  checkOptions(options)
  const stack: ValueFrame[] = []
  let next: unknown = value

  for (;;) {
    let text: string
    if (next === null) {
      text = 'null'
    } else if (typeof next === 'boolean') {
      text = next ? 'true' : 'false'
    } else if (typeof next === 'number') {
      if (!Number.isFinite(next)) return INVALID
      text = String(next)
    } else if (typeof next === 'string') {
      text = JSON.stringify(next)
    } else if (typeof next === 'object') {
      if (stack.length >= options.maxDepth) return TOO_DEEP
      if (Array.isArray(next)) {
        stack.push({ kind: 'array', source: next, index: 0, items: [] })
      } else {
        // Object.keys sees an own `__proto__` that JSON.parse created; sorting is by UTF-16 code units.
        const source = next as Record<string, unknown>
        const names = Object.keys(source).sort()
        stack.push({ kind: 'object', source, names, index: 0, items: [] })
      }
      text = ''
    } else {
      // undefined, bigint, symbol, function: not a JSON value.
      return INVALID
    }

    // Either descend into the next child of the top container, or hand up finished values.
    for (;;) {
      const frame = stack[stack.length - 1]
      if (frame === undefined) return { kind: 'ok', text }
      if (text !== '') frame.items.push(text)
      if (frame.kind === 'array') {
        if (frame.index < frame.source.length) {
          next = frame.source[frame.index++]
          break
        }
        stack.pop()
        text = `[${frame.items.join(',')}]`
      } else {
        if (frame.index < frame.names.length) {
          const name = frame.names[frame.index++] as string
          frame.items.push(`${JSON.stringify(name)}:`)
          next = frame.source[name]
          break
        }
        stack.pop()
        text = closeMembers(frame.items)
      }
    }
  }
}

/** Joins alternating `"name":` and value pieces into object text. */
function closeMembers(items: readonly string[]): string {
  let text = '{'
  for (let i = 0; i < items.length; i += 2) {
    if (i > 0) text += ','
    text += (items[i] as string) + (items[i + 1] as string)
  }
  return `${text}}`
}
