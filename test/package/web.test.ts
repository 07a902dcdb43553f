// idempotency-kit/web: the engine and the memory store on a runtime with no node: modules.
import { createIdempotency as createNodeIdempotency, MemoryStore as NodeMemoryStore } from 'idempotency-kit'
import { createIdempotency, MemoryStore } from 'idempotency-kit/web'
import { describe, expect, it } from 'vitest'
import { importGraph } from '../support/import-graph.js'

const request = (key: string, body: string) => ({
  method: 'POST',
  url: '/charge',
  header: (name: string) => (name === 'idempotency-key' ? key : undefined),
  body: { kind: 'raw', bytes: new TextEncoder().encode(body) } as const,
  contentType: 'application/json',
  scope: 'tenant',
})

describe('idempotency-kit/web', () => {
  it('imports no node: module and no package at all', () => {
    const { files, external } = importGraph('web.ts')
    expect(files.some((f) => f.endsWith('stores/memory/memory-store.ts'))).toBe(true)
    expect(files.filter((f) => /node-crypto|create-idempotency/.test(f))).toEqual([])
    expect(external).toEqual([])
  })

  it('agrees with the node:crypto engine: the same request is one record, replayed by either', async () => {
    const store = new MemoryStore()
    const web = createIdempotency({ store })
    const node = createNodeIdempotency({ store })
    const decision = await web.handle(request('k', '{"b":2,"a":1}'))
    if (decision.kind !== 'execute') throw new Error(`expected execute, got ${decision.kind}`)
    await decision.execution.finish({ kind: 'response', status: 201, headers: [], body: new Uint8Array([7]) })
    const replay = await node.handle(request('k', '{"a":1,"b":2}'))
    expect(replay.kind === 'respond' && [replay.response.status, ...replay.response.body]).toEqual([201, 7])
    expect(NodeMemoryStore).toBe(MemoryStore)
  })
})
