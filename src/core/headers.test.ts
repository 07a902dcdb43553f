// Which response headers are stored for replay: credentials, hop-by-hop, per-message and marker headers never are.
import { describe, expect, it } from 'vitest'
import { storableHeaders } from './headers.js'

describe('storableHeaders', () => {
  it('keeps the route headers in order, as they were named', () => {
    const headers = [
      ['Content-Type', 'application/json'],
      ['x-request-kind', 'charge'],
      ['Link', '</a>; rel="next"'],
      ['x-request-kind', 'again'],
    ] as const
    expect(storableHeaders(headers, new Set())).toEqual(headers)
  })

  it('drops credentials, per-message and hop-by-hop headers, the markers and the limited prefixes', () => {
    const kept = storableHeaders(
      [
        ['Set-Cookie', 'a=1'],
        ['authorization', 'Bearer x'],
        ['Cookie', 'b=2'],
        ['Content-Length', '10'],
        ['Date', 'now'],
        ['Retry-After', '1'],
        ['Idempotent-Replayed', 'false'],
        ['Proxy-Authenticate', 'Basic'],
        ['Access-Control-Allow-Origin', '*'],
        ['RateLimit-Remaining', '9'],
        ['X-RateLimit-Limit', '10'],
        ['Idempotency-Cached', 'false'],
        ['content-type', 'text/plain'],
      ],
      new Set(['idempotency-cached']),
    )
    expect(kept).toEqual([['content-type', 'text/plain']])
  })

  it('drops the headers a Connection header names, in any case and spacing, and Connection itself', () => {
    const kept = storableHeaders(
      [
        ['Connection', 'X-Hop , x-other'],
        ['x-hop', '1'],
        ['X-Other', '2'],
        ['x-kept', '3'],
        ['CONNECTION', 'x-late'],
        ['x-late', '4'],
      ],
      new Set(),
    )
    expect(kept).toEqual([['x-kept', '3']])
  })
})
