// RedisStore on a real 3-master Redis Cluster of private redis-server processes, with ioredis Cluster.

import { ioredisClient, RedisStore } from 'idempotency-kit/redis'
import { Cluster } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { IdempotencyConfigError } from '../../src/core/errors.js'
import type { StoredResponse } from '../../src/core/store.js'
import { randomStorageKey, randomToken } from '../../src/testing/random-storage-key.js'
import { describeStoreContract } from '../../src/testing/store-contract.js'
import { startRedisCluster } from '../support/redis-server.js'

const RUN = Math.random().toString(36).slice(2, 10)
const PREFIX = `idem-test-${RUN}-cluster`
const LEASE = 10_000
const RETENTION = 60_000
const FP = 'v1:redis-cluster-test'
const RESPONSE: StoredResponse = {
  status: 201,
  headers: [['content-type', 'application/json']],
  body: new TextEncoder().encode('{"id":"ch_1"}'),
  replayable: true,
}

// Started at import so a missing redis-server fails the file with its hint; stopped by PID below,
// and by the helper's exit hook if this worker dies first.
const servers = await startRedisCluster(3)
const cluster = new Cluster(
  servers.nodes.map((node) => ({ host: node.host, port: node.port })),
  { enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 1 } },
)
cluster.on('error', () => {})
try {
  await new Promise<void>((resolve, reject) => {
    cluster.once('ready', () => resolve())
    setTimeout(() => reject(new Error('ioredis Cluster did not become ready in 10 s')), 10_000).unref()
  })
} catch (error) {
  cluster.disconnect()
  await servers.stop()
  throw error
}

afterAll(async () => {
  cluster.disconnect()
  await servers.stop()
})

/** Empties every node's script cache, as a restart, failover or resharding does. */
async function flushScripts(): Promise<void> {
  await Promise.all(servers.nodes.map((node) => node.cli('SCRIPT', 'FLUSH')))
}

/** Counts what the store sends through the Cluster client (pipelines and redirects included). */
const sent: string[] = []
{
  const original = cluster.sendCommand.bind(cluster)
  cluster.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
    sent.push(command.name.toLowerCase())
    return (original as (...args: unknown[]) => unknown)(command, ...rest)
  }) as typeof cluster.sendCommand
}

let flushes = 0
describeStoreContract({
  name: 'redis cluster (ioredis Cluster, 3 masters)',
  // Every store the suite opens starts on empty script caches: NOSCRIPT on each node, mid-run.
  create: async (clockOffset) => {
    await flushScripts()
    flushes++
    return new RedisStore({ client: ioredisClient(cluster), prefix: PREFIX, clockOffset })
  },
  corrupt: async (_store, key) => {
    await cluster.set(`${PREFIX}:${key}`, 'not a hash', 'PX', RETENTION)
  },
  dispose: async () => {
    for (const node of cluster.nodes('master')) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000)
        cursor = next
        // One DEL per key: keys on one node may still sit in different slots.
        for (const key of keys) await node.del(key)
      } while (cursor !== '0')
    }
  },
})

describe('RedisStore on Redis Cluster', () => {
  const store = new RedisStore({ client: ioredisClient(cluster), prefix: PREFIX })
  const keys = Array.from({ length: 30 }, () => randomStorageKey())
  const tokens = keys.map(() => randomToken())

  it('flushed the script caches mid-run for the contract suite', () => {
    expect(flushes).toBeGreaterThan(40)
  })

  it('spreads records over every master: no hash tag puts them in one slot', async () => {
    for (const [i, key] of keys.entries()) {
      expect((await store.begin(begin(key, tokens[i] ?? ''))).kind).toBe('acquired')
    }
    const perNode = await Promise.all(
      cluster.nodes('master').map(async (node) => {
        const [, found] = await node.scan('0', 'MATCH', `${PREFIX}:*`, 'COUNT', 10_000)
        return found.filter((key) => keys.some((k) => key.endsWith(k))).length
      }),
    )
    expect(perNode).toHaveLength(3)
    for (const count of perNode) expect(count).toBeGreaterThan(0)
    expect(perNode.reduce((a, b) => a + b, 0)).toBe(keys.length)
  })

  it('refuses maxRecordsPerScope at construction: a scope set would sit in another slot than its records', async () => {
    const client = ioredisClient(cluster)
    expect(client.cluster).toBe(true)
    expect(() => new RedisStore({ client, prefix: PREFIX, maxRecordsPerScope: 10 })).toThrow(IdempotencyConfigError)
    expect(() => new RedisStore({ client, prefix: PREFIX, maxRecordsPerScope: 10 })).toThrow(/Cluster/)
    // Why: the scope set and a record of that scope in different slots make the begin script fail on a Cluster.
    const slot = async (key: string) => Number(await cluster.call('CLUSTER', 'KEYSLOT', key))
    const key = `${PREFIX}:${randomStorageKey()}`
    let set = `${PREFIX}:scope:${randomStorageKey()}`
    while ((await slot(set)) === (await slot(key))) set = `${PREFIX}:scope:${randomStorageKey()}`
    await expect(cluster.eval('return 1', 2, key, set)).rejects.toThrow(/CROSSSLOT/)
  })

  it('keeps working after SCRIPT FLUSH on every node: one EVAL per node, then EVALSHA alone', async () => {
    await flushScripts()
    sent.length = 0
    for (const [i, key] of keys.entries()) {
      expect(await store.complete({ key, token: tokens[i] ?? '', response: RESPONSE, retentionMs: RETENTION })).toBe(
        true,
      )
    }
    expect(sent.filter((name) => name === 'eval')).toHaveLength(3)
    expect(sent.filter((name) => name === 'evalsha')).toHaveLength(keys.length)
    sent.length = 0
    for (const key of keys) expect((await store.begin(begin(key))).kind).toBe('replay')
    expect(sent.filter((name) => name === 'eval')).toHaveLength(3)
    sent.length = 0
    for (const key of keys) expect((await store.begin(begin(key))).kind).toBe('replay')
    expect(sent).toEqual(keys.map(() => 'evalsha'))
  })

  it('works over a Cluster client with enableAutoPipelining: concurrent calls on every node, after NOSCRIPT', async () => {
    const piped = new Cluster(
      servers.nodes.map((node) => ({ host: node.host, port: node.port })),
      { enableOfflineQueue: false, enableAutoPipelining: true, redisOptions: { maxRetriesPerRequest: 1 } },
    )
    piped.on('error', () => {})
    try {
      await new Promise<void>((resolve) => piped.once('ready', () => resolve()))
      const store = new RedisStore({ client: ioredisClient(piped), prefix: PREFIX })
      const fresh = Array.from({ length: 30 }, () => randomStorageKey())
      const owners = fresh.map(() => randomToken())
      const body = Uint8Array.from([0xff, 0x00, 0xc3, 0x28])
      const response = { ...RESPONSE, body }
      await flushScripts()
      // All in one tick, so ioredis batches them per node; every node answers NOSCRIPT first.
      const begun = await Promise.all(fresh.map((key, i) => store.begin(begin(key, owners[i]))))
      expect(begun.map((r) => r.kind)).toEqual(fresh.map(() => 'acquired'))
      const done = await Promise.all(
        fresh.map((key, i) => store.complete({ key, token: owners[i] ?? '', response, retentionMs: RETENTION })),
      )
      expect(done).toEqual(fresh.map(() => true))
      const replays = await Promise.all(fresh.map((key) => store.begin(begin(key))))
      for (const replay of replays) {
        expect(replay.kind).toBe('replay')
        if (replay.kind === 'replay') expect(Buffer.from(replay.response.body).equals(Buffer.from(body))).toBe(true)
      }
    } finally {
      piped.disconnect()
    }
  })
})

function begin(key: string, token = randomToken()) {
  return { key, scope: 'scope', fingerprint: FP, token, leaseMs: LEASE, retentionMs: RETENTION }
}
