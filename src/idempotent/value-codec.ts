// Encodes a function's return value (and its arguments) as JSON that keeps what plain JSON loses.

/**
 * Why a value cannot be encoded: a kind it cannot round-trip (`unsupported`), a reference to one of its
 * own ancestors (`cycle`), or nesting deeper than the limit (`too_deep`).
 */
export type ValueRefusal = 'unsupported' | 'cycle' | 'too_deep'

/** The encoded tree (a JSON value), or why there is none; `path` points at the offending part (`$.a[0]`). */
export type EncodeResult =
  | { readonly kind: 'ok'; readonly tree: unknown }
  | { readonly kind: 'refused'; readonly reason: ValueRefusal; readonly path: string; readonly detail: string }

/** How strictly to encode. */
export interface EncodeOptions {
  /** Containers (arrays, objects, maps, sets) nested deeper than this are refused. */
  readonly maxDepth: number
  /**
   * `value`: everything must decode to an equal value of the same type. `arguments`: one-way, for keys and
   * fingerprints, so an instance with `toJSON()` (ObjectId, Decimal, Luxon) is accepted as what it returns.
   */
  readonly mode: 'value' | 'arguments'
}

/** A stored tree that is not what `encodeValue` writes: corruption or a newer format. */
export class ValueDecodeError extends Error {
  override readonly name = 'ValueDecodeError'
}

// A JSON object with a `$t` member is a tagged value; a plain object that has its own `$t` member is
// escaped as `{ $t: 'object', v: {...} }`, so no user data can pass for a tag.
const TAG = '$t'

type TypedArrayConstructor =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor

const TYPED_ARRAYS: Readonly<Record<string, TypedArrayConstructor>> = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
}

interface BufferLike {
  isBuffer(value: unknown): boolean
  from(bytes: Uint8Array): Uint8Array
}

// Node's Buffer when there is one; the codec itself stays runtime-neutral.
const NodeBuffer = (globalThis as { Buffer?: BufferLike }).Buffer

function isPlainPrototype(proto: object | null): boolean {
  if (proto === null || proto === Object.prototype) return true
  // An object from another realm (vm, an iframe) has that realm's Object.prototype.
  const ctor = (proto as { constructor?: unknown }).constructor
  return Object.getPrototypeOf(proto) === null && typeof ctor === 'function' && ctor.name === 'Object'
}

function typedArrayName(value: ArrayBufferView): string | undefined {
  for (const [name, ctor] of Object.entries(TYPED_ARRAYS)) {
    if (Object.getPrototypeOf(value) === ctor.prototype) return name
  }
  return undefined
}

function specialNumber(n: number): string | undefined {
  if (Number.isNaN(n)) return 'NaN'
  if (n === Number.POSITIVE_INFINITY) return 'Infinity'
  if (n === Number.NEGATIVE_INFINITY) return '-Infinity'
  if (Object.is(n, -0)) return '-0'
  return undefined
}

/**
 * Encodes a value as a JSON tree that `decodeValue` turns back into an equal value of the same types:
 * JSON values plus undefined, NaN, ±Infinity, -0, BigInt, Date, Map, Set, Buffer, typed arrays and
 * ArrayBuffer, nested. Functions, symbols, other class instances and cycles are refused, never dropped.
 * An object reached twice (not a cycle) decodes as two equal copies.
 *
 * @example
 * encodeValue(new Map([[1n, new Date(0)]]), { maxDepth: 128, mode: 'value' })
 */
export function encodeValue(value: unknown, options: EncodeOptions): EncodeResult {
  const ancestors = new Set<object>()
  class Refused {
    constructor(
      readonly reason: ValueRefusal,
      readonly path: string,
      readonly detail: string,
    ) {}
  }

  function refuse(path: string, detail: string): never {
    throw new Refused('unsupported', path, detail)
  }

  function visit(v: unknown, path: string, depth: number): unknown {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return v
      case 'number': {
        const special = specialNumber(v)
        return special === undefined ? v : { [TAG]: 'number', v: special }
      }
      case 'undefined':
        return { [TAG]: 'undefined' }
      case 'bigint':
        return { [TAG]: 'bigint', v: v.toString() }
      case 'function':
        return refuse(path, `a function${v.name ? ` (${v.name})` : ''} cannot be stored`)
      case 'symbol':
        return refuse(path, `a symbol (${v.description ?? ''}) cannot be stored`)
      case 'object':
        if (v === null) return null
        return container(v, path, depth)
      default:
        return refuse(path, `a ${typeof v} cannot be stored`)
    }
  }

  function container(v: object, path: string, depth: number): unknown {
    if (ancestors.has(v)) throw new Refused('cycle', path, 'the value refers to itself (a cycle)')
    if (depth >= options.maxDepth) {
      throw new Refused('too_deep', path, `the value is nested deeper than ${options.maxDepth} levels`)
    }
    ancestors.add(v)
    try {
      return containerBody(v, path, depth + 1)
    } finally {
      ancestors.delete(v)
    }
  }

  function containerBody(v: object, path: string, depth: number): unknown {
    if (Array.isArray(v)) {
      const items: unknown[] = []
      // Indices only, holes as undefined: extra properties on an array are not part of its value.
      for (let i = 0; i < v.length; i++) items.push(visit(v[i], `${path}[${i}]`, depth))
      return items
    }
    const proto = Object.getPrototypeOf(v) as object | null
    if (proto === Date.prototype) {
      const time = (v as Date).getTime()
      return { [TAG]: 'date', v: Number.isNaN(time) ? null : time }
    }
    if (proto === Map.prototype) {
      const entries: unknown[] = []
      let i = 0
      for (const [key, item] of v as Map<unknown, unknown>) {
        entries.push([visit(key, `${path}.<key ${i}>`, depth), visit(item, `${path}.<value ${i}>`, depth)])
        i++
      }
      return { [TAG]: 'map', v: entries }
    }
    if (proto === Set.prototype) {
      const items: unknown[] = []
      let i = 0
      for (const item of v as Set<unknown>) items.push(visit(item, `${path}.<item ${i++}>`, depth))
      return { [TAG]: 'set', v: items }
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const bytes = base64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))
      if (NodeBuffer?.isBuffer(v) === true) return { [TAG]: 'buffer', v: bytes }
      const name = typedArrayName(v)
      if (name !== undefined) return { [TAG]: 'typed', c: name, v: bytes }
    }
    if (proto === ArrayBuffer.prototype) return { [TAG]: 'arraybuffer', v: base64(new Uint8Array(v as ArrayBuffer)) }
    if (isPlainPrototype(proto)) {
      if (Object.getOwnPropertySymbols(v).some((s) => Object.prototype.propertyIsEnumerable.call(v, s))) {
        refuse(path, 'an object with symbol keys cannot be stored')
      }
      const source = v as Record<string, unknown>
      const members: Record<string, unknown> = {}
      for (const name of Object.keys(source)) {
        const item = visit(source[name], `${path}${memberPath(name)}`, depth)
        // defineProperty: an own `__proto__` member stays a member instead of changing the prototype.
        Object.defineProperty(members, name, { value: item, enumerable: true, writable: true, configurable: true })
      }
      return Object.hasOwn(source, TAG) ? { [TAG]: 'object', v: members } : members
    }
    const className = (proto as { constructor?: { name?: string } }).constructor?.name ?? 'an unknown class'
    if (options.mode === 'arguments' && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      const json: unknown = (v as { toJSON(): unknown }).toJSON()
      return { [TAG]: 'json', c: className, v: visit(json, path, depth) }
    }
    return refuse(
      path,
      `an instance of ${className} cannot be stored: return plain data (objects, arrays, Date, Map, Set, ` +
        'BigInt, Buffer, typed arrays)',
    )
  }

  try {
    return { kind: 'ok', tree: visit(value, '$', 0) }
  } catch (error) {
    if (error instanceof Refused)
      return { kind: 'refused', reason: error.reason, path: error.path, detail: error.detail }
    throw error
  }
}

function memberPath(name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`
}

/**
 * Turns a tree written by `encodeValue` (mode `value`) back into the value; throws `ValueDecodeError` on
 * anything else, so a corrupt record is never mistaken for a result.
 *
 * @example
 * decodeValue(encodeValue(new Set([1]), { maxDepth: 128, mode: 'value' }).tree) // Set { 1 }
 */
export function decodeValue(tree: unknown): unknown {
  return revive(tree, '$')
}

function revive(node: unknown, path: string): unknown {
  if (node === null || typeof node === 'string' || typeof node === 'boolean') return node
  if (typeof node === 'number') return node
  if (Array.isArray(node)) return node.map((item, i) => revive(item, `${path}[${i}]`))
  if (typeof node !== 'object') throw new ValueDecodeError(`unexpected ${typeof node} at ${path}`)
  const record = node as Record<string, unknown>
  if (!Object.hasOwn(record, TAG)) return reviveMembers(record, path)
  const tag = record[TAG]
  const v = record.v
  switch (tag) {
    case 'undefined':
      return undefined
    case 'number':
      if (v === 'NaN') return Number.NaN
      if (v === 'Infinity') return Number.POSITIVE_INFINITY
      if (v === '-Infinity') return Number.NEGATIVE_INFINITY
      if (v === '-0') return -0
      break
    case 'bigint':
      if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v)
      break
    case 'date':
      if (v === null) return new Date(Number.NaN)
      if (typeof v === 'number') return new Date(v)
      break
    case 'map':
      if (Array.isArray(v)) {
        const map = new Map<unknown, unknown>()
        v.forEach((entry: unknown, i) => {
          if (!Array.isArray(entry) || entry.length !== 2) throw new ValueDecodeError(`bad map entry at ${path}`)
          map.set(revive(entry[0], `${path}.<key ${i}>`), revive(entry[1], `${path}.<value ${i}>`))
        })
        return map
      }
      break
    case 'set':
      if (Array.isArray(v)) return new Set(v.map((item, i) => revive(item, `${path}.<item ${i}>`)))
      break
    case 'buffer':
      if (typeof v === 'string') {
        const bytes = unbase64(v, path)
        return NodeBuffer === undefined ? bytes : NodeBuffer.from(bytes)
      }
      break
    case 'typed': {
      const ctor =
        typeof record.c === 'string' && Object.hasOwn(TYPED_ARRAYS, record.c) ? TYPED_ARRAYS[record.c] : undefined
      if (ctor !== undefined && typeof v === 'string') {
        const bytes = unbase64(v, path)
        if (bytes.byteLength % ctor.BYTES_PER_ELEMENT !== 0) break
        return new ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / ctor.BYTES_PER_ELEMENT)
      }
      break
    }
    case 'arraybuffer':
      if (typeof v === 'string') {
        const bytes = unbase64(v, path)
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
      }
      break
    case 'object':
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
        return reviveMembers(v as Record<string, unknown>, path)
      }
      break
    default:
      break
  }
  throw new ValueDecodeError(`unknown or malformed tagged value ${JSON.stringify(tag)} at ${path}`)
}

function reviveMembers(record: Record<string, unknown>, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const name of Object.keys(record)) {
    const value = revive(record[name], `${path}${memberPath(name)}`)
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true })
  }
  return out
}

// btoa/atob over binary strings, in chunks: runtime-neutral, no Buffer needed.
const CHUNK = 0x8000

function base64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK))
  }
  return btoa(binary)
}

function unbase64(text: string, path: string): Uint8Array {
  let binary: string
  try {
    binary = atob(text)
  } catch {
    throw new ValueDecodeError(`bad base64 at ${path}`)
  }
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
