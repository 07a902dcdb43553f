// Runs the store contract suite on the in-memory store.
import type { Store } from 'idempotency-kit'
import { describeStoreContract } from 'idempotency-kit/testing'
import { MemoryStore } from '../../src/stores/memory/memory-store.js'

describeStoreContract({
  name: 'memory',
  create: async (clockOffset) => new MemoryStore({ clockOffset }),
  createLimited: async (clockOffset, maxRecordsPerScope) => new MemoryStore({ clockOffset, maxRecordsPerScope }),
  corrupt: async (store, key) => {
    // A record of a format this code does not know, as a newer release might leave behind.
    recordsOf(store).set(key, { v: 2 })
  },
})

function recordsOf(store: Store): Map<string, unknown> {
  if (!(store instanceof MemoryStore)) throw new Error('the memory fixture only corrupts MemoryStore')
  return (store as unknown as { records: Map<string, unknown> }).records
}
