/**
 * The record state machine (DESIGN §2–§3) as pure decisions, for stores that decide in TypeScript inside one
 * atomic step (memory: a synchronous block; SQLite: an IMMEDIATE transaction). Lua and SQL stores encode the same
 * rules in their scripts; the contract suite and its reference model hold every store to them.
 */
import type { BeginResult, RecordState, StoredResponse } from './store.js'

/** What a decision needs to know of the live record under a key (an expired one counts as none). */
export interface LiveRecordView {
  readonly state: RecordState
  readonly fence: number
  readonly fingerprint: string
  readonly token: string
  /** Whether the acquisition that made `token` the owner was a takeover, to answer a repeated begin alike. */
  readonly takeover: boolean
  readonly leaseDeadline: number
  /** Present once completed. */
  readonly response: StoredResponse | null
}

/** What `begin` must do: answer without writing, or write a new `in_progress` record owned by the caller. */
export type BeginPlan =
  | { readonly kind: 'answer'; readonly result: BeginResult }
  | { readonly kind: 'acquire'; readonly fence: number; readonly takeover: boolean; readonly previousFence: number }

/** Decides `begin`: fingerprint first (422 before 409), then the state. */
export function planBegin(
  record: LiveRecordView | null,
  input: { readonly fingerprint: string; readonly token: string },
  now: number,
): BeginPlan {
  if (record === null) return { kind: 'acquire', fence: 1, takeover: false, previousFence: 0 }
  // A tombstone has no fingerprint: a released key accepts a different request, but continues the fence.
  if (record.state !== 'released' && record.fingerprint !== input.fingerprint) {
    return { kind: 'answer', result: { kind: 'mismatch' } }
  }
  switch (record.state) {
    case 'released':
      return { kind: 'acquire', fence: record.fence + 1, takeover: false, previousFence: record.fence }
    case 'completed':
      if (record.response === null) throw new TypeError('a completed record without a response')
      return { kind: 'answer', result: { kind: 'replay', response: record.response } }
    case 'in_progress':
      if (record.token === input.token) {
        // A resent begin answers as the first did; a fence always follows its predecessor by exactly 1.
        const result = {
          kind: 'acquired',
          fence: record.fence,
          takeover: record.takeover,
          previousFence: record.fence - 1,
        } as const
        return { kind: 'answer', result }
      }
      if (now < record.leaseDeadline) {
        return { kind: 'answer', result: { kind: 'in_progress', leaseRemainingMs: record.leaseDeadline - now } }
      }
      return { kind: 'acquire', fence: record.fence + 1, takeover: true, previousFence: record.fence }
    default: {
      const unknown: never = record.state
      throw new TypeError(`unknown record state ${String(unknown)}`)
    }
  }
}

/** What a token-guarded write must do: answer without writing, or apply it to the caller's `in_progress` record. */
export type WritePlan<R> =
  | { readonly kind: 'answer'; readonly result: boolean }
  | { readonly kind: 'write'; readonly record: R }

const FALSE = { kind: 'answer', result: false } as const
const TRUE = { kind: 'answer', result: true } as const

/**
 * Decides `complete`, `release` or `extend` for `token`. Every write compares the token in any state, so a
 * resent write is harmless (P2): complete and extend on the token's completed record answer true, release on its
 * tombstone answers true; a completed response is never turned into a tombstone.
 */
export function planWrite<R extends LiveRecordView>(
  operation: 'complete' | 'release' | 'extend',
  record: R | null,
  token: string,
): WritePlan<R> {
  if (record === null || record.token !== token) return FALSE
  switch (record.state) {
    case 'in_progress':
      return { kind: 'write', record }
    case 'completed':
      return operation === 'release' ? FALSE : TRUE
    case 'released':
      return operation === 'release' ? TRUE : FALSE
    default: {
      const unknown: never = record.state
      throw new TypeError(`unknown record state ${String(unknown)}`)
    }
  }
}
