// The model-based part of the contract: random operation sequences must get the reference model's answers.
import fc from 'fast-check'
import { expect } from 'vitest'
import type { Store, StoredResponse } from '../core/store.js'
import { expectSameBegin, expectSameRecord, GUARD } from './expect-model.js'
import { randomStorageKey, randomToken } from './random-storage-key.js'
import { ReferenceModel } from './reference-model.js'

/** How many sequences to try; a failing one is shrunk and reported with its seed. */
export interface ModelCheckOptions {
  readonly runs: number
}

/** The store side of one run: fresh keys and tokens, and the store's clock. */
interface Real {
  readonly store: Store
  readonly keys: readonly string[]
  readonly tokens: readonly string[]
  advance(ms: number): void
}

type Command = fc.AsyncCommand<ReferenceModel, Real>

const MAX_COMMANDS = 30
const KEYS = 2
const TOKENS = 3
const FINGERPRINTS = ['v1:model-a', 'v1:model-b'] as const
const MODEL_SCOPE = 'model'
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
    status: 200,
    headers: [['x-latin1', '\u00e9\u0080\u00ff']],
    body: Uint8Array.from({ length: 256 }, (_, i) => i),
    replayable: true,
  },
  { status: 200, headers: [], body: new Uint8Array(0), replayable: false },
]

/** Runs `runs` random sequences of operations on `store` and on the reference model and compares every answer. */
export async function runModelCheck(
  store: Store,
  advance: (ms: number) => void,
  options: ModelCheckOptions,
): Promise<void> {
  const env = globalThis.process?.env ?? {}
  const seed = env.FC_SEED ? Number(env.FC_SEED) : Math.floor(Math.random() * 0x7fffffff)
  // biome-ignore lint/suspicious/noConsole: a randomised test prints its seed, so any failure can be replayed.
  console.info(`store contract model check: seed ${seed} (replay with FC_SEED=${seed})`)

  const setup = () => ({
    model: new ReferenceModel(),
    real: {
      store,
      keys: Array.from({ length: KEYS }, randomStorageKey),
      tokens: Array.from({ length: TOKENS }, randomToken),
      advance,
    },
  })
  await fc.assert(
    fc.asyncProperty(fc.commands(commandArbitraries(), { maxCommands: MAX_COMMANDS, size: 'max' }), (commands) =>
      fc.asyncModelRun(setup, commands),
    ),
    { seed, numRuns: options.runs, ...(env.FC_PATH ? { path: env.FC_PATH } : {}) },
  )
}

/** A token by pool index, or whichever token owns the key in the model right now. */
type TokenRef = number | 'owner'

/** What an operation on one key sees: both sides, the key and the token resolver. */
interface Step {
  readonly model: ReferenceModel
  readonly store: Store
  readonly key: string
  /** The operation as the failure report lists it. */
  readonly label: string
  token(ref: TokenRef): string
}

function commandArbitraries(): fc.Arbitrary<Command>[] {
  const key = fc.nat(KEYS - 1)
  // Begins mostly by one token; writes mostly by the owner, or most of them would just answer false.
  const beginner = fc.constantFrom<TokenRef>(0, 0, 1, 2)
  const writer = fc.constantFrom<TokenRef>('owner', 'owner', 0, 1, 2)
  // Mostly one fingerprint, or sequences would end in mismatch before reaching the other states.
  const fingerprint = fc.constantFrom(0, 0, 0, 1)
  const lease = fc.constantFrom(...LEASES)
  const retention = fc.constantFrom(...RETENTIONS)

  const begin = fc.tuple(key, beginner, fingerprint, lease, retention).map(([k, t, f, leaseMs, retentionMs]) =>
    onKey(k, `begin(k${k}, ${tokenLabel(t)}, fp${f}, lease ${leaseMs}, retain ${retentionMs})`, async (s) => {
      const input = {
        key: s.key,
        scope: MODEL_SCOPE,
        token: s.token(t),
        fingerprint: FINGERPRINTS[f] ?? '',
        leaseMs,
        retentionMs,
      }
      expectSameBegin(await s.store.begin(input), s.model.begin(input), s.label)
    }),
  )
  const complete = fc.tuple(key, writer, fc.nat(RESPONSES.length - 1), retention).map(([k, t, r, retentionMs]) =>
    onKey(k, `complete(k${k}, ${tokenLabel(t)}, response ${r}, retain ${retentionMs})`, async (s) => {
      const response = RESPONSES[r] ?? RESPONSES[0]
      const input = { key: s.key, scope: MODEL_SCOPE, token: s.token(t), response, retentionMs }
      expect(await s.store.complete(input), s.label).toBe(s.model.complete(input))
    }),
  )
  const release = fc.tuple(key, writer, retention).map(([k, t, retentionMs]) =>
    onKey(k, `release(k${k}, ${tokenLabel(t)}, retain ${retentionMs})`, async (s) => {
      const input = { key: s.key, scope: MODEL_SCOPE, token: s.token(t), retentionMs }
      expect(await s.store.release(input), s.label).toBe(s.model.release(input))
    }),
  )
  const extend = fc.tuple(key, writer, lease, retention).map(([k, t, leaseMs, retentionMs]) =>
    onKey(k, `extend(k${k}, ${tokenLabel(t)}, lease ${leaseMs}, retain ${retentionMs})`, async (s) => {
      const input = { key: s.key, scope: MODEL_SCOPE, token: s.token(t), leaseMs, retentionMs }
      expect(await s.store.extend(input), s.label).toBe(s.model.extend(input))
    }),
  )
  const get = key.map((k) =>
    onKey(k, `get(k${k})`, async (s) => {
      expectSameRecord(await s.store.get(s.key), s.model.get(s.key), s.label)
    }),
  )
  const purge = fc.tuple(key, fc.boolean()).map(([k, force]) =>
    onKey(k, `delete(k${k}, force ${force})`, async (s) => {
      expect(await s.store.delete(s.key, { force }), s.label).toBe(s.model.delete(s.key, { force }))
    }),
  )
  const jump = fc.constantFrom(...JUMPS).map((ms) => new Jump(ms))
  // fc.commands picks among these uniformly: repeats weigh begins and clock jumps up.
  return [begin, begin, begin, complete, release, extend, get, purge, jump, jump]
}

function tokenLabel(ref: TokenRef): string {
  return ref === 'owner' ? 'owner' : `t${ref}`
}

function onKey(keyIndex: number, label: string, perform: (step: Step) => Promise<void>): Command {
  return new KeyCommand(keyIndex, label, perform)
}

/** One operation on one key, made on the store and on the model alike. */
class KeyCommand implements Command {
  constructor(
    private readonly keyIndex: number,
    private readonly label: string,
    private readonly perform: (step: Step) => Promise<void>,
  ) {}

  check(): boolean {
    return true
  }

  async run(model: ReferenceModel, real: Real): Promise<void> {
    const key = real.keys[this.keyIndex] ?? ''
    // Step over any deadline of this key that is too close to call, on both clocks alike.
    while (model.deadlines(key).some((at) => Math.abs(at - model.now) < GUARD)) {
      model.advance(2 * GUARD)
      real.advance(2 * GUARD)
    }
    const owner = model.get(key)?.token
    const token = (ref: TokenRef) => (ref === 'owner' ? (owner ?? real.tokens[0] ?? '') : (real.tokens[ref] ?? ''))
    await this.perform({ model, store: real.store, key, label: this.label, token })
  }

  toString(): string {
    return this.label
  }
}

/** A clock jump, on both sides. */
class Jump implements Command {
  constructor(private readonly ms: number) {}

  check(): boolean {
    return true
  }

  async run(model: ReferenceModel, real: Real): Promise<void> {
    model.advance(this.ms)
    real.advance(this.ms)
  }

  toString(): string {
    return `jump(${this.ms})`
  }
}
