// Byte-exact comparison of stored responses, shared by the contract cases and the model check.
import { expect } from 'vitest'
import type { BeginResult, StoredResponse } from '../core/store.js'

/** Asserts a `replay` of exactly `expected`. */
export function expectReplayOf(result: BeginResult, expected: StoredResponse): void {
  expect(result.kind).toBe('replay')
  if (result.kind === 'replay') expectSameResponse(result.response, expected)
}

/** Asserts two responses are the same status, headers (order and repeats) and body bytes. */
export function expectSameResponse(actual: StoredResponse | null, expected: StoredResponse): void {
  expect(actual).not.toBeNull()
  if (actual === null) return
  expect(actual.status).toBe(expected.status)
  expect(actual.replayable).toBe(expected.replayable)
  expect(actual.headers.map(([name, value]) => [name, value])).toEqual(
    expected.headers.map(([name, value]) => [name, value]),
  )
  expect(actual.body).toBeInstanceOf(Uint8Array)
  expect(actual.body.byteLength, 'body length').toBe(expected.body.byteLength)
  expect(firstDifference(actual.body, expected.body), 'first differing body byte').toBe(-1)
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.byteLength, b.byteLength)
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i
  return a.byteLength === b.byteLength ? -1 : length
}
