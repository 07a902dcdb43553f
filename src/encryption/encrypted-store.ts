/** A `Store` wrapper that keeps stored responses encrypted at rest (AES-256-GCM), bound to their record. */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { IdempotencyConfigError, IdempotencyStoreError } from '../core/errors.js'
import type { BeginResult, CompleteInput, Store, StoredRecord, StoredResponse } from '../core/store.js'

/** Keys and the one to encrypt with; decrypting accepts any key listed, so old records survive a rotation. */
export interface EncryptedStoreOptions {
  /** Key id → 32-byte AES-256 key. Ids are 1–255 UTF-8 bytes and are stored beside each ciphertext. */
  readonly keys: Readonly<Record<string, Uint8Array>>
  /** The id under `keys` that new responses are encrypted with. */
  readonly currentKeyId: string
}

/** First byte of every envelope: the layout below, so a later layout can be told apart. */
const FORMAT = 1
const IV_BYTES = 12
const TAG_BYTES = 16
const KEY_BYTES = 32
const AAD_LABEL = 'idempotency-kit/encrypted-response/v1'
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * Wraps `store` so that every replayable response is stored as one AES-256-GCM envelope in the body
 * (headers and body encrypted together, headers left empty). The storage key, the key id, the status and
 * the format are the associated data: a ciphertext copied to another record, or a status edited in the
 * store, fails authentication. A response kept as unreplayable (status only) has nothing to hide and is
 * stored as it is. A record whose envelope names an unknown key id, or fails authentication, is an
 * `IdempotencyStoreError('undecodable')`: 503, never "no record".
 *
 * @example
 * const store = encryptedStore(new RedisStore({ client }), {
 *   keys: { '2026-11': Buffer.from(process.env.IDEMPOTENCY_KEY_2026_11 ?? '', 'base64') },
 *   currentKeyId: '2026-11',
 * })
 */
export function encryptedStore(store: Store, options: EncryptedStoreOptions): Store {
  const keys = validateKeys(options)
  const current = keys.get(options.currentKeyId)
  if (current === undefined) {
    throw new IdempotencyConfigError(`encryptedStore: currentKeyId ${options.currentKeyId} is not among the keys`)
  }
  const currentId = encoder.encode(options.currentKeyId)

  const encrypt = (storageKey: string, response: StoredResponse): StoredResponse => {
    if (!response.replayable) return response
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', current, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(associatedData(storageKey, options.currentKeyId, response.status))
    const sealed = Buffer.concat([cipher.update(serialize(response)), cipher.final()])
    const envelope = Buffer.concat([
      Uint8Array.of(FORMAT, currentId.byteLength),
      currentId,
      iv,
      cipher.getAuthTag(),
      sealed,
    ])
    return { status: response.status, headers: [], body: new Uint8Array(envelope), replayable: true }
  }

  const decrypt = (storageKey: string, stored: StoredResponse): StoredResponse => {
    if (!stored.replayable) return stored
    const envelope = Buffer.from(stored.body.buffer, stored.body.byteOffset, stored.body.byteLength)
    if (stored.headers.length !== 0 || envelope.byteLength < 2 || envelope[0] !== FORMAT) {
      throw undecodable('the stored response is not an encrypted envelope')
    }
    const idLength = envelope[1] ?? 0
    const ivAt = 2 + idLength
    const tagAt = ivAt + IV_BYTES
    const sealedAt = tagAt + TAG_BYTES
    if (idLength === 0 || envelope.byteLength < sealedAt) throw undecodable('the envelope is truncated')
    const keyId = decodeText(envelope.subarray(2, ivAt))
    const key = keyId === undefined ? undefined : keys.get(keyId)
    if (keyId === undefined || key === undefined) throw undecodable('the envelope names a key id not configured')
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, envelope.subarray(ivAt, tagAt), {
        authTagLength: TAG_BYTES,
      })
      decipher.setAAD(associatedData(storageKey, keyId, stored.status))
      decipher.setAuthTag(envelope.subarray(tagAt, sealedAt))
      const plain = Buffer.concat([decipher.update(envelope.subarray(sealedAt)), decipher.final()])
      return deserialize(stored.status, plain)
    } catch (error) {
      if (error instanceof IdempotencyStoreError) throw error
      // GCM says only "unable to authenticate": wrong key, another record's ciphertext, or tampering.
      throw undecodable('the envelope failed authentication', error)
    }
  }

  const wrapped: Store = {
    async begin(input): Promise<BeginResult> {
      const result = await store.begin(input)
      return result.kind === 'replay' ? { kind: 'replay', response: decrypt(input.key, result.response) } : result
    },
    complete(input: CompleteInput) {
      return store.complete({ ...input, response: encrypt(input.key, input.response) })
    },
    release: (input) => store.release(input),
    extend: (input) => store.extend(input),
    async get(key): Promise<StoredRecord | null> {
      const record = await store.get(key)
      if (record === null || record.response === null) return record
      return { ...record, response: decrypt(key, record.response) }
    },
    delete: (key, deleteOptions) => store.delete(key, deleteOptions),
  }
  const { close } = store
  if (close !== undefined) wrapped.close = () => close.call(store)
  return wrapped
}

function validateKeys(options: EncryptedStoreOptions): Map<string, Buffer> {
  const keys = new Map<string, Buffer>()
  for (const [id, key] of Object.entries(options.keys)) {
    const idBytes = encoder.encode(id).byteLength
    if (idBytes < 1 || idBytes > 255) {
      throw new IdempotencyConfigError(`encryptedStore: key id ${JSON.stringify(id)} must be 1–255 UTF-8 bytes`)
    }
    if (!(key instanceof Uint8Array) || key.byteLength !== KEY_BYTES) {
      throw new IdempotencyConfigError(`encryptedStore: key ${id} must be ${KEY_BYTES} bytes (AES-256)`)
    }
    // A copy: a caller zeroing or reusing its buffer must not change what decrypts.
    keys.set(id, Buffer.from(key))
  }
  return keys
}

/** What GCM authenticates besides the ciphertext: the record it belongs to and the clear fields. */
function associatedData(storageKey: string, keyId: string, status: number): Buffer {
  return Buffer.from(`${AAD_LABEL}\0${storageKey}\0${keyId}\0${status}`, 'utf8')
}

/** Header count, then each name and value as length-prefixed UTF-8 (lossless for latin1 strings), then the body. */
function serialize(response: StoredResponse): Buffer {
  const parts: Uint8Array[] = [u32(response.headers.length)]
  for (const [name, value] of response.headers) {
    for (const text of [name, value]) {
      const bytes = encoder.encode(text)
      parts.push(u32(bytes.byteLength), bytes)
    }
  }
  parts.push(response.body)
  return Buffer.concat(parts)
}

function deserialize(status: number, plain: Buffer): StoredResponse {
  let at = 0
  const read = (length: number): Buffer => {
    if (at + length > plain.byteLength) throw undecodable('the decrypted response is truncated')
    const slice = plain.subarray(at, at + length)
    at += length
    return slice
  }
  const count = read(4).readUInt32BE(0)
  const headers: Array<readonly [string, string]> = []
  for (let i = 0; i < count; i++) {
    const name = decodeText(read(read(4).readUInt32BE(0)))
    const value = decodeText(read(read(4).readUInt32BE(0)))
    if (name === undefined || value === undefined) throw undecodable('a decrypted header is not UTF-8')
    headers.push([name, value])
  }
  return { status, headers, body: new Uint8Array(plain.subarray(at)), replayable: true }
}

function u32(value: number): Uint8Array {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE(value, 0)
  return bytes
}

function decodeText(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes)
  } catch {
    return undefined
  }
}

function undecodable(message: string, cause?: unknown): IdempotencyStoreError {
  return new IdempotencyStoreError(
    'undecodable',
    `encryptedStore: ${message}`,
    cause === undefined ? undefined : { cause },
  )
}
