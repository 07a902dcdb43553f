/** Which response headers belong to the stored result, and which to this one request only (DESIGN §4.9). */

const NEVER_STORED = new Set([
  'set-cookie',
  // Credentials, should a route echo one onto its response: never kept at rest, never replayed to another.
  'authorization',
  'cookie',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'content-encoding',
  'date',
  'server',
  'age',
  'vary',
  'retry-after',
  'traceparent',
  'tracestate',
  'server-timing',
  'idempotent-replayed',
])
const NEVER_STORED_PREFIXES = ['proxy-', 'access-control-', 'ratelimit-', 'x-ratelimit-']

/** Lower-cased names `Connection` lists: hop-by-hop for this message only (RFC 9110 §7.6.1). */
function connectionOptions(headers: ReadonlyArray<readonly [string, string]>): Set<string> {
  const named = new Set<string>()
  for (const [name, value] of headers) {
    if (name.toLowerCase() !== 'connection') continue
    for (const option of value.split(',')) named.add(option.trim().toLowerCase())
  }
  return named
}

/** Drops what must never be replayed; `markers` are the engine's own, set fresh on every response. */
export function storableHeaders(
  headers: ReadonlyArray<readonly [string, string]>,
  markers: ReadonlySet<string>,
): Array<readonly [string, string]> {
  const named = connectionOptions(headers)
  return headers.filter(([raw]) => {
    const name = raw.toLowerCase()
    if (NEVER_STORED.has(name) || named.has(name) || markers.has(name)) return false
    return !NEVER_STORED_PREFIXES.some((prefix) => name.startsWith(prefix))
  })
}
