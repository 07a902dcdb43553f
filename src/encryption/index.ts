/** @module idempotency-kit/encryption: stored responses encrypted at rest (AES-256-GCM) around any store. */
export type { EncryptedStoreOptions } from './encrypted-store.js'
export { encryptedStore } from './encrypted-store.js'
