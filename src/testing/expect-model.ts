// Comparing a real store's answers with the reference model's, shared by the contract's model check and the
// model under injected faults.
import { expect } from 'vitest'
import type { BeginResult, StoredRecord } from '../core/store.js'
import { expectSameResponse } from './expect-same-response.js'

/**
 * The store's clock runs on (real milliseconds) while the model's only jumps, so the two may disagree near a
 * deadline: no operation is made within GUARD of one, and a run must take less than GUARD.
 */
export const GUARD = 1_000

/** A begin answered as the model predicts; leaseRemainingMs within the time the store's clock ran on. */
export function expectSameBegin(actual: BeginResult, expected: BeginResult, label: string): void {
  switch (expected.kind) {
    case 'in_progress': {
      expect(actual.kind, label).toBe('in_progress')
      const remaining = actual.kind === 'in_progress' ? actual.leaseRemainingMs : Number.NaN
      // The store's clock ran on since the model's decision, by less than GUARD; ms rounding aside.
      expect(remaining, `${label}: leaseRemainingMs`).toBeGreaterThan(0)
      expect(remaining, `${label}: leaseRemainingMs`).toBeLessThanOrEqual(expected.leaseRemainingMs + 1)
      expect(remaining, `${label}: leaseRemainingMs`).toBeGreaterThan(expected.leaseRemainingMs - GUARD)
      return
    }
    case 'replay':
      expect(actual.kind, label).toBe('replay')
      if (actual.kind === 'replay') expectSameResponse(actual.response, expected.response)
      return
    case 'acquired':
    case 'mismatch':
      expect(actual, label).toEqual(expected)
      return
  }
}

/** A record as `get` shows it, as the model predicts. */
export function expectSameRecord(actual: StoredRecord | null, expected: StoredRecord | null, label: string): void {
  if (expected === null || actual === null) {
    expect(actual, label).toEqual(expected)
    return
  }
  const shown = ({ state, fence, fingerprint, token }: StoredRecord) => ({ state, fence, fingerprint, token })
  expect(shown(actual), label).toEqual(shown(expected))
  if (expected.state === 'in_progress') {
    const retention = expected.expiresAt - expected.leaseDeadline
    const actualRetention = actual.expiresAt - actual.leaseDeadline
    expect(Math.abs(actualRetention - retention), `${label}: expiresAt - leaseDeadline`).toBeLessThanOrEqual(1)
  }
  if (expected.response === null) expect(actual.response, label).toBeNull()
  else expectSameResponse(actual.response, expected.response)
}
