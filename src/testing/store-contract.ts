// The store contract suite: any `Store` runs it to prove it keeps the record rules of DESIGN §2 and §3.
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { IdempotencyStoreError } from '../core/errors.js'
import type { BeginResult, ClockOffset, Store, StoredRecord, StoredResponse } from '../core/store.js'
import { expectReplayOf, expectSameResponse } from './expect-same-response.js'
import { runModelCheck } from './model-check.js'
import { randomStorageKey, randomToken } from './random-storage-key.js'

/** How the contract suite makes, breaks and cleans up the store under test. */
export interface StoreFixture {
  readonly name: string
  /** A fresh store whose clock is its own clock plus clockOffset(); keys of one test never meet another's. */
  create(clockOffset: ClockOffset): Promise<Store>
  /**
   * Optional: a fresh store like `create`'s that keeps at most `maxRecordsPerScope` live records per scope
   * (`BeginInput.scope`). The per-scope tests run only for fixtures that have it.
   */
  createLimited?(clockOffset: ClockOffset, maxRecordsPerScope: number): Promise<Store>
  /** Writes something under `key` that the store cannot decode (unknown format version or garbage). */
  corrupt(store: Store, key: string): Promise<void>
  /** Runs once after the suite: remove everything the fixture created. */
  dispose?(): Promise<void>
}

/** Tuning for `describeStoreContract`. */
export interface StoreContractOptions {
  /** Runs of the model-based test (each a fresh sequence of up to 30 operations); default 150. */
  readonly modelRuns?: number
  /**
   * Whether parallel begins of distinct keys in one scope never pass the per-scope limit; default true. A store
   * that checks the limit without serialising a scope's inserts (PostgreSQL under READ COMMITTED) says false and
   * documents by how much it can pass it.
   */
  readonly scopeLimitExactUnderConcurrency?: boolean
}

// Lengths are generous because a networked store spends real milliseconds on every call while the
// test's clock only jumps: no assertion is ever made within MARGIN of a deadline or an expiry.
const LEASE = 10_000
const RETENTION = 60_000
const MARGIN = 2_000
const FP_A = 'v1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
const FP_B = 'v1:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
/** The scope of every begin that does not name one (the per-scope tests use scopes of their own). */
const SCOPE = randomStorageKey()
const SCOPE_LIMIT = 3

/** A store under test with the clock offset it owns. */
interface Subject {
  readonly store: Store
  /** Moves the store's clock forward: the only way time passes in this suite. */
  advance(ms: number): void
  begin(key: string, token: string, fingerprint?: string, leaseMs?: number, scope?: string): Promise<BeginResult>
  complete(key: string, token: string, response?: StoredResponse): Promise<boolean>
  release(key: string, token: string): Promise<boolean>
  extend(key: string, token: string, leaseMs?: number): Promise<boolean>
}

const OK_RESPONSE: StoredResponse = {
  status: 201,
  headers: [['content-type', 'application/json']],
  body: new TextEncoder().encode('{"id":"ch_1"}'),
  replayable: true,
}

/**
 * Registers the store contract tests (vitest) for one store implementation.
 *
 * @example
 * describeStoreContract({
 *   name: 'my-store',
 *   create: async (clockOffset) => new MyStore({ client, clockOffset }),
 *   corrupt: async (_store, key) => client.set(`idem:${key}`, 'garbage'),
 * })
 */
export function describeStoreContract(fixture: StoreFixture, options: StoreContractOptions = {}): void {
  const modelRuns = options.modelRuns ?? 150

  describe(`store contract: ${fixture.name}`, () => {
    const opened: Store[] = []

    async function open(limit?: number): Promise<Subject> {
      let offset = 0
      const clock = () => offset
      const store = limit === undefined ? await fixture.create(clock) : await fixture.createLimited?.(clock, limit)
      if (store === undefined) throw new Error(`${fixture.name} has no createLimited`)
      opened.push(store)
      return {
        store,
        advance(ms) {
          offset += ms
        },
        begin: (key, token, fingerprint = FP_A, leaseMs = LEASE, scope = SCOPE) =>
          store.begin({ key, scope, fingerprint, token, leaseMs, retentionMs: RETENTION }),
        complete: (key, token, response = OK_RESPONSE) =>
          store.complete({ key, token, response, retentionMs: RETENTION }),
        release: (key, token) => store.release({ key, token, retentionMs: RETENTION }),
        extend: (key, token, leaseMs = LEASE) => store.extend({ key, token, leaseMs, retentionMs: RETENTION }),
      }
    }

    afterEach(async () => {
      const stores = opened.splice(0)
      await Promise.all(stores.map((store) => store.close?.()))
    })

    afterAll(async () => {
      await fixture.dispose?.()
    })

    describe('begin', () => {
      it('acquires a new key with fence 1, no takeover and previousFence 0', async () => {
        const s = await open()
        const key = randomStorageKey()
        expect(await s.begin(key, randomToken())).toEqual(acquired(1, false, 0))
      })

      it('answers in_progress to another token while the lease lives', async () => {
        const s = await open()
        const key = randomStorageKey()
        await s.begin(key, randomToken())
        const result = await s.begin(key, randomToken())
        expectInProgress(result, 1, LEASE)
        s.advance(LEASE - MARGIN)
        expectInProgress(await s.begin(key, randomToken()), 1, MARGIN)
      })

      it('answers the owner token acquired again, with the same fence and an unchanged record', async () => {
        const s = await open()
        const key = randomStorageKey()
        const token = randomToken()
        const first = await s.begin(key, token)
        const record = await s.store.get(key)
        s.advance(LEASE / 2)
        expect(await s.begin(key, token)).toEqual(first)
        expect(await s.store.get(key)).toEqual(record)
      })

      it('answers a repeated takeover by its token with the same takeover acquisition', async () => {
        const s = await open()
        const key = randomStorageKey()
        await s.begin(key, randomToken())
        s.advance(LEASE + MARGIN)
        const token = randomToken()
        const takeover = await s.begin(key, token)
        expect(takeover).toEqual(acquired(2, true, 1))
        expect(await s.begin(key, token)).toEqual(takeover)
      })

      it('lets exactly one of 200 parallel begins with distinct tokens acquire', async () => {
        const s = await open()
        const key = randomStorageKey()
        const tokens = Array.from({ length: 200 }, () => randomToken())
        const results = await Promise.all(tokens.map((token) => s.begin(key, token)))
        const winners = tokens.filter((_, i) => results[i]?.kind === 'acquired')
        expect(winners).toHaveLength(1)
        expect(results.filter((r) => r.kind === 'in_progress')).toHaveLength(199)
        expect(results.find((r) => r.kind === 'acquired')).toEqual(acquired(1, false, 0))
        expect((await s.store.get(key))?.token).toBe(winners[0])
      })
    })

    describe('fingerprint', () => {
      it('answers mismatch before in_progress while the lease lives', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.begin(key, randomToken(), FP_B)).toEqual({ kind: 'mismatch' })
        expect(await s.begin(key, owner, FP_B)).toEqual({ kind: 'mismatch' })
      })

      it('answers mismatch before replay once completed', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.complete(key, owner)
        expect(await s.begin(key, randomToken(), FP_B)).toEqual({ kind: 'mismatch' })
      })

      it('answers mismatch, not a takeover, after the lease passed (a crash)', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        const record = await s.store.get(key)
        s.advance(LEASE + MARGIN)
        expect(await s.begin(key, randomToken(), FP_B)).toEqual({ kind: 'mismatch' })
        expect(await s.store.get(key)).toEqual(record)
      })

      it('lets a released tombstone accept a different fingerprint, continuing the fence', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.release(key, owner)
        expect(await s.begin(key, randomToken(), FP_B)).toEqual(acquired(2, false, 1))
        expect((await s.store.get(key))?.fingerprint).toBe(FP_B)
      })
    })

    describe('takeover', () => {
      it('takes over after the lease deadline with fence + 1, takeover true and previousFence', async () => {
        const s = await open()
        const key = randomStorageKey()
        await s.begin(key, randomToken())
        s.advance(LEASE + MARGIN)
        const heir = randomToken()
        expect(await s.begin(key, heir)).toEqual(acquired(2, true, 1))
        const record = await s.store.get(key)
        expect(record).toMatchObject({ state: 'in_progress', fence: 2, token: heir })
      })

      it('leaves the superseded token unable to complete, extend or release', async () => {
        const s = await open()
        const key = randomStorageKey()
        const old = randomToken()
        await s.begin(key, old)
        s.advance(LEASE + MARGIN)
        const heir = randomToken()
        await s.begin(key, heir)
        const record = await s.store.get(key)
        expect(await s.complete(key, old)).toBe(false)
        expect(await s.extend(key, old)).toBe(false)
        expect(await s.release(key, old)).toBe(false)
        expect(await s.store.get(key)).toEqual(record)
        expect(await s.complete(key, heir)).toBe(true)
        expect(await s.complete(key, old)).toBe(false)
      })
    })

    describe('complete and replay', () => {
      it('replays status, repeated headers in order, latin1 values and every byte value exactly', async () => {
        const response: StoredResponse = {
          status: 201,
          headers: [
            ['Content-Type', 'application/octet-stream'],
            ['x-repeated', 'first'],
            ['x-latin1', 'caf\u00e9 \u0080\u00a0\u00ff'],
            ['x-empty', ''],
            ['x-repeated', 'second'],
            ['Link', '</a>; rel="next"'],
          ],
          body: Uint8Array.from({ length: 512 }, (_, i) => (i * 7) % 256),
          replayable: true,
        }
        await expectRoundTrip(await open(), response)
      })

      it('replays an empty body as empty', async () => {
        await expectRoundTrip(await open(), {
          status: 204,
          headers: [],
          body: new Uint8Array(0),
          replayable: true,
        })
      })

      it('replays a 1 MiB body byte for byte', async () => {
        await expectRoundTrip(await open(), {
          status: 200,
          headers: [['content-type', 'application/octet-stream']],
          body: noise(1024 * 1024),
          replayable: true,
        })
      })

      it('replays a response kept as unreplayable as unreplayable, with its status', async () => {
        await expectRoundTrip(await open(), {
          status: 200,
          headers: [],
          body: new Uint8Array(0),
          replayable: false,
        })
      })

      it('answers a repeated complete by the same token true and keeps the first response', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.complete(key, owner)).toBe(true)
        const record = await s.store.get(key)
        expect(await s.complete(key, owner)).toBe(true)
        const other: StoredResponse = { ...OK_RESPONSE, status: 500, body: new Uint8Array([1]) }
        expect(await s.complete(key, owner, other)).toBe(true)
        expect(await s.store.get(key)).toEqual(record)
        expectReplayOf(await s.begin(key, randomToken()), OK_RESPONSE)
      })

      it('completes after its own lease deadline when nobody took over', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        s.advance(LEASE + MARGIN)
        expect(await s.complete(key, owner)).toBe(true)
        expectReplayOf(await s.begin(key, randomToken()), OK_RESPONSE)
      })

      it('answers false to complete on a key with no record', async () => {
        const s = await open()
        const key = randomStorageKey()
        expect(await s.complete(key, randomToken())).toBe(false)
        expect(await s.store.get(key)).toBeNull()
      })
    })

    describe('wrong token', () => {
      it('answers false to complete, extend and release while in progress, changing nothing', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        const record = await s.store.get(key)
        const stranger = randomToken()
        expect(await s.complete(key, stranger)).toBe(false)
        expect(await s.extend(key, stranger, LEASE * 10)).toBe(false)
        expect(await s.release(key, stranger)).toBe(false)
        expect(await s.store.get(key)).toEqual(record)
        expect(await s.complete(key, owner)).toBe(true)
      })

      it('answers false to complete, extend and release once completed, changing nothing', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.complete(key, owner)
        const record = await s.store.get(key)
        const stranger = randomToken()
        expect(await s.complete(key, stranger)).toBe(false)
        expect(await s.extend(key, stranger)).toBe(false)
        expect(await s.release(key, stranger)).toBe(false)
        expect(await s.store.get(key)).toEqual(record)
      })
    })

    describe('extend', () => {
      it('pushes the deadline: a begin after the old deadline but before the new one is in_progress', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        s.advance(LEASE / 2)
        expect(await s.extend(key, owner)).toBe(true)
        s.advance(LEASE / 2 + MARGIN)
        expectInProgress(await s.begin(key, randomToken()), 1, LEASE / 2 - MARGIN)
        s.advance(LEASE / 2)
        expect(await s.begin(key, randomToken())).toEqual(acquired(2, true, 1))
      })

      it('extends its own lease after the deadline when nobody took over', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        s.advance(LEASE + MARGIN)
        expect(await s.extend(key, owner)).toBe(true)
        s.advance(MARGIN)
        expectInProgress(await s.begin(key, randomToken()), 1, LEASE - MARGIN)
      })

      it('answers true and changes nothing after the same token completed', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.complete(key, owner)
        const record = await s.store.get(key)
        s.advance(MARGIN)
        expect(await s.extend(key, owner, LEASE * 100)).toBe(true)
        expect(await s.store.get(key)).toEqual(record)
      })

      it('answers false after the same token released', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.release(key, owner)
        const record = await s.store.get(key)
        expect(await s.extend(key, owner)).toBe(false)
        expect(await s.store.get(key)).toEqual(record)
      })
    })

    describe('release', () => {
      it('leaves a tombstone: the next begin acquires fence + 1 with previousFence, no takeover', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.release(key, owner)).toBe(true)
        const tombstone = await s.store.get(key)
        expect(tombstone).toMatchObject({ state: 'released', fence: 1, fingerprint: '' })
        expect(tombstone?.response).toBeNull()
        expect(await s.begin(key, randomToken())).toEqual(acquired(2, false, 1))
      })

      it('answers a repeated release by the same token true', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.release(key, owner)).toBe(true)
        expect(await s.release(key, owner)).toBe(true)
        expect((await s.store.get(key))?.state).toBe('released')
      })

      it('answers false for a completed record, which keeps replaying', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.complete(key, owner)
        expect(await s.release(key, owner)).toBe(false)
        expectReplayOf(await s.begin(key, randomToken()), OK_RESPONSE)
      })

      it('answers false for a key with no record', async () => {
        const s = await open()
        const key = randomStorageKey()
        expect(await s.release(key, randomToken())).toBe(false)
        expect(await s.store.get(key)).toBeNull()
      })
    })

    it('hands out strictly increasing fences across release, begin and takeover cycles', async () => {
      const s = await open()
      const key = randomStorageKey()
      let fence = 0
      for (let cycle = 0; cycle < 12; cycle++) {
        const token = randomToken()
        const result = await s.begin(key, token)
        expect(result).toEqual(acquired(fence + 1, cycle % 2 === 1, fence))
        fence += 1
        // Even cycles end in a crash (the next begin takes over), odd ones in a release.
        if (cycle % 2 === 0) s.advance(LEASE + MARGIN)
        else expect(await s.release(key, token)).toBe(true)
      }
      expect((await s.store.get(key))?.fence).toBe(fence)
    })

    describe('expiry', () => {
      it('keeps an in_progress record until lease deadline + retention, then forgets it', async () => {
        const s = await open()
        const key = randomStorageKey()
        await s.begin(key, randomToken())
        s.advance(LEASE + RETENTION - MARGIN)
        expect((await s.store.get(key))?.state).toBe('in_progress')
        s.advance(2 * MARGIN)
        expect(await s.store.get(key)).toBeNull()
        expect(await s.begin(key, randomToken())).toEqual(acquired(1, false, 0))
      })

      it('keeps a completed record until completion + retention, then forgets it', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        // A lease longer than the retention tells "completion + retention" from "deadline + retention".
        await s.begin(key, owner, FP_A, 4 * RETENTION)
        s.advance(MARGIN)
        await s.complete(key, owner)
        s.advance(RETENTION - MARGIN)
        expect((await s.store.get(key))?.state).toBe('completed')
        expectReplayOf(await s.begin(key, randomToken()), OK_RESPONSE)
        s.advance(2 * MARGIN)
        expect(await s.store.get(key)).toBeNull()
        expect(await s.begin(key, randomToken(), FP_B)).toEqual(acquired(1, false, 0))
      })

      it('keeps a tombstone until release + retention, then restarts the fence at 1', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner, FP_A, 4 * RETENTION)
        s.advance(MARGIN)
        await s.release(key, owner)
        s.advance(RETENTION - MARGIN)
        expect((await s.store.get(key))?.state).toBe('released')
        s.advance(2 * MARGIN)
        expect(await s.store.get(key)).toBeNull()
        expect(await s.begin(key, randomToken())).toEqual(acquired(1, false, 0))
      })

      it('counts an extended in_progress record from its new deadline', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.extend(key, owner, 4 * LEASE)).toBe(true)
        s.advance(4 * LEASE + RETENTION - MARGIN)
        expect((await s.store.get(key))?.state).toBe('in_progress')
        s.advance(2 * MARGIN)
        expect(await s.store.get(key)).toBeNull()
      })
    })

    describe('get', () => {
      it('shows state, fence, fingerprint, token, deadline and expiry, then the response', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        const running = await s.store.get(key)
        expect(running).toMatchObject({
          state: 'in_progress',
          fence: 1,
          fingerprint: FP_A,
          token: owner,
          response: null,
        })
        expect(Math.abs(expiresAfterDeadline(running) - RETENTION)).toBeLessThanOrEqual(1)
        await s.complete(key, owner)
        const done = await s.store.get(key)
        expect(done).toMatchObject({ state: 'completed', fence: 1, fingerprint: FP_A, token: owner })
        expectSameResponse(done?.response ?? null, OK_RESPONSE)
      })

      it('answers null for a key with no record', async () => {
        const s = await open()
        expect(await s.store.get(randomStorageKey())).toBeNull()
      })
    })

    describe('delete', () => {
      it('refuses an in_progress record without force', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.store.delete(key)).toBe('refused_in_progress')
        expect(await s.store.delete(key, { force: false })).toBe('refused_in_progress')
        expect((await s.store.get(key))?.token).toBe(owner)
      })

      it('deletes an in_progress record with force', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        expect(await s.store.delete(key, { force: true })).toBe('deleted')
        expect(await s.store.get(key)).toBeNull()
        expect(await s.complete(key, owner)).toBe(false)
        expect(await s.begin(key, randomToken())).toEqual(acquired(1, false, 0))
      })

      it('deletes a completed record', async () => {
        const s = await open()
        const key = randomStorageKey()
        const owner = randomToken()
        await s.begin(key, owner)
        await s.complete(key, owner)
        expect(await s.store.delete(key)).toBe('deleted')
        expect(await s.store.get(key)).toBeNull()
        expect(await s.begin(key, randomToken(), FP_B)).toEqual(acquired(1, false, 0))
      })

      it('answers absent for no record and for an expired one', async () => {
        const s = await open()
        expect(await s.store.delete(randomStorageKey())).toBe('absent')
        const key = randomStorageKey()
        await s.begin(key, randomToken())
        s.advance(LEASE + RETENTION + MARGIN)
        expect(await s.store.delete(key, { force: true })).toBe('absent')
      })
    })

    if (fixture.createLimited !== undefined) {
      describe('records per scope', () => {
        /** Fills a fresh scope of a fresh limited store with SCOPE_LIMIT in_progress records. */
        async function full() {
          const s = await open(SCOPE_LIMIT)
          const scope = randomStorageKey()
          const keys = Array.from({ length: SCOPE_LIMIT }, () => randomStorageKey())
          const owners = keys.map(() => randomToken())
          for (const [i, key] of keys.entries()) {
            expect(await s.begin(key, owners[i] as string, FP_A, LEASE, scope)).toEqual(acquired(1, false, 0))
          }
          const beginNew = () => s.begin(randomStorageKey(), randomToken(), FP_A, LEASE, scope)
          return { s, scope, keys, owners, beginNew }
        }

        it('refuses a new key past the limit in that scope only, writing nothing', async () => {
          const { s, scope, beginNew } = await full()
          const other = await s.begin(randomStorageKey(), randomToken(), FP_A, LEASE, randomStorageKey())
          expect(other.kind, 'another scope').toBe('acquired')
          s.advance(MARGIN)
          const result = await beginNew()
          expect(result.kind).toBe('scope_full')
          const retryAfterMs = result.kind === 'scope_full' ? result.retryAfterMs : Number.NaN
          // The earliest record lapses at lease + retention after its begin, MARGIN ago.
          expect(retryAfterMs).toBeGreaterThan(LEASE + RETENTION - 2 * MARGIN)
          expect(retryAfterMs).toBeLessThanOrEqual(LEASE + RETENTION - MARGIN)
          const refused = randomStorageKey()
          expect((await s.begin(refused, randomToken(), FP_A, LEASE, scope)).kind).toBe('scope_full')
          expect(await s.store.get(refused)).toBeNull()
        })

        it('still answers every key the full scope holds: conflict, mismatch, replay, tombstone, takeover', async () => {
          const { s, scope, keys, owners } = await full()
          const [running, done, freed] = keys as [string, string, string]
          const [, doneOwner, freedOwner] = owners as [string, string, string]
          expect(await s.complete(done, doneOwner)).toBe(true)
          expect(await s.release(freed, freedOwner)).toBe(true)
          expect((await s.begin(running, randomToken(), FP_A, LEASE, scope)).kind).toBe('in_progress')
          expect((await s.begin(done, randomToken(), FP_B, LEASE, scope)).kind).toBe('mismatch')
          expectReplayOf(await s.begin(done, randomToken(), FP_A, LEASE, scope), OK_RESPONSE)
          expect(await s.begin(freed, randomToken(), FP_B, LEASE, scope)).toEqual(acquired(2, false, 1))
          s.advance(LEASE + MARGIN)
          expect(await s.begin(running, randomToken(), FP_A, LEASE, scope)).toEqual(acquired(2, true, 1))
        })

        it('counts a record until it expires, from its completion once completed', async () => {
          const { s, keys, owners, beginNew } = await full()
          // Completed at once: each lapses RETENTION from now, not LEASE + RETENTION.
          for (const [i, key] of keys.entries()) expect(await s.complete(key, owners[i] as string)).toBe(true)
          s.advance(RETENTION - MARGIN)
          expect((await beginNew()).kind).toBe('scope_full')
          s.advance(2 * MARGIN)
          expect((await beginNew()).kind).toBe('acquired')
        })

        it('counts an extended record until its new expiry', async () => {
          const { s, keys, owners, beginNew } = await full()
          for (const [i, key] of keys.entries()) expect(await s.extend(key, owners[i] as string, 3 * LEASE)).toBe(true)
          s.advance(LEASE + RETENTION + MARGIN)
          expect((await beginNew()).kind).toBe('scope_full')
          s.advance(2 * LEASE)
          expect((await beginNew()).kind).toBe('acquired')
        })

        it('counts a re-acquired tombstone and a taken-over record until their new expiry', async () => {
          const { s, scope, keys, owners, beginNew } = await full()
          const [freed, crashed] = keys as [string, string, string]
          s.advance(3 * MARGIN)
          expect(await s.release(freed, owners[0] as string)).toBe(true)
          expect((await s.begin(freed, randomToken(), FP_A, LEASE, scope)).kind).toBe('acquired')
          s.advance(LEASE)
          expect(await s.begin(crashed, randomToken(), FP_A, LEASE, scope)).toEqual(acquired(2, true, 1))
          // The third lapses (LEASE + RETENTION after its begin); the first two live on from their new acquisitions.
          s.advance(RETENTION - (3 * MARGIN) / 2)
          expect((await beginNew()).kind).toBe('acquired')
          expect((await beginNew()).kind).toBe('scope_full')
        })

        it('frees a place when a record is deleted', async () => {
          const { s, keys, beginNew } = await full()
          expect(await s.store.delete(keys[0] as string, { force: true })).toBe('deleted')
          expect((await beginNew()).kind).toBe('acquired')
          expect((await beginNew()).kind).toBe('scope_full')
        })

        it('lets at most the limit of 40 parallel begins of distinct keys in one scope acquire', async () => {
          const s = await open(SCOPE_LIMIT)
          const scope = randomStorageKey()
          const results = await Promise.all(
            Array.from({ length: 40 }, () => s.begin(randomStorageKey(), randomToken(), FP_A, LEASE, scope)),
          )
          const won = results.filter((r) => r.kind === 'acquired').length
          expect(won + results.filter((r) => r.kind === 'scope_full').length).toBe(40)
          if (options.scopeLimitExactUnderConcurrency ?? true) expect(won).toBe(SCOPE_LIMIT)
          else expect(won).toBeGreaterThanOrEqual(SCOPE_LIMIT)
          // Settled: the scope is full whatever the race let through.
          expect((await s.begin(randomStorageKey(), randomToken(), FP_A, LEASE, scope)).kind).toBe('scope_full')
        })
      })
    }

    it('rejects begin, complete and get on an undecodable record with reason undecodable', async () => {
      const s = await open()
      const key = randomStorageKey()
      await fixture.corrupt(s.store, key)
      await expectUndecodable(s.begin(key, randomToken()))
      await expectUndecodable(s.complete(key, randomToken()))
      await expectUndecodable(s.store.get(key))
    })

    it('agrees with the reference model on random operation sequences', async () => {
      const s = await open()
      await runModelCheck(s.store, s.advance, { runs: modelRuns })
    }, 120_000)
  })
}

function acquired(fence: number, takeover: boolean, previousFence: number): BeginResult {
  return { kind: 'acquired', fence, takeover, previousFence }
}

function expectInProgress(result: BeginResult, atLeast: number, atMost: number): void {
  expect(result.kind).toBe('in_progress')
  if (result.kind !== 'in_progress') return
  expect(typeof result.leaseRemainingMs).toBe('number')
  expect(result.leaseRemainingMs).toBeGreaterThanOrEqual(atLeast)
  expect(result.leaseRemainingMs).toBeLessThanOrEqual(atMost)
}

function expiresAfterDeadline(record: StoredRecord | null): number {
  if (record === null) throw new Error('expected a record, found none')
  return record.expiresAt - record.leaseDeadline
}

async function expectRoundTrip(s: Subject, response: StoredResponse): Promise<void> {
  const key = randomStorageKey()
  const owner = randomToken()
  await s.begin(key, owner)
  expect(await s.complete(key, owner, response)).toBe(true)
  expectReplayOf(await s.begin(key, randomToken()), response)
  expectReplayOf(await s.begin(key, owner), response)
  expectSameResponse((await s.store.get(key))?.response ?? null, response)
}

async function expectUndecodable(operation: Promise<unknown>): Promise<void> {
  const error = await operation.then(
    (value) => new Error(`expected a rejection, got ${JSON.stringify(value)}`),
    (reason: unknown) => reason,
  )
  expect(error).toBeInstanceOf(IdempotencyStoreError)
  expect((error as IdempotencyStoreError).reason).toBe('undecodable')
}

/** Deterministic bytes covering every value (xorshift32), so a failure can be reproduced. */
function noise(length: number): Uint8Array {
  const bytes = new Uint8Array(length)
  let state = 0x9e3779b9
  for (let i = 0; i < length; i++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    bytes[i] = state & 0xff
  }
  return bytes
}
