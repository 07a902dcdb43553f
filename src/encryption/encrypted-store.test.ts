// encryptedStore over MemoryStore: the whole store contract, then what encryption itself must guarantee.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { IdempotencyConfigError, IdempotencyStoreError } from '../core/errors.js'
import type { Store, StoredResponse } from '../core/store.js'
import { MemoryStore } from '../stores/memory/memory-store.js'
import { randomStorageKey, randomToken } from '../testing/random-storage-key.js'
import { describeStoreContract } from '../testing/store-contract.js'
import { encryptedStore } from './encrypted-store.js'

const KEY_1 = randomBytes(32)
const KEY_2 = randomBytes(32)
const LEASE = 10_000
const RETENTION = 60_000
const FP = 'v1:encrypted'
const SCOPE = 'scope'
const SECRET = 'card 4242424242424242 for cus_secret'
const RESPONSE: StoredResponse = {
  status: 201,
  headers: [
    ['content-type', 'application/json'],
    ['x-latin1', 'caf\u00e9 \u0080\u00ff'],
    ['x-repeated', 'one'],
    ['x-repeated', 'two'],
    ['x-secret-header', SECRET],
  ],
  body: new TextEncoder().encode(JSON.stringify({ id: 'ch_1', note: SECRET })),
  replayable: true,
}

const inner = new WeakMap<Store, MemoryStore>()

describeStoreContract({
  name: 'encrypted memory',
  create: async (clockOffset) => {
    const memory = new MemoryStore({ clockOffset })
    const store = encryptedStore(memory, { keys: { k1: KEY_1 }, currentKeyId: 'k1' })
    inner.set(store, memory)
    return store
  },
  corrupt: async (store, key) => {
    const memory = inner.get(store)
    if (memory === undefined) throw new Error('not a store of this fixture')
    ;(memory as unknown as { records: Map<string, unknown> }).records.set(key, { v: 2 })
  },
})

/** Begins and completes `key` on `store`; answers the token. */
async function completed(store: Store, key: string, response: StoredResponse = RESPONSE): Promise<string> {
  const token = randomToken()
  expect(
    (await store.begin({ key, scope: SCOPE, fingerprint: FP, token, leaseMs: LEASE, retentionMs: RETENTION })).kind,
  ).toBe('acquired')
  expect(await store.complete({ key, token, response, retentionMs: RETENTION })).toBe(true)
  return token
}

/** What the wrapped store actually holds under `key`. */
async function rawResponse(store: Store, key: string): Promise<StoredResponse> {
  const response = (await store.get(key))?.response
  if (response === null || response === undefined) throw new Error(`no stored response under ${key}`)
  return response
}

async function expectUndecodable(operation: Promise<unknown>): Promise<void> {
  const error = await operation.then(
    (value) => new Error(`expected a rejection, got ${JSON.stringify(value)}`),
    (reason: unknown) => reason,
  )
  expect(error).toBeInstanceOf(IdempotencyStoreError)
  expect((error as IdempotencyStoreError).reason).toBe('undecodable')
}

const replayOf = (store: Store, key: string) =>
  store.begin({ key, scope: SCOPE, fingerprint: FP, token: randomToken(), leaseMs: LEASE, retentionMs: RETENTION })

describe('encryptedStore', () => {
  it('keeps neither the body nor any header in clear in the underlying store', async () => {
    const memory = new MemoryStore()
    const store = encryptedStore(memory, { keys: { k1: KEY_1 }, currentKeyId: 'k1' })
    const key = randomStorageKey()
    await completed(store, key)
    const raw = await rawResponse(memory, key)
    expect(raw.headers).toEqual([])
    expect(raw.status).toBe(201)
    const bytes = Buffer.from(raw.body)
    for (const needle of [SECRET, 'ch_1', 'content-type', 'x-repeated', 'caf']) {
      expect(bytes.includes(Buffer.from(needle, 'latin1')), needle).toBe(false)
    }
    expect(await store.get(key)).toMatchObject({ state: 'completed', response: RESPONSE })
  })

  it('refuses a ciphertext moved to another record: undecodable, never replayed', async () => {
    const memory = new MemoryStore()
    const store = encryptedStore(memory, { keys: { k1: KEY_1 }, currentKeyId: 'k1' })
    const victim = randomStorageKey()
    await completed(store, victim)
    const stolen = await rawResponse(memory, victim)
    // Someone with write access to the store plants the victim's ciphertext under their own key.
    const mine = randomStorageKey()
    await completed(memory, mine, stolen)
    await expectUndecodable(store.get(mine))
    await expectUndecodable(replayOf(store, mine))
    expect((await replayOf(store, victim)).kind).toBe('replay')
  })

  it('refuses an edited status, a flipped byte and a truncated envelope', async () => {
    const memory = new MemoryStore()
    const store = encryptedStore(memory, { keys: { k1: KEY_1 }, currentKeyId: 'k1' })
    const source = await rawResponse(memory, await completedKey(store))
    const flipped = Uint8Array.from(source.body)
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1
    const variants: StoredResponse[] = [
      { ...source, status: 200 },
      { ...source, body: flipped },
      { ...source, body: source.body.subarray(0, 20) },
      { ...source, headers: [['x-added', '1']] },
    ]
    for (const variant of variants) {
      const key = randomStorageKey()
      // Each tampered envelope is bound to `key` as its own record would be, except for the edit.
      await completed(memory, key, await reencryptFor(key, source, variant))
      await expectUndecodable(store.get(key))
    }
  })

  it('rotates: old records still decrypt, new ones use the current key id, a dropped key is undecodable', async () => {
    const memory = new MemoryStore()
    const before = encryptedStore(memory, { keys: { old: KEY_1 }, currentKeyId: 'old' })
    const oldKey = randomStorageKey()
    await completed(before, oldKey)

    const rotated = encryptedStore(memory, { keys: { old: KEY_1, new: KEY_2 }, currentKeyId: 'new' })
    const newKey = randomStorageKey()
    await completed(rotated, newKey)
    expect(await rotated.get(oldKey)).toMatchObject({ response: RESPONSE })
    expect(await rotated.get(newKey)).toMatchObject({ response: RESPONSE })
    expect(keyIdOf(await rawResponse(memory, oldKey))).toBe('old')
    expect(keyIdOf(await rawResponse(memory, newKey))).toBe('new')

    const retired = encryptedStore(memory, { keys: { new: KEY_2 }, currentKeyId: 'new' })
    expect(await retired.get(newKey)).toMatchObject({ response: RESPONSE })
    await expectUndecodable(retired.get(oldKey))
    await expectUndecodable(replayOf(retired, oldKey))
  })

  it('refuses a known key id holding another key (a key replaced under the same id)', async () => {
    const memory = new MemoryStore()
    const key = randomStorageKey()
    await completed(encryptedStore(memory, { keys: { k: KEY_1 }, currentKeyId: 'k' }), key)
    await expectUndecodable(encryptedStore(memory, { keys: { k: KEY_2 }, currentKeyId: 'k' }).get(key))
  })

  it('answers a plaintext record written before encryption was on as undecodable, not as a replay', async () => {
    const memory = new MemoryStore()
    const key = randomStorageKey()
    await completed(memory, key)
    await expectUndecodable(encryptedStore(memory, { keys: { k1: KEY_1 }, currentKeyId: 'k1' }).get(key))
  })

  it('stores an unreplayable response (status only) as it is', async () => {
    const memory = new MemoryStore()
    const store = encryptedStore(memory, { keys: { k1: KEY_1 }, currentKeyId: 'k1' })
    const key = randomStorageKey()
    const unreplayable: StoredResponse = { status: 200, headers: [], body: new Uint8Array(0), replayable: false }
    await completed(store, key, unreplayable)
    expect(await rawResponse(memory, key)).toEqual(unreplayable)
    expect(await replayOf(store, key)).toEqual({ kind: 'replay', response: unreplayable })
  })

  it('rejects bad options at construction', () => {
    const memory = new MemoryStore()
    expect(() => encryptedStore(memory, { keys: { k: randomBytes(16) }, currentKeyId: 'k' })).toThrow(
      IdempotencyConfigError,
    )
    expect(() => encryptedStore(memory, { keys: { k: KEY_1 }, currentKeyId: 'other' })).toThrow(IdempotencyConfigError)
    expect(() => encryptedStore(memory, { keys: { '': KEY_1 }, currentKeyId: '' })).toThrow(IdempotencyConfigError)
    expect(() => encryptedStore(memory, { keys: { ['x'.repeat(256)]: KEY_1 }, currentKeyId: 'x' })).toThrow(
      IdempotencyConfigError,
    )
  })

  it('passes close through to the wrapped store', async () => {
    let closed = 0
    const memory = new MemoryStore()
    const closable: Store = {
      begin: (i) => memory.begin(i),
      complete: (i) => memory.complete(i),
      release: (i) => memory.release(i),
      extend: (i) => memory.extend(i),
      get: (k) => memory.get(k),
      delete: (k, o) => memory.delete(k, o),
      close: async () => void closed++,
    }
    await encryptedStore(closable, { keys: { k1: KEY_1 }, currentKeyId: 'k1' }).close?.()
    expect(closed).toBe(1)
  })
})

async function completedKey(store: Store): Promise<string> {
  const key = randomStorageKey()
  await completed(store, key)
  return key
}

/** The key id an envelope names (format byte, id length, id). */
function keyIdOf(response: StoredResponse): string {
  const length = response.body[1] ?? 0
  return Buffer.from(response.body.subarray(2, 2 + length)).toString('utf8')
}

/**
 * A tampered copy that is otherwise valid for `key`: the envelope is re-made by an honest store under the
 * same key first, so the only reason for failing is the edit in `variant` (relative to `source`).
 */
async function reencryptFor(key: string, source: StoredResponse, variant: StoredResponse): Promise<StoredResponse> {
  const honest = new MemoryStore()
  await completed(encryptedStore(honest, { keys: { k1: KEY_1 }, currentKeyId: 'k1' }), key)
  const valid = await rawResponse(honest, key)
  const bodyEdited = variant.body !== source.body
  return {
    ...valid,
    status: variant.status,
    headers: variant.headers,
    body: bodyEdited ? editLike(valid.body, source.body, variant.body) : valid.body,
  }
}

/** Applies to `valid` the edit that turned `from` into `to` (a flipped last byte or a truncation). */
function editLike(valid: Uint8Array, from: Uint8Array, to: Uint8Array): Uint8Array {
  if (to.length < from.length) return valid.subarray(0, to.length)
  const edited = Uint8Array.from(valid)
  edited[edited.length - 1] = (edited[edited.length - 1] ?? 0) ^ 1
  return edited
}
