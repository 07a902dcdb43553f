// Parses an Idempotency-Key header value in its bare (Stripe) or RFC 9651 sf-string form.

/** The longest key accepted, in characters, in either form. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255

/** The outcome of reading an Idempotency-Key header value. */
export type ParsedIdempotencyKey =
  | { readonly kind: 'ok'; readonly key: string }
  | { readonly kind: 'missing' }
  | { readonly kind: 'invalid'; readonly reason: string }

const invalid = (reason: string): ParsedIdempotencyKey => ({ kind: 'invalid', reason })

const SP = 0x20
const DQUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * Reads a header value into a key: `"abc"` (an sf-string Item, parameters ignored) and `abc` give the
 * same key, which must be 1 to 255 characters of %x21-7E.
 *
 * @example
 * parseIdempotencyKey(req.headers['idempotency-key']) // { kind: 'ok', key: 'abc' }
 */
export function parseIdempotencyKey(value: string | undefined): ParsedIdempotencyKey {
  if (value === undefined) return { kind: 'missing' }
  if (value.length === 0) return invalid('The Idempotency-Key header is empty.')
  let start = 0
  while (value.charCodeAt(start) === SP) start++
  const key = value.charCodeAt(start) === DQUOTE ? parseSfStringItem(value, start) : value
  if (typeof key !== 'string') return key
  return checkKey(key)
}

function checkKey(key: string): ParsedIdempotencyKey {
  if (key.length === 0) return invalid('The Idempotency-Key is empty.')
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    return invalid(`The Idempotency-Key is longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`)
  }
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) {
      // Two header lines reach Node joined as `a, b`; the space rule is what rejects them.
      return invalid(
        'The Idempotency-Key must be visible ASCII characters only (no spaces, no commas between ' +
          'repeated headers, no control or non-ASCII characters), sent in one header line.',
      )
    }
  }
  return { kind: 'ok', key }
}

/** Parses an sf-string Item at `start` (RFC 9651 §4.2.3 and §4.2.5); returns its unescaped content. */
function parseSfStringItem(input: string, start: number): string | ParsedIdempotencyKey {
  let pos = start + 1
  let content = ''
  let runStart = pos
  for (;;) {
    if (pos >= input.length) return invalid('The quoted Idempotency-Key has no closing quote.')
    const c = input.charCodeAt(pos)
    if (c === DQUOTE) break
    if (c === BACKSLASH) {
      const next = input.charCodeAt(pos + 1)
      // RFC 9651 §4.2.5: only `\"` and `\\` are escapes; anything else is a parse failure.
      if (next !== DQUOTE && next !== BACKSLASH) {
        return invalid('The quoted Idempotency-Key has an escape other than \\" or \\\\.')
      }
      content += input.slice(runStart, pos)
      runStart = pos + 1
      pos += 2
      continue
    }
    if (c < 0x20 || c > 0x7e) {
      return invalid('The quoted Idempotency-Key contains a character outside printable ASCII.')
    }
    pos++
  }
  content += input.slice(runStart, pos)
  pos++
  const afterParameters = skipParameters(input, pos)
  if (afterParameters < 0) return invalid('The Idempotency-Key has malformed parameters.')
  pos = afterParameters
  while (input.charCodeAt(pos) === SP) pos++
  if (pos !== input.length) {
    return invalid('The quoted Idempotency-Key is followed by unexpected characters.')
  }
  return content
}

const isLcAlpha = (c: number): boolean => c >= 0x61 && c <= 0x7a
const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || isLcAlpha(c)
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39
const isKeyChar = (c: number): boolean =>
  isLcAlpha(c) || isDigit(c) || c === 0x5f || c === 0x2d || c === 0x2e || c === 0x2a
const TCHAR_PUNCTUATION = "!#$%&'*+-.^_`|~"
const isTchar = (c: number): boolean => isAlpha(c) || isDigit(c) || TCHAR_PUNCTUATION.includes(String.fromCharCode(c))
const isBase64Char = (c: number): boolean => isAlpha(c) || isDigit(c) || c === 0x2b || c === 0x2f || c === 0x3d
const isLcHex = (c: number): boolean => isDigit(c) || (c >= 0x61 && c <= 0x66)

/** Skips `;key[=bare-item]` parameters (RFC 9651 §4.2.3.2); returns the end, or -1 if malformed. */
function skipParameters(input: string, from: number): number {
  let pos = from
  while (input.charCodeAt(pos) === 0x3b) {
    pos++
    while (input.charCodeAt(pos) === SP) pos++
    if (!isLcAlpha(input.charCodeAt(pos)) && input.charCodeAt(pos) !== 0x2a) return -1
    pos++
    while (pos < input.length && isKeyChar(input.charCodeAt(pos))) pos++
    if (input.charCodeAt(pos) === 0x3d) {
      pos = skipBareItem(input, pos + 1)
      if (pos < 0) return -1
    }
  }
  return pos
}

/** Skips one bare item (RFC 9651 §4.2.3.1); returns its end, or -1 if malformed. */
function skipBareItem(input: string, from: number): number {
  const c = input.charCodeAt(from)
  if (c === 0x2d || isDigit(c)) return skipNumber(input, from)
  if (c === DQUOTE) return skipString(input, from)
  if (isAlpha(c) || c === 0x2a) {
    let pos = from + 1
    while (pos < input.length) {
      const t = input.charCodeAt(pos)
      if (!isTchar(t) && t !== 0x3a && t !== 0x2f) break
      pos++
    }
    return pos
  }
  if (c === 0x3a) {
    let pos = from + 1
    while (pos < input.length && isBase64Char(input.charCodeAt(pos))) pos++
    return input.charCodeAt(pos) === 0x3a ? pos + 1 : -1
  }
  if (c === 0x3f) {
    const b = input.charCodeAt(from + 1)
    return b === 0x30 || b === 0x31 ? from + 2 : -1
  }
  if (c === 0x40) {
    const pos = skipNumber(input, from + 1)
    return pos < 0 || input.slice(from + 1, pos).includes('.') ? -1 : pos
  }
  if (c === 0x25 && input.charCodeAt(from + 1) === DQUOTE) return skipDisplayString(input, from + 2)
  return -1
}

/** Integer or Decimal (RFC 9651 §4.2.4): at most 15 digits, or 12 + `.` + 1 to 3. */
function skipNumber(input: string, from: number): number {
  let pos = from
  if (input.charCodeAt(pos) === 0x2d) pos++
  const intStart = pos
  while (pos < input.length && isDigit(input.charCodeAt(pos))) pos++
  const intDigits = pos - intStart
  if (intDigits === 0) return -1
  if (input.charCodeAt(pos) !== 0x2e) return intDigits > 15 ? -1 : pos
  if (intDigits > 12) return -1
  pos++
  const fracStart = pos
  while (pos < input.length && isDigit(input.charCodeAt(pos))) pos++
  const fracDigits = pos - fracStart
  return fracDigits < 1 || fracDigits > 3 ? -1 : pos
}

function skipString(input: string, from: number): number {
  let pos = from + 1
  while (pos < input.length) {
    const c = input.charCodeAt(pos)
    if (c === DQUOTE) return pos + 1
    if (c === BACKSLASH) {
      const next = input.charCodeAt(pos + 1)
      if (next !== DQUOTE && next !== BACKSLASH) return -1
      pos += 2
      continue
    }
    if (c < 0x20 || c > 0x7e) return -1
    pos++
  }
  return -1
}

/** Display String (RFC 9651 §4.2.10): lowercase %xx escapes that must decode as UTF-8. */
function skipDisplayString(input: string, from: number): number {
  const bytes: number[] = []
  let pos = from
  while (pos < input.length) {
    const c = input.charCodeAt(pos)
    if (c < 0x20 || c > 0x7e) return -1
    if (c === DQUOTE) {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes))
      } catch {
        return -1
      }
      return pos + 1
    }
    if (c === 0x25) {
      const hi = input.charCodeAt(pos + 1)
      const lo = input.charCodeAt(pos + 2)
      if (!isLcHex(hi) || !isLcHex(lo)) return -1
      bytes.push(Number.parseInt(input.slice(pos + 1, pos + 3), 16))
      pos += 3
      continue
    }
    bytes.push(c)
    pos++
  }
  return -1
}
