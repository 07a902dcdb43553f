// idempotency-kit/testing: the store contract suite, so any store can prove it keeps the contract.

export { randomStorageKey, randomToken } from './random-storage-key.js'
export { ReferenceModel } from './reference-model.js'
export type { StoreContractOptions, StoreFixture } from './store-contract.js'
export { describeStoreContract } from './store-contract.js'
