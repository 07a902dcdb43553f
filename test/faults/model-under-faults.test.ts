// The reference model against every store while calls lose their request, lose their reply, or are resent.
import fc from 'fast-check'
import { IdempotencyStoreError, type StoredResponse } from 'idempotency-kit'
import { ReferenceModel, randomStorageKey, randomToken } from 'idempotency-kit/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectSameBegin, expectSameRecord, GUARD } from '../../src/testing/expect-model.js'
import { type Fault, type FaultStore, faultStore } from '../support/fault-store.js'
import { type OpenedStore, openStore, STORE_NAMES } from './every-store.js'

const seed = Number(process.env.FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31))
const runs = Number(process.env.FAULT_RUNS ?? 40)
console.log(`model under faults: seed ${seed} (replay with FAULT_SEED=${seed}; FAULT_RUNS=${runs})`)

const KEYS = 2
const TOKENS = 3
const FINGERPRINTS = ['v1:fault-a', 'v1:fault-b'] as const
const LEASES = [3_000, 10_000] as const
const RETENTIONS = [15_000, 30_000] as const
const JUMPS = [1_500, 5_000, 12_000, 40_000] as const
const RESPONSES: readonly [StoredResponse, ...StoredResponse[]] = [
  {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['x-repeated', '1'],
      ['x-repeated', '2'],
    ],
    body: new TextEncoder().encode('{"ok":true}'),
    replayable: true,
  },
  {
    status: 402,
    headers: [['x-latin1', 'caf\u00e9\u0080\u00ff']],
    body: Uint8Array.from({ length: 300 }, (_, i) => (i * 31) % 256),
    replayable: true,
  },
]

/** Both sides of one run. */
interface Real {
  readonly faulty: FaultStore
  readonly opened: OpenedStore
  readonly keys: readonly string[]
  readonly tokens: readonly string[]
  /** The fault the next call gets; each command sets it right before its call. */
  fault: Fault
}

type TokenRef = number | 'owner'
type Op =
  | {
      readonly op: 'begin'
      readonly token: TokenRef
      readonly fp: number
      readonly lease: number
      readonly retention: number
    }
  | { readonly op: 'complete'; readonly token: TokenRef; readonly response: number; readonly retention: number }
  | { readonly op: 'release'; readonly token: TokenRef; readonly retention: number }
  | { readonly op: 'extend'; readonly token: TokenRef; readonly lease: number; readonly retention: number }
  | { readonly op: 'get' }
  | { readonly op: 'delete'; readonly force: boolean }

class FaultyCall implements fc.AsyncCommand<ReferenceModel, Real> {
  constructor(
    private readonly keyIndex: number,
    private readonly call: Op,
    private readonly fault: Fault,
  ) {}

  check(): boolean {
    return true
  }

  async run(model: ReferenceModel, real: Real): Promise<void> {
    const key = real.keys[this.keyIndex] ?? ''
    while (model.deadlines(key).some((at) => Math.abs(at - model.now) < GUARD)) {
      model.advance(2 * GUARD)
      real.opened.advance(2 * GUARD)
    }
    const owner = model.get(key)?.token
    const token = (ref: TokenRef) => (ref === 'owner' ? (owner ?? real.tokens[0] ?? '') : (real.tokens[ref] ?? ''))
    const label = this.toString()
    const fault = this.call.op === 'delete' ? 'none' : this.fault
    real.fault = fault
    const c = this.call
    // `expected` runs on the model only when the call reached the store (every fault but a lost request).
    const attempt = async <T>(real: () => Promise<T>, expected: () => T, same: (a: T, e: T) => void) => {
      const outcome = await real().then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      )
      const predicted = fault === 'lost_request' ? undefined : { value: expected() }
      if (fault === 'lost_request' || fault === 'lost_reply') {
        expect(outcome.ok, `${label}: the injected fault surfaces`).toBe(false)
        if (!outcome.ok) expect(outcome.error, label).toBeInstanceOf(IdempotencyStoreError)
        return
      }
      if (!outcome.ok) throw outcome.error
      // A resent write answers what the first one would have: it is harmless.
      if (predicted !== undefined) same(outcome.value, predicted.value)
    }
    switch (c.op) {
      case 'begin': {
        const input = {
          key,
          token: token(c.token),
          scope: 'model',
          fingerprint: FINGERPRINTS[c.fp] ?? '',
          leaseMs: c.lease,
          retentionMs: c.retention,
        }
        await attempt(
          () => real.faulty.begin(input),
          () => model.begin(input),
          (a, e) => expectSameBegin(a, e, label),
        )
        break
      }
      case 'complete': {
        const input = {
          key,
          token: token(c.token),
          response: RESPONSES[c.response] ?? RESPONSES[0],
          retentionMs: c.retention,
        }
        await attempt(
          () => real.faulty.complete(input),
          () => model.complete(input),
          (a, e) => expect(a, label).toBe(e),
        )
        break
      }
      case 'release': {
        const input = { key, token: token(c.token), retentionMs: c.retention }
        await attempt(
          () => real.faulty.release(input),
          () => model.release(input),
          (a, e) => expect(a, label).toBe(e),
        )
        break
      }
      case 'extend': {
        const input = { key, token: token(c.token), leaseMs: c.lease, retentionMs: c.retention }
        await attempt(
          () => real.faulty.extend(input),
          () => model.extend(input),
          (a, e) => expect(a, label).toBe(e),
        )
        break
      }
      case 'get':
        await attempt(
          () => real.faulty.get(key),
          () => model.get(key),
          (a, e) => expectSameRecord(a, e, label),
        )
        break
      case 'delete': {
        const force = c.force
        await attempt(
          () => real.faulty.delete(key, { force }),
          () => model.delete(key, { force }),
          (a, e) => expect(a, label).toBe(e),
        )
        break
      }
      default: {
        const unknown: never = c
        throw new Error(`unknown op ${String(unknown)}`)
      }
    }
    // Whatever the fault, the record is what the model says the calls that reached the store made it.
    expectSameRecord(await real.opened.store.get(key), model.get(key), `${label}: record afterwards`)
  }

  toString(): string {
    const { op, ...args } = this.call
    return `${op}(k${this.keyIndex}, ${JSON.stringify(args)}) [${this.fault}]`
  }
}

class Jump implements fc.AsyncCommand<ReferenceModel, Real> {
  constructor(private readonly ms: number) {}
  check(): boolean {
    return true
  }
  async run(model: ReferenceModel, real: Real): Promise<void> {
    model.advance(this.ms)
    real.opened.advance(this.ms)
  }
  toString(): string {
    return `jump(${this.ms})`
  }
}

function commands(): fc.Arbitrary<fc.AsyncCommand<ReferenceModel, Real>>[] {
  const key = fc.nat(KEYS - 1)
  const beginner = fc.constantFrom<TokenRef>(0, 0, 1, 2)
  const writer = fc.constantFrom<TokenRef>('owner', 'owner', 0, 1, 2)
  const fp = fc.constantFrom(0, 0, 0, 1)
  const lease = fc.constantFrom(...LEASES)
  const retention = fc.constantFrom(...RETENTIONS)
  // Faults are the point: three calls in five meet one.
  const fault = fc.constantFrom<Fault>('none', 'none', 'lost_request', 'lost_reply', 'resent')
  const call = (op: fc.Arbitrary<Op>) =>
    fc.tuple(key, op, fault).map(([k, c, f]) => new FaultyCall(k, c, f) as fc.AsyncCommand<ReferenceModel, Real>)
  return [
    call(fc.record({ op: fc.constant('begin' as const), token: beginner, fp, lease, retention })),
    call(fc.record({ op: fc.constant('begin' as const), token: beginner, fp, lease, retention })),
    call(fc.record({ op: fc.constant('begin' as const), token: beginner, fp, lease, retention })),
    call(fc.record({ op: fc.constant('complete' as const), token: writer, response: fc.nat(1), retention })),
    call(fc.record({ op: fc.constant('complete' as const), token: writer, response: fc.nat(1), retention })),
    call(fc.record({ op: fc.constant('release' as const), token: writer, retention })),
    call(fc.record({ op: fc.constant('extend' as const), token: writer, lease, retention })),
    call(fc.record({ op: fc.constant('get' as const) })),
    call(fc.record({ op: fc.constant('delete' as const), force: fc.boolean() })),
    fc.constantFrom(...JUMPS).map((ms) => new Jump(ms)),
    fc.constantFrom(...JUMPS).map((ms) => new Jump(ms)),
  ]
}

describe.each(STORE_NAMES)('model under injected faults: %s', (name) => {
  let opened: OpenedStore
  beforeAll(async () => {
    opened = await openStore(name)
  })
  afterAll(async () => {
    await opened?.close()
  })

  it('agrees with the reference model whatever calls lose or repeat', async () => {
    let injected = 0
    const setup = () => {
      const real: Real = {
        opened,
        keys: Array.from({ length: KEYS }, randomStorageKey),
        tokens: Array.from({ length: TOKENS }, randomToken),
        fault: 'none',
        faulty: faultStore(opened.store, () => {
          injected += real.fault === 'none' ? 0 : 1
          return real.fault
        }),
      }
      return { model: new ReferenceModel(), real }
    }
    await fc.assert(
      fc.asyncProperty(fc.commands(commands(), { maxCommands: 30, size: 'max' }), (cmds) =>
        fc.asyncModelRun(setup, cmds),
      ),
      { seed, numRuns: runs, ...(process.env.FAULT_PATH ? { path: process.env.FAULT_PATH } : {}) },
    )
    // Not vacuous: faults were really injected.
    expect(injected).toBeGreaterThan(runs)
  }, 120_000)
})
